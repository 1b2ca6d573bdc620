package hub

import (
	"encoding/json"
	"fmt"

	"github.com/olahol/melody"
)

// onMessage handles one text frame. melody calls it from the session's read
// loop, so the messages of one session are handled one at a time, in order.
func (h *Hub) onMessage(s *melody.Session, data []byte) {
	c := clientOf(s)
	// A catch-up may keep the buffer full. Waiting here bounds the replies
	// queued beyond SendBuffer to those of one message.
	if !c.waitForRoom() {
		return
	}
	var msg clientMessage
	if err := json.Unmarshal(data, &msg); err != nil {
		c.sendError(codeInvalidMessage, fmt.Sprintf("message is not a valid JSON object of the protocol: %v", err), "")
		return
	}

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

func (h *Hub) onBinaryMessage(s *melody.Session, _ []byte) {
	clientOf(s).sendError(codeInvalidMessage, "binary frames are not supported; send JSON text frames", "")
}
