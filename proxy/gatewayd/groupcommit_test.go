package gatewayd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// answer is one REST answer of a concurrent caller (goroutines may not
// call require).
type answer struct {
	status int
	body   map[string]any
	err    error
}

func (s *stack) callAsync(method, url, body, idem string) answer {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+s.sk)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.StatusCode}
	if err := json.Unmarshal(b, &a.body); err != nil {
		a.err = fmt.Errorf("%d %s: %w", resp.StatusCode, b, err)
	}
	return a
}

// concurrently runs n calls at once and returns their answers in order.
func concurrently(n int, call func(i int) answer) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = call(i)
		}()
	}
	wg.Wait()
	return out
}

// approvedCards are test cards the simulator approves (each used at most
// three times a minute: the default rules challenge a fourth).
var approvedCards = []string{"4242424242424242", "5555555555554444", "2223003122003222", "6011111111111117", "3566002020360505", "6200000000000005"}

// TestGroupCommitFailureCallsNoAcquirer: concurrent payments share the
// gateway's write transactions. Half of them carry a processing row whose
// COMMIT fails (a deferred constraint trigger): each of those answers 503
// storage_unavailable, leaves no row and reaches neither the ledger's
// hold nor the acquirer, while the others, committed in the same batches
// or alone after the batch was rolled back, are captured.
func TestGroupCommitFailureCallsNoAcquirer(t *testing.T) {
	s := start(t)
	db := s.gatewayDBConn(t)
	_, err := db.Exec(`CREATE FUNCTION fail_at_commit() RETURNS trigger AS $$ BEGIN
		IF NEW.description = 'fail at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
		CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON payments DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()`)
	require.NoError(t, err)
	toks := make([]string, len(approvedCards))
	for i, pan := range approvedCards {
		toks[i] = s.tokenize(t, pan, "123")
	}
	before, auths := s.balances(t), s.sim.Authorizations()
	n := 2 * len(toks)
	answers := concurrently(n, func(i int) answer {
		desc := "ok"
		if i%2 == 1 {
			desc = "fail at commit"
		}
		return s.callAsync("POST", "http://"+s.gw+"/v1/payments", `{"token":"`+toks[i/2]+`","amount":1000,"currency":"USD","capture":true,"description":"`+desc+`"}`, "")
	})
	for i, a := range answers {
		require.NoError(t, a.err, "payment %d", i)
		if i%2 == 1 {
			assert.Equal(t, 503, a.status, "payment %d whose commit fails: %v", i, a.body)
			assert.Equal(t, "storage_unavailable", errCode(a.body), "payment %d whose commit fails", i)
			continue
		}
		assert.Equal(t, 200, a.status, "payment %d: %v", i, a.body)
		assert.Equal(t, "captured", a.body["status"], "payment %d: %v", i, a.body)
	}
	assert.Equal(t, len(toks), s.sim.Authorizations()-auths, "authorizations at the acquirer: the committed payments only")
	var failed, stored int
	require.NoError(t, db.QueryRow(`SELECT count(*) FILTER (WHERE description = 'fail at commit'), count(*) FROM payments`).Scan(&failed, &stored))
	assert.Zero(t, failed, "rows of payments whose commit failed")
	assert.Equal(t, len(toks), stored, "rows of the committed payments")
	after := s.balances(t)
	assert.EqualValues(t, 0, after.Held-before.Held, "no hold left behind")
	s.verifyLedger(t)
}

// TestConcurrentSameKey: requests with one Idempotency-Key sent at once,
// while the gateway groups its writes, act once: one authorization, one
// capture at the acquirer; every answer is the first result or a 409 that
// the request is in progress, and a later retry gets the first result.
func TestConcurrentSameKey(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4242424242424242", "123")
	auths := s.sim.Authorizations()
	const n = 8
	body := `{"token":"` + tok + `","amount":2000,"currency":"USD","capture":false}`
	check := func(what string, answers []answer, want string) string {
		t.Helper()
		id := ""
		for i, a := range answers {
			require.NoError(t, a.err, "%s %d", what, i)
			if a.status == 409 {
				assert.Contains(t, []string{"idempotency_request_in_progress", "payment_busy"}, errCode(a.body), "%s %d: %v", what, i, a.body)
				continue
			}
			require.Equal(t, 200, a.status, "%s %d: %v", what, i, a.body)
			assert.Equal(t, want, a.body["status"], "%s %d", what, i)
			if id == "" {
				id = a.body["id"].(string)
			}
			assert.Equal(t, id, a.body["id"], "%s %d: one payment", what, i)
		}
		return id
	}
	pays := concurrently(n, func(int) answer { return s.callAsync("POST", "http://"+s.gw+"/v1/payments", body, "same-key-pay") })
	id := check("authorize", pays, "authorized")
	if id == "" {
		st, p := s.pay(t, body, "same-key-pay")
		require.Equal(t, 200, st, "retry: %v", p)
		id = p["id"].(string)
	}
	assert.Equal(t, 1, s.sim.Authorizations()-auths, "authorizations at the acquirer")

	captures := concurrently(n, func(int) answer {
		return s.callAsync("POST", "http://"+s.gw+"/v1/payments/"+id+"/capture", `{}`, "same-key-capture")
	})
	check("capture", captures, "captured")
	st, p := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+id+"/capture", `{}`, "same-key-capture")
	require.Equal(t, 200, st, "retry: %v", p)
	require.Equal(t, "captured", p["status"])
	captured, _ := s.acquirer(t, p)
	assert.EqualValues(t, 2000, captured, "captured once at the acquirer")
	var ops int
	require.NoError(t, s.gatewayDBConn(t).QueryRow(`SELECT count(*) FROM payment_operations WHERE payment_id = $1`, id).Scan(&ops))
	assert.Equal(t, 1, ops, "capture operations stored")
	s.verifyLedger(t)
}
