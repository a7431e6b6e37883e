package simulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStats: the counters count at the acquirer what a drill needs:
// authorizations by outcome and decline code, captures, voids and refunds,
// and per Idempotency-Key the replays and conflicts; GET /v1/stats and the
// Prometheus collector agree, and no card number appears in either.
func TestStats(t *testing.T) {
	s, c := newSim(t, Config{})
	_, a, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, false), "pay-1")
	id := a["id"].(string)
	c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, false), "pay-1")         // replay
	c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, false), "pay-1")         // replay
	c.do("POST", "/v1/authorizations", auth("4242424242424242", 9999, false), "pay-1")         // conflict
	c.do("POST", "/v1/authorizations", auth("4000000000000002", 500, false), "pay-2")          // declined
	c.do("POST", "/v1/authorizations", auth("4000000000000119", 500, false), "pay-3")          // 5xx card
	c.do("POST", "/v1/authorizations", auth("4000000000009995", 500, false), "")               // declined, no key
	c.do("POST", "/v1/authorizations/"+id+"/capture", map[string]any{"amount": 1000}, "cap-1") // captured
	c.do("POST", "/v1/authorizations/"+id+"/capture", map[string]any{"amount": 1000}, "cap-1") // replay
	c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 300}, "ref-1")  // refund
	c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 5000}, "ref-2") // refused
	_, b, _ := c.do("POST", "/v1/authorizations", auth("5555555555554444", 700, false), "pay-4")
	c.do("POST", "/v1/authorizations/"+b["id"].(string)+"/cancel", nil, "void-1")
	c.do("GET", "/v1/authorizations/"+id, nil, "")

	tests := []struct {
		name string
		got  func(Stats) int64
		want int64
	}{
		{"approved authorizations, replays included", func(st Stats) int64 { return st.Operations["authorization"]["approved"] }, 4},
		{"declined authorizations", func(st Stats) int64 { return st.Operations["authorization"]["declined"] }, 2},
		{"card_declined", func(st Stats) int64 { return st.Declines["card_declined"] }, 1},
		{"insufficient_funds", func(st Stats) int64 { return st.Declines["insufficient_funds"] }, 1},
		{"5xx card", func(st Stats) int64 { return st.Operations["authorization"]["processing_error"] }, 1},
		{"key reused with another request", func(st Stats) int64 { return st.Operations["authorization"]["idempotency_key_reused"] }, 1},
		{"captures", func(st Stats) int64 { return st.Operations["capture"]["ok"] }, 2},
		{"refunds", func(st Stats) int64 { return st.Operations["refund"]["ok"] }, 1},
		{"refused refund", func(st Stats) int64 { return sum(st.Operations["refund"]) - st.Operations["refund"]["ok"] }, 1},
		{"voids", func(st Stats) int64 { return st.Operations["void"]["ok"] }, 1},
		{"reads", func(st Stats) int64 { return st.Operations["get"]["ok"] }, 1},
		{"first authorizations with a key", func(st Stats) int64 { return st.Idempotency["authorization"]["first"] }, 4},
		{"authorization replays", func(st Stats) int64 { return st.Idempotency["authorization"]["replayed"] }, 2},
		{"authorization conflicts", func(st Stats) int64 { return st.Idempotency["authorization"]["conflict"] }, 1},
		{"authorizations without a key", func(st Stats) int64 { return st.Idempotency["authorization"]["none"] }, 1},
		{"pay-1 replayed or reused", func(st Stats) int64 { return st.Replays["authorization"]["pay-1"] }, 3},
		{"cap-1 replayed", func(st Stats) int64 { return st.Replays["capture"]["cap-1"] }, 1},
		{"ref-1 never replayed", func(st Stats) int64 { return st.Replays["refund"]["ref-1"] }, 0},
		{"reads are not writes", func(st Stats) int64 { return sum(st.Idempotency["get"]) }, 0},
	}
	status, _, raw := c.do("GET", "/v1/stats", nil, "")
	require.Equal(t, 200, status, raw)
	var served Stats
	require.NoError(t, json.Unmarshal([]byte(raw), &served))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got(s.Stats()), "Stats()")
			assert.Equal(t, tt.want, tt.got(served), "GET /v1/stats")
		})
	}

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(s.Collector()))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	scrape := rec.Body.String()
	assert.Contains(t, scrape, `obol_acquirer_sim_requests_total{operation="authorization",outcome="approved"} 4`)
	assert.Contains(t, scrape, `obol_acquirer_sim_idempotency_total{operation="authorization",result="replayed"} 2`)
	assert.Contains(t, scrape, `obol_acquirer_sim_declines_total{code="card_declined"} 1`)
	assert.Contains(t, scrape, `obol_acquirer_sim_keys_replayed{operation="capture"} 1`)
	problems, err := promlint.New(strings.NewReader(scrape)).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems, "promlint")
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Greater(t, n, 10)
	for _, pan := range []string{"4242424242424242", "4000000000000002", "5555555555554444", "4000000000009995"} {
		assert.NotContains(t, scrape, pan)
		assert.NotContains(t, raw, pan)
	}
}

// TestStatsMaskKeysShapedLikeCards: an Idempotency-Key that is a card
// number is not shown back.
func TestStatsMaskKeysShapedLikeCards(t *testing.T) {
	s, c := newSim(t, Config{})
	for range 2 {
		c.do("POST", "/v1/authorizations", auth("4242424242424242", 100, false), "4111111111111111")
	}
	keys := s.Stats().Replays["authorization"]
	require.Len(t, keys, 1)
	for k, n := range keys {
		assert.NotContains(t, k, "4111111111111111")
		assert.Equal(t, int64(1), n)
	}
}

func TestOutcomeLabels(t *testing.T) {
	tests := []struct {
		name          string
		op            string
		status        int
		body          string
		outcome, code string
	}{
		{"approved", "authorization", 200, `{"status":"approved"}`, "approved", ""},
		{"declined", "authorization", 402, `{"status":"declined","decline_code":"expired_card"}`, "declined", "expired_card"},
		{"capture answers the authorization", "capture", 200, `{"status":"approved"}`, "ok", ""},
		{"error code", "refund", 409, `{"error":{"code":"refund_exceeds_capture"}}`, "refund_exceeds_capture", ""},
		{"odd code", "refund", 409, `{"error":{"code":"Bad Code 4111"}}`, "other", ""},
		{"not JSON", "get", 404, `404 page not found`, "not_found", ""},
		{"5xx without body", "get", 502, ``, "other", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, c := outcomeOf(tt.op, tt.status, []byte(tt.body))
			assert.Equal(t, tt.outcome, o)
			assert.Equal(t, tt.code, c)
		})
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
