package hub

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/olahol/melody"
)

// onMessage handles one text frame on the session's read loop, or hands
// it to the session's worker when handling it may wait long.
func (h *Hub) onMessage(s *melody.Session, data []byte) {
	if !utf8.Valid(data) {
		// RFC 6455 section 8.1: a text frame that is not UTF-8 fails the
		// connection, with 1007 (section 7.4.1).
		clientOf(s).close(closeInvalidPayload, "text frame is not valid UTF-8")
		return
	}
	var in inbound
	if err := json.Unmarshal(data, &in.msg); err != nil {
		in.invalid = fmt.Sprintf("message is not a valid JSON object of the protocol: %v", err)
	}
	h.receive(clientOf(s), in)
}

func (h *Hub) onBinaryMessage(s *melody.Session, _ []byte) {
	h.receive(clientOf(s), inbound{invalid: "binary frames are not supported; send JSON text frames"})
}

func (h *Hub) receive(c *client, in inbound) {
	if !h.offload(c, in) {
		h.handle(c, in)
	}
}

// handle handles one message of the session, on its read loop or its
// worker, never on both at once.
func (h *Hub) handle(c *client, in inbound) {
	// A catch-up may keep the buffer full. Waiting here bounds the replies
	// queued beyond SendBuffer to those of one message.
	if !c.waitForRoom() {
		return
	}
	if in.invalid != "" {
		c.sendError(codeInvalidMessage, in.invalid, "")
		return
	}
	msg := in.msg

	g := c.authenticated()
	switch {
	case msg.Type == "ping":
		c.send(msgPong)
	case msg.Type == "authenticate":
		h.authenticate(c, msg)
	case g == nil:
		c.mu.Lock()
		c.enqueueLocked(errorMessage(codeNotAuthenticated,
			fmt.Sprintf("message of type %q before authenticate; send {\"type\":\"authenticate\",\"token\":\"…\"} first", msg.Type), ""), "")
		c.closeLocked(closeNotAuthenticated, "not authenticated")
		c.mu.Unlock()
	case msg.Type == "subscribe":
		h.subscribe(c, g, msg)
	case msg.Type == "unsubscribe":
		h.unsubscribe(c, msg)
	case msg.Type == "refresh":
		h.refresh(c, msg)
	default:
		c.sendError(codeUnknownType, fmt.Sprintf("unknown message type %q; expected authenticate, refresh, subscribe, unsubscribe or ping", msg.Type), "")
	}
}
