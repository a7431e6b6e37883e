package simulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/proxy/panscan"
)

// Operations are the names the counters give the routes: what the failure
// drills count "at the acquirer".
var operations = map[string]string{
	"authorize": "authorization", "capture": "capture", "cancel": "void", "refund": "refund", "reversal": "reversal",
	"get": "get", "list": "list", "settlement": "settlement", "settlement_ack": "settlement_ack",
}

// Idempotency results of a write.
const (
	idemFirst    = "first"    // first request with its key: handled
	idemReplayed = "replayed" // same key, same request: the first answer again
	idemConflict = "conflict" // same key, another request: 409
	idemNone     = "none"     // no Idempotency-Key
)

// Stats are the simulator's counters (GET /v1/stats, and /metrics through
// Collector): requests by operation and outcome, and for the writes the
// idempotency results, with the replays of each key.
type Stats struct {
	// Operations[operation][outcome] counts answered requests, replays
	// included. Outcome: for an authorization its status (approved,
	// declined, reversed), "ok" for the other successes, else the error
	// code (e.g. processing_error, capture_exceeds_authorization).
	Operations map[string]map[string]int64 `json:"operations"`
	// Declines[code] counts the declined authorizations by decline code
	// (first answers only).
	Declines map[string]int64 `json:"declines"`
	// Idempotency[operation][result] counts writes: first, replayed,
	// conflict, none.
	Idempotency map[string]map[string]int64 `json:"idempotency"`
	// Replays[operation][key] is how many times a key was replayed (keys
	// with at least one replay or conflict; a key that looks like a card
	// number is shown masked).
	Replays map[string]map[string]int64 `json:"replays"`
}

type stats struct {
	mu sync.Mutex
	s  Stats
}

func newStats() *stats {
	return &stats{s: Stats{Operations: map[string]map[string]int64{}, Declines: map[string]int64{}, Idempotency: map[string]map[string]int64{}, Replays: map[string]map[string]int64{}}}
}

func inc(m map[string]map[string]int64, a, b string) {
	if m[a] == nil {
		m[a] = map[string]int64{}
	}
	m[a][b]++
}

// record counts one answered request.
func (st *stats) record(op string, write bool, key string, status int, replayed bool, body []byte) {
	outcome, decline := outcomeOf(op, status, body)
	st.mu.Lock()
	defer st.mu.Unlock()
	inc(st.s.Operations, op, outcome)
	if decline != "" && !replayed {
		st.s.Declines[decline]++
	}
	if !write {
		return
	}
	res := idemFirst
	switch {
	case key == "":
		res = idemNone
	case replayed:
		res = idemReplayed
	case status == http.StatusConflict && outcome == "idempotency_key_reused":
		res = idemConflict
	}
	inc(st.s.Idempotency, op, res)
	if res == idemReplayed || res == idemConflict {
		if panscan.Contains(key) {
			key = panscan.String(key)
		}
		if len(key) > 255 {
			key = key[:255]
		}
		inc(st.s.Replays, op, key)
	}
}

// outcomeOf reads an answer: an authorization's status (ok for the other
// successes) or the error code, and
// the decline code of a declined authorization. Codes come from the
// simulator's own answers (a fixed set); anything else is "other".
func outcomeOf(op string, status int, body []byte) (outcome, decline string) {
	var v struct {
		Status      string `json:"status"`
		DeclineCode string `json:"decline_code"`
		Error       struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &v)
	switch {
	case op == "authorization" && v.Status != "":
		outcome = label(v.Status)
		if outcome == "declined" {
			decline = label(v.DeclineCode)
		}
	case status < 300:
		outcome = "ok"
	case v.Error.Code != "":
		outcome = label(v.Error.Code)
	case status == http.StatusNotFound:
		outcome = "not_found"
	default:
		outcome = "other"
	}
	return outcome, decline
}

// label keeps snake_case words of at most 40 characters; anything else is
// "other" (labels come from fixed sets).
func label(s string) string {
	if s == "" || len(s) > 40 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "other"
	}
	return s
}

// snapshot is a deep copy.
func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	cp := func(m map[string]map[string]int64) map[string]map[string]int64 {
		out := make(map[string]map[string]int64, len(m))
		for k, in := range m {
			out[k] = make(map[string]int64, len(in))
			for k2, n := range in {
				out[k][k2] = n
			}
		}
		return out
	}
	d := make(map[string]int64, len(st.s.Declines))
	for k, n := range st.s.Declines {
		d[k] = n
	}
	return Stats{Operations: cp(st.s.Operations), Declines: d, Idempotency: cp(st.s.Idempotency), Replays: cp(st.s.Replays)}
}

// Stats returns a copy of the counters since start (they are not kept in
// Config.StatePath).
func (s *Simulator) Stats() Stats { return s.stats.snapshot() }

func (s *Simulator) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

var (
	descRequests     = prometheus.NewDesc("obol_acquirer_sim_requests_total", "Requests the acquirer simulator answered, by operation and outcome (authorization status, ok, or error code); idempotent replays included.", []string{"operation", "outcome"}, nil)
	descDeclines     = prometheus.NewDesc("obol_acquirer_sim_declines_total", "Authorizations the simulator declined, by decline code (replays excluded).", []string{"code"}, nil)
	descIdempotency  = prometheus.NewDesc("obol_acquirer_sim_idempotency_total", "Writes by idempotency result: first, replayed (same key and request), conflict (same key, another request), none (no Idempotency-Key).", []string{"operation", "result"}, nil)
	descKeysReplayed = prometheus.NewDesc("obol_acquirer_sim_keys_replayed", "Idempotency-Keys replayed at least once, by operation (GET /v1/stats lists them).", []string{"operation"}, nil)
)

// Collector exposes the counters to Prometheus (cmd/acquirer-sim serves
// them on /metrics).
func (s *Simulator) Collector() prometheus.Collector { return statsCollector{s} }

type statsCollector struct{ s *Simulator }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descDeclines
	ch <- descIdempotency
	ch <- descKeysReplayed
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for op, m := range st.Operations {
		for outcome, n := range m {
			ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), op, outcome)
		}
	}
	for code, n := range st.Declines {
		ch <- prometheus.MustNewConstMetric(descDeclines, prometheus.CounterValue, float64(n), code)
	}
	for op, m := range st.Idempotency {
		for res, n := range m {
			ch <- prometheus.MustNewConstMetric(descIdempotency, prometheus.CounterValue, float64(n), op, res)
		}
	}
	for op, keys := range st.Replays {
		ch <- prometheus.MustNewConstMetric(descKeysReplayed, prometheus.GaugeValue, float64(len(keys)), op)
	}
}
