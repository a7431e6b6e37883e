package simulator

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestListCountsRefundsAndRequests: the listing has every authorization
// with its refund count (idempotent replays excluded), the request count
// per route, and no card number.
func TestListCountsRefundsAndRequests(t *testing.T) {
	_, c := newSim(t, Config{})
	st, a, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, true), "k1")
	require.Equal(t, 200, st)
	id := a["id"].(string)
	st, _, _ = c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 100}, "r1")
	require.Equal(t, 200, st)
	st, _, _ = c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 100}, "r1") // a replay
	require.Equal(t, 200, st)
	st, _, _ = c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 200}, "r2")
	require.Equal(t, 200, st)
	st, _, _ = c.do("POST", "/v1/authorizations", auth("4000000000000002", 500, false), "k2")
	require.Equal(t, 402, st)

	st, _, raw := c.do("GET", "/v1/authorizations", nil, "")
	require.Equal(t, 200, st)
	assert.NotContains(t, raw, "4242424242424242")
	var l Listing
	require.NoError(t, json.Unmarshal([]byte(raw), &l))
	require.Len(t, l.Authorizations, 2)
	byStatus := map[string]Authorization{}
	for _, x := range l.Authorizations {
		byStatus[x.Status] = x
	}
	ok := byStatus["approved"]
	assert.Equal(t, id, ok.ID)
	assert.Equal(t, int64(1000), ok.Captured)
	assert.Equal(t, int64(300), ok.Refunded)
	assert.Equal(t, 2, ok.RefundCount)
	assert.Equal(t, "4242", ok.Last4)
	assert.Equal(t, "declined", byStatus["declined"].Status)
	assert.Equal(t, int64(2), l.Requests["authorize"])
	assert.Equal(t, int64(3), l.Requests["refund"])
}
