package hub_test

import (
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

func TestGarbageFramesKeepServing(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	other := dial(t, b.url)
	other.authenticate(adminToken)
	other.subscribe("s1", []string{"UserProfile"}, nil)
	c := dial(t, b.url)
	c.authenticate(adminToken)

	frames := []struct {
		name     string
		kind     int
		data     string
		wantCode string
	}{
		{"InvalidJSON", websocket.TextMessage, `{"type":`, "invalid_message"},
		{"NotAnObject", websocket.TextMessage, `[1,2,3]`, "invalid_message"},
		{"WrongMemberType", websocket.TextMessage, `{"type":"subscribe","models":"UserProfile"}`, "invalid_message"},
		{"UnknownType", websocket.TextMessage, `{"type":"explode"}`, "unknown_type"},
		{"Binary", websocket.BinaryMessage, "\x00\x01\x02", "invalid_message"},
	}
	for _, f := range frames {
		c.sendFrame(f.kind, []byte(f.data))
		m := c.readType("error")
		require.Equal(t, f.wantCode, m.Code, f.name)
	}
	c.send(map[string]string{"type": "ping"})
	c.readType("pong")
	c.subscribe("s1", []string{"UserProfile"}, nil)

	c.sendFrame(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 64<<10)+`"}`))
	closeErr, _ := c.readClose()
	require.Equal(t, websocket.CloseMessageTooBig, closeErr.Code)

	// Text that is not UTF-8 fails the connection, even inside a JSON
	// string, which encoding/json would otherwise accept.
	for _, data := range []string{"\xff\xfe", `{"type":"ping","pad":"` + "\xc3\x28" + `"}`} {
		bad := dial(t, b.url)
		bad.authenticate(adminToken)
		bad.sendFrame(websocket.TextMessage, []byte(data))
		closeErr, _ := bad.readClose()
		require.Equal(t, websocket.CloseInvalidFramePayloadData, closeErr.Code, "frame %q", data)
	}

	e := b.event("UserProfile", "data.created", `{}`)
	b.write(t, e)
	require.Equal(t, e.ID, other.readType("create").ID)
}
