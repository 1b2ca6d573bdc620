package hub_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

// rowEvent builds a stored event whose payload carries changes and, unless
// old is empty, old, as the event builder writes them.
func (b *testBundle) rowEvent(model, name, changes, old string) store.Event {
	e := b.event(model, name, changes)
	n := b.nextID.Load()
	oldMember := ""
	if old != "" {
		oldMember = `,"old":` + old
	}
	e.Payload = fmt.Appendf(nil, `{"id":%q,"event":%q,"model":%q,"table":"public.items","instanceId":%q,"changes":%s%s,"timestamp":%d,"lsn":%q}`,
		e.ID, name, model, *e.InstanceID, changes, oldMember, e.CommitTime.Unix(), pglogrepl.LSN(0x16B3748+n))
	return e
}

// ownerToken is a JWT whose filter claim pins owner_id of UserProfile rows.
func ownerToken(t *testing.T, owner any) string {
	t.Helper()
	return signHS256(t, jwtSecret, jwt.MapClaims{
		"exp":    time.Now().Add(time.Hour).Unix(),
		"filter": map[string]any{"UserProfile": map[string]any{"owner_id": owner}},
	})
}

// readIDs reads n messages and returns their ids.
func (c *wsClient) readIDs(n int) []string {
	c.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = c.read().ID
	}
	return ids
}

func TestFilterClaimHidesOtherUsersRows(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	owner1, owner2, admin := dial(t, b.url), dial(t, b.url), dial(t, b.url)
	owner1.authenticate(ownerToken(t, 1))
	owner2.authenticate(ownerToken(t, 2))
	admin.authenticate(adminToken)
	for _, c := range []*wsClient{owner1, owner2, admin} {
		c.subscribe("s1", []string{"UserProfile", "Project"}, nil)
	}

	create1 := b.rowEvent("UserProfile", "data.created", `{"id":1,"owner_id":1,"name":"a"}`, "")
	create2 := b.rowEvent("UserProfile", "data.created", `{"id":2,"owner_id":2,"name":"b"}`, "")
	// REPLICA IDENTITY FULL: only the changed columns, so owner_id is unknown.
	untouched := b.rowEvent("UserProfile", "data.updated", `{"name":"a2"}`, `{"name":"a"}`)
	// REPLICA IDENTITY DEFAULT: changes carries the whole new row.
	whole2 := b.rowEvent("UserProfile", "data.updated", `{"id":2,"owner_id":2,"name":"b2"}`, `{"id":2}`)
	moved := b.rowEvent("UserProfile", "data.updated", `{"owner_id":2}`, `{"owner_id":1}`)
	delete1 := b.rowEvent("UserProfile", "data.deleted", `{}`, `{"id":3,"owner_id":1,"name":"c"}`)
	// A delete of a table without REPLICA IDENTITY FULL carries only the key.
	deleteKey := b.rowEvent("UserProfile", "data.deleted", `{}`, `{"id":2}`)
	stringOwner := b.rowEvent("UserProfile", "data.created", `{"id":4,"owner_id":"1"}`, "")
	truncate := b.rowEvent("UserProfile", "data.truncated", `{}`, "")
	// The claim filters UserProfile only, so Project rows reach everyone.
	project := b.rowEvent("Project", "data.created", `{"id":9,"owner_id":2}`, "")
	b.write(t, create1, create2, untouched, whole2, moved, delete1, deleteKey, stringOwner, truncate, project)

	require.Equal(t, []string{create1.ID, delete1.ID, project.ID}, owner1.readIDs(3))
	require.Equal(t, []string{create2.ID, whole2.ID, moved.ID, project.ID}, owner2.readIDs(4))
	require.Equal(t, []string{create1.ID, create2.ID, untouched.ID, whole2.ID, moved.ID, delete1.ID,
		deleteKey.ID, stringOwner.ID, truncate.ID, project.ID}, admin.readIDs(10))

	// A replay applies the claim too.
	resumed := dial(t, b.url)
	resumed.authenticate(ownerToken(t, 1))
	resumed.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile", "Project"}, "since": create1.ID})
	require.Equal(t, []string{delete1.ID, project.ID}, resumed.readIDs(2))
	require.Equal(t, project.ID, *resumed.readType("subscribed").LiveFrom)

	// A marker that everyone receives shows that nothing else was queued.
	marker := b.rowEvent("Project", "data.created", `{}`, "")
	b.write(t, marker)
	for _, c := range []*wsClient{owner1, owner2, admin, resumed} {
		require.Equal(t, marker.ID, c.readType("create").ID)
	}
}

func TestFilterClaimWithStringValue(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(ownerToken(t, "u_1"))
	c.subscribe("s1", []string{"UserProfile"}, nil)

	other := b.rowEvent("UserProfile", "data.created", `{"owner_id":"u_2"}`, "")
	own := b.rowEvent("UserProfile", "data.created", `{"owner_id":"u_1"}`, "")
	b.write(t, other, own)

	require.Equal(t, own.ID, c.readType("create").ID)
}

func TestSubscriptionFilterNarrows(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	admin, owner1 := dial(t, b.url), dial(t, b.url)
	admin.authenticate(adminToken)
	owner1.authenticate(ownerToken(t, 1))

	admin.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile", "Project"},
		"filter": map[string]any{"UserProfile": map[string]any{"owner_id": 2}}})
	sub := admin.readType("subscribed")
	require.Contains(t, string(sub.raw), `"filter":{"UserProfile":{"owner_id":2}}`)
	// Pinning the claim's own value again is allowed; a second column narrows.
	owner1.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"},
		"filter": map[string]any{"UserProfile": map[string]any{"owner_id": 1, "status": "open"}}})
	owner1.readType("subscribed")

	open1 := b.rowEvent("UserProfile", "data.created", `{"owner_id":1,"status":"open"}`, "")
	closed1 := b.rowEvent("UserProfile", "data.created", `{"owner_id":1,"status":"closed"}`, "")
	open2 := b.rowEvent("UserProfile", "data.created", `{"owner_id":2,"status":"open"}`, "")
	project := b.rowEvent("Project", "data.created", `{"owner_id":1}`, "")
	b.write(t, open1, closed1, open2, project)

	require.Equal(t, []string{open2.ID, project.ID}, admin.readIDs(2))
	require.Equal(t, open1.ID, owner1.readType("create").ID)
	marker := b.rowEvent("UserProfile", "data.created", `{"owner_id":1,"status":"open"}`, "")
	b.write(t, marker)
	require.Equal(t, marker.ID, owner1.readType("create").ID)
}

func TestSubscriptionFilterRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	tests := []struct {
		name        string
		filter      any
		wantCode    string
		wantMessage string
	}{
		{"ContradictsClaim", map[string]any{"UserProfile": map[string]any{"owner_id": 2}}, "forbidden_filter", `column "owner_id"`},
		{"ContradictsClaimType", map[string]any{"UserProfile": map[string]any{"owner_id": "1"}}, "forbidden_filter", `column "owner_id"`},
		{"ModelNotSubscribed", map[string]any{"Project": map[string]any{"owner_id": 1}}, "invalid_filter", `"Project"`},
		{"ObjectValue", map[string]any{"UserProfile": map[string]any{"team": map[string]any{"id": 1}}}, "invalid_filter", `"team"`},
		{"NullValue", map[string]any{"UserProfile": map[string]any{"team": nil}}, "invalid_filter", `"team"`},
		{"FractionValue", map[string]any{"UserProfile": map[string]any{"score": 1.5}}, "invalid_filter", `"score"`},
		{"EmptyColumn", map[string]any{"UserProfile": map[string]any{"": 1}}, "invalid_filter", "empty column name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, b.url)
			c.authenticate(ownerToken(t, 1))

			c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "filter": tt.filter})
			m := c.readType("error")

			require.Equal(t, tt.wantCode, m.Code)
			require.Equal(t, "s1", m.ID)
			require.Contains(t, m.Message, tt.wantMessage)
			c.subscribe("s1", []string{"UserProfile"}, nil)
		})
	}
}

func TestSubscriptionFilterNotAnObject(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "filter": map[string]any{"UserProfile": 1}})

	require.Equal(t, "invalid_message", c.readType("error").Code)
}
