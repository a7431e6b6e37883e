package simulator

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type client struct {
	t   *testing.T
	srv *httptest.Server
}

func newSim(t *testing.T, cfg Config) (*Simulator, *client) {
	t.Helper()
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 50 * time.Millisecond
	}
	s := New(cfg)
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	return s, &client{t: t, srv: srv}
}

func (c *client) do(method, path string, body any, idem string) (int, map[string]any, string) {
	c.t.Helper()
	status, out, raw, err := c.try(method, path, body, idem)
	require.NoError(c.t, err)
	return status, out, raw
}

// on is c reporting to t (a subtest: require must fail the test whose
// goroutine runs it, not the parent).
func (c *client) on(t *testing.T) *client { return &client{t: t, srv: c.srv} }

// try is do without the test's assertion, for goroutines (require must not
// be called off the test goroutine).
func (c *client) try(method, path string, body any, idem string) (int, map[string]any, string, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.srv.URL+path, rd)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, string(raw), nil
}

func auth(number string, amount int64, capture bool) map[string]any {
	return map[string]any{"amount": amount, "currency": "USD", "capture": capture, "card": map[string]any{"number": number, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"}}
}

func TestTestCardOutcomes(t *testing.T) {
	_, c := newSim(t, Config{})
	tests := []struct {
		name, number string
		status       int
		outcome      string // approved, or the decline code, or the error code
	}{
		{"visa", "4242424242424242", 200, "approved"},
		{"mastercard", "5555555555554444", 200, "approved"},
		{"mastercard 2-series", "2223003122003222", 200, "approved"},
		{"amex", "378282246310005", 200, "approved"},
		{"discover", "6011111111111117", 200, "approved"},
		{"jcb", "3566002020360505", 200, "approved"},
		{"unionpay", "6200000000000005", 200, "approved"},
		{"card declined", "4000000000000002", 402, DeclineCardDeclined},
		{"insufficient funds", "4000000000009995", 402, DeclineInsufficientFunds},
		{"expired card", "4000000000000069", 402, DeclineExpiredCard},
		{"incorrect cvc", "4000000000000127", 402, DeclineIncorrectCVC},
		{"server error", "4000000000000119", 500, "processing_error"},
		{"dispute card approves", "4000000000000259", 200, "approved"},
		{"any other luhn-valid number", "4000056655665556", 200, "approved"},
		{"bad luhn", "4111111111111112", 402, DeclineInvalidNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, raw := c.on(t).do("POST", "/v1/authorizations", auth(tt.number, 1000, false), "")
			got := body["status"]
			if code, ok := body["decline_code"]; ok {
				got = code
			}
			if e, ok := body["error"].(map[string]any); ok {
				got = e["code"]
			}
			require.Equal(t, tt.status, status, raw)
			require.Equal(t, tt.outcome, got, raw)
			// The number in any form (plain, grouped by 4 with spaces or
			// dashes, or just its last 12 digits) and the CVC must be absent.
			for _, form := range []string{tt.number, group(tt.number, " "), group(tt.number, "-"), tt.number[len(tt.number)-12:], `"123"`} {
				require.NotContains(t, raw, form, "response contains card data")
			}
		})
	}
}

func TestSlowCardAndCancelledRequests(t *testing.T) {
	// A caller that gives up before the slow card answers gets no answer,
	// and the simulator counts the request. The test cancels the request
	// itself once the simulator holds it, so no timer races another.
	s, c := newSim(t, Config{SlowDelay: time.Hour})
	b, _ := json.Marshal(auth("4000000000000036", 1000, false))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.srv.URL+"/v1/authorizations", bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan error, 1)
	go func() {
		resp, err := c.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return s.Requests("authorize") == 1 }, 10*time.Second, time.Millisecond, "the simulator never received the slow card's request")
	select {
	case err := <-done:
		require.Failf(t, "the slow card answered before its delay", "err %v", err)
	default:
	}
	cancel()
	require.Error(t, <-done, "a cancelled request got an answer")
	require.Equal(t, int64(1), s.Requests("authorize"))
	// With enough patience it approves.
	_, patient := newSim(t, Config{SlowDelay: 10 * time.Millisecond})
	status, body, _ := patient.do("POST", "/v1/authorizations", auth("4000000000000036", 1000, false), "")
	require.Equal(t, 200, status, "slow card: %v", body)
	require.Equal(t, "approved", body["status"], "slow card")
}

func TestCaptureCancelRefund(t *testing.T) {
	_, c := newSim(t, Config{})
	_, a, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, false), "")
	id := a["id"].(string)
	steps := []struct {
		name   string
		path   string
		body   any
		status int
		check  func(map[string]any) bool
	}{
		{"capture above the authorization", "/capture", map[string]any{"amount": 1001}, 409, nil},
		{"partial capture", "/capture", map[string]any{"amount": 800}, 200, func(b map[string]any) bool { return b["amount_captured"] == 800.0 }},
		{"second capture", "/capture", map[string]any{"amount": 100}, 409, nil},
		{"cancel after capture", "/cancel", nil, 409, nil},
		{"partial refund", "/refunds", map[string]any{"amount": 300}, 200, func(b map[string]any) bool { return b["amount_refunded"] == 300.0 }},
		{"refund above the remaining capture", "/refunds", map[string]any{"amount": 501}, 409, nil},
		{"refund the rest", "/refunds", map[string]any{"amount": 500}, 200, func(b map[string]any) bool { return b["amount_refunded"] == 800.0 }},
		{"nothing left to refund", "/refunds", map[string]any{"amount": 1}, 409, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			status, body, _ := c.on(t).do("POST", "/v1/authorizations/"+id+st.path, st.body, "")
			require.Equal(t, st.status, status, "%v", body)
			if st.check != nil {
				require.True(t, st.check(body), "%v", body)
			}
		})
	}
	_, b, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 500, false), "")
	status, body, _ := c.do("POST", "/v1/authorizations/"+b["id"].(string)+"/cancel", nil, "")
	require.Equal(t, 200, status, "cancel: %v", body)
	require.Equal(t, "canceled", body["status"], "cancel")
	status, _, _ = c.do("POST", "/v1/authorizations/sim_auth_nope/capture", nil, "")
	require.Equal(t, 404, status, "unknown id")
	_, d, _ := c.do("POST", "/v1/authorizations", auth("4000000000000002", 500, false), "")
	status, _, _ = c.do("POST", "/v1/authorizations/"+d["id"].(string)+"/capture", nil, "")
	require.Equal(t, 409, status, "captured a declined authorization")
}

func TestIdempotency(t *testing.T) {
	s, c := newSim(t, Config{})
	_, first, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, true), "k1")
	_, again, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, true), "k1")
	require.Equal(t, first["id"], again["id"], "retry made a new authorization")
	status, _, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 2000, true), "k1")
	require.Equal(t, 409, status, "same key, different amount")
	require.Equal(t, int64(3), s.Requests("authorize"), "requests counted")
}

func TestSettlementReport(t *testing.T) {
	_, c := newSim(t, Config{})
	c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, true), "")
	c.do("POST", "/v1/authorizations", auth("4000000000000259", 2000, true), "")
	c.do("POST", "/v1/authorizations", auth("5555555555554444", 3000, false), "") // not captured: not settled
	var reportID string
	read := func() [][]string {
		resp, err := c.srv.Client().Get(c.srv.URL + "/v1/settlements/next")
		require.NoError(t, err)
		defer resp.Body.Close()
		reportID = resp.Header.Get("Settlement-Report-Id")
		rows, err := csv.NewReader(resp.Body).ReadAll()
		require.NoError(t, err)
		return rows
	}
	rows := read()
	first := reportID
	require.Len(t, rows, 4, "report: %v", rows)
	require.Equal(t, "acquirer_reference,amount,fee,currency,settled_date,type,reason,report_id", strings.Join(rows[0], ","))
	var captures, chargebacks int
	for _, r := range rows[1:] {
		switch r[5] {
		case "capture":
			captures++
			if r[1] == "1000" {
				require.Equal(t, "59", r[2], "fee on 1000") // 2.9% + 30
			}
		case "chargeback":
			chargebacks++
			require.Equal(t, "-2000", r[1], "chargeback amount")
			require.Equal(t, "fraudulent", r[6], "chargeback reason")
		}
	}
	require.Equal(t, 2, captures, "captures")
	require.Equal(t, 1, chargebacks, "chargebacks")
	// Reading is idempotent: the same report until it is acknowledged
	// (a second read used to return nothing, so a lost answer lost the
	// report).
	require.NotEmpty(t, first)
	assert.Equal(t, rows, read(), "a second read answers the same report")
	assert.Equal(t, first, reportID)
	status, _, _ := c.do("GET", "/v1/settlements/"+first, nil, "")
	assert.Equal(t, 200, status)
	status, body, _ := c.do("POST", "/v1/settlements/"+first+"/ack", nil, "")
	require.Equal(t, 200, status)
	assert.Equal(t, true, body["acked"])
	// The dispute goes on, one step per report; nothing else is reported
	// twice.
	for _, step := range []string{"dispute_review", "dispute_lost"} {
		again := read()
		require.Len(t, again, 2, "%s: %v", step, again)
		assert.Equal(t, step, again[1][5])
		assert.Equal(t, []string{"0", "0"}, again[1][1:3], "%s moves no money", step)
		assert.Equal(t, reportID, again[1][7], "the row names its report")
		status, _, _ = c.do("POST", "/v1/settlements/"+reportID+"/ack", nil, "")
		require.Equal(t, 200, status)
	}
	require.Len(t, read(), 1, "settled lines reported twice")
	assert.Empty(t, reportID, "an empty report has no id")
	status, _, _ = c.do("POST", "/v1/settlements/stl_9999/ack", nil, "")
	assert.Equal(t, 404, status)
	// New captures go into the next report.
	c.do("POST", "/v1/authorizations", auth("4242424242424242", 700, true), "")
	next := read()
	require.Len(t, next, 2)
	assert.Equal(t, "700", next[1][1])
	assert.NotEqual(t, first, reportID)
}

// TestStateSurvivesRestart: with a StatePath (obol dev), an authorization
// made before a restart is captured and refunded after it, idempotent
// replays and settlement reports survive too, and the file holds no card
// number.
func TestStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "simulator.json")
	_, c := newSim(t, Config{StatePath: path})
	status, a, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 2500, false), "auth-1")
	require.Equal(t, 200, status)
	id := a["id"].(string)
	c.do("POST", "/v1/authorizations", auth("5555555555554444", 900, true), "")
	c.srv.Close()

	_, c = newSim(t, Config{StatePath: path})
	status, replay, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 2500, false), "auth-1")
	require.Equal(t, 200, status)
	assert.Equal(t, id, replay["id"], "the idempotent replay survives")
	status, got, _ := c.do("POST", "/v1/authorizations/"+id+"/capture", map[string]any{"amount": 2500}, "")
	require.Equal(t, 200, status, "capture after the restart: %v", got)
	status, got, _ = c.do("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 500}, "")
	require.Equal(t, 200, status, "refund after the restart: %v", got)
	assert.EqualValues(t, 500, got["amount_refunded"])
	resp, err := c.srv.Client().Get(c.srv.URL + "/v1/settlements/next")
	require.NoError(t, err)
	resp.Body.Close()
	rid := resp.Header.Get("Settlement-Report-Id")
	require.NotEmpty(t, rid)
	c.srv.Close()

	_, c = newSim(t, Config{StatePath: path})
	status, got, _ = c.do("GET", "/v1/authorizations/"+id, nil, "")
	require.Equal(t, 200, status)
	assert.EqualValues(t, 2500, got["amount_captured"])
	status, _, raw := c.do("GET", "/v1/settlements/"+rid, nil, "")
	require.Equal(t, 200, status)
	assert.Contains(t, raw, id)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, pan := range []string{"4242424242424242", "5555555555554444"} {
		assert.NotContains(t, string(b), pan)
	}
}

func group(n, sep string) string {
	var parts []string
	for len(n) > 4 {
		parts, n = append(parts, n[:4]), n[4:]
	}
	return strings.Join(append(parts, n), sep)
}

// TestStateNotSaved: with a StatePath that cannot be written, a change is a
// 500 state_not_saved, never an answer the next start would not know.
func TestStateNotSaved(t *testing.T) {
	_, c := newSim(t, Config{StatePath: filepath.Join(t.TempDir(), "gone", "simulator.json")})
	status, body, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, false), "")
	assert.Equal(t, 500, status)
	assert.Equal(t, "state_not_saved", body["error"].(map[string]any)["code"])
}

// TestConcurrentSameKey: two requests with one Idempotency-Key that arrive
// together (two gateway processes after a lease takeover) make one refund:
// the second waits for the first and replays its answer.
func TestConcurrentSameKey(t *testing.T) {
	s, c := newSim(t, Config{})
	_, a, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 1000, true), "")
	id := a["id"].(string)
	// The first request to reach its handler waits there until both
	// requests have arrived, so that they overlap.
	var arrived sync.WaitGroup
	arrived.Add(2)
	s.hooks.arrived = arrived.Done
	s.hooks.handling = arrived.Wait
	type answer struct {
		status int
		body   map[string]any
		err    error
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			st, b, _, err := c.try("POST", "/v1/authorizations/"+id+"/refunds", map[string]any{"amount": 400}, "refund-1")
			answers <- answer{st, b, err}
		}()
	}
	first, second := <-answers, <-answers
	require.NoError(t, first.err)
	require.NoError(t, second.err)
	assert.Equal(t, 200, first.status)
	assert.Equal(t, 200, second.status)
	assert.Equal(t, first.body, second.body, "the second request replays the first answer")
	got, ok := s.Authorization(id)
	require.True(t, ok)
	assert.Equal(t, 1, got.RefundCount, "one refund for one key")
	assert.Equal(t, int64(400), got.Refunded)
}

// TestSettlementDisputeWonAndRefunds: the won dispute card's dispute ends
// with the disputed amount (captured, not refunded) and the fee returned;
// refunds are reported once each, in the first report after them.
func TestSettlementDisputeWonAndRefunds(t *testing.T) {
	_, c := newSim(t, Config{})
	_, won, _ := c.do("POST", "/v1/authorizations", auth("4000000000002685", 5000, true), "")
	_, plain, _ := c.do("POST", "/v1/authorizations", auth("4242424242424242", 900, true), "")
	status, _, _ := c.do("POST", "/v1/authorizations/"+won["id"].(string)+"/refunds", map[string]any{"amount": 1000}, "")
	require.Equal(t, 200, status)
	next := func() [][]string {
		resp, err := c.srv.Client().Get(c.srv.URL + "/v1/settlements/next")
		require.NoError(t, err)
		defer resp.Body.Close()
		rows, err := csv.NewReader(resp.Body).ReadAll()
		require.NoError(t, err)
		if id := resp.Header.Get("Settlement-Report-Id"); id != "" {
			status, _, _ := c.do("POST", "/v1/settlements/"+id+"/ack", nil, "")
			require.Equal(t, 200, status)
		}
		var out [][]string
		for _, r := range rows[1:] {
			out = append(out, r[:7])
		}
		return out
	}
	wid, pid := won["id"].(string), plain["id"].(string)
	first := next() // authorizations made in one second come in any order
	require.NotEmpty(t, first)
	assert.ElementsMatch(t, [][]string{
		{wid, "5000", "175", "USD", first[0][4], "capture", ""},
		{wid, "-1000", "0", "USD", first[0][4], "refund", ""},
		{wid, "-4000", "1500", "USD", first[0][4], "chargeback", "product_not_received"},
		{pid, "900", "56", "USD", first[0][4], "capture", ""},
	}, first)
	status, _, _ = c.do("POST", "/v1/authorizations/"+pid+"/refunds", map[string]any{"amount": 100}, "")
	require.Equal(t, 200, status)
	day := first[0][4]
	assert.ElementsMatch(t, [][]string{{wid, "0", "0", "USD", day, "dispute_review", ""}, {pid, "-100", "0", "USD", day, "refund", ""}}, next())
	assert.Equal(t, [][]string{{wid, "4000", "1500", "USD", day, "dispute_won", ""}}, next())
	assert.Empty(t, next(), "nothing left to report")
}
