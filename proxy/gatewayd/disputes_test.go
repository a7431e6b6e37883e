package gatewayd_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/vault/merchants"
)

// settle reads the simulator's next settlement report, imports it into the
// ledger and acknowledges it, as the README's walk-through does; it returns
// the import's report.
func (s *stack) settle(t *testing.T) *ledgerv1.SettlementReport {
	t.Helper()
	rec := httptest.NewRecorder()
	s.sim.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/settlements/next", nil))
	require.Equal(t, 200, rec.Code)
	csv, _ := io.ReadAll(rec.Body)
	rep, err := s.ledger.ImportSettlement(s.ledgerCtx, &ledgerv1.ImportSettlementRequest{Acquirer: "simulator", Csv: string(csv)})
	require.NoError(t, err, "import %s", csv)
	if id := rec.Header().Get("Settlement-Report-Id"); id != "" {
		ack := httptest.NewRecorder()
		s.sim.ServeHTTP(ack, httptest.NewRequest("POST", "/v1/settlements/"+id+"/ack", nil))
		require.Equal(t, 200, ack.Code)
	}
	v, err := s.ledger.Verify(s.ledgerCtx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err)
	require.Empty(t, v.GetProblems(), "ledger verify after the import")
	return rep
}

// TestDisputeLifecycle: the dispute test cards, end to end through the
// simulator's settlement reports and the ledger's import: a chargeback
// opens a dispute the merchant reads at the gateway (/v1/disputes, and
// amount_disputed on the payment), the next report moves it under review,
// the one after closes …0259's lost and …2685's won (its chargeback and
// fee reversed); refunds settle like captures; the ledger verifies after
// every import. Another merchant sees none of it, and with ledgerd down the
// reads that need it fail closed.
func TestDisputeLifecycle(t *testing.T) {
	s := start(t)
	paid := func(pan string, amount int, capture bool) string {
		t.Helper()
		tok := s.tokenize(t, pan, "123")
		st, p := s.pay(t, `{"token":"`+tok+`","amount":`+strconv.Itoa(amount)+`,"currency":"USD","capture":`+map[bool]string{true: "true", false: "false"}[capture]+`}`, "")
		require.Equal(t, 200, st, "%v", p)
		return p["id"].(string)
	}
	lost, won, plain, open := paid("4000000000000259", 2000, true), paid("4000000000002685", 3000, true), paid("4242424242424242", 1000, true), paid("5555555555554444", 700, false)
	st, r := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+plain+"/refunds", `{"amount":400}`, "refund-plain")
	require.Equal(t, 200, st, "%v", r)

	disputes := func() map[string]map[string]any {
		t.Helper()
		st, l := s.call(t, "GET", "http://"+s.gw+"/v1/disputes", "", "")
		require.Equal(t, 200, st, "%v", l)
		out := map[string]map[string]any{}
		list, _ := l["disputes"].([]any)
		for _, d := range list {
			d := d.(map[string]any)
			out[d["payment"].(string)] = d
		}
		return out
	}
	disputed := func(id string) any {
		t.Helper()
		st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+id, "", "")
		require.Equal(t, 200, st, "%v", p)
		return p["amount_disputed"]
	}

	// Report 1: the captures, the refund, both chargebacks.
	rep := s.settle(t)
	assert.EqualValues(t, 6, rep.GetMatched(), "%v", rep)
	assert.EqualValues(t, 5000, rep.GetChargebackGross())
	ds := disputes()
	require.Len(t, ds, 2)
	assert.Equal(t, "needs_response", ds[lost]["status"])
	assert.Equal(t, "fraudulent", ds[lost]["reason"])
	assert.EqualValues(t, 2000, ds[lost]["amount"])
	assert.Equal(t, "USD", ds[lost]["currency"])
	assert.Equal(t, "product_not_received", ds[won]["reason"])
	assert.EqualValues(t, 2000, disputed(lost))
	assert.EqualValues(t, 3000, disputed(won))
	assert.Nil(t, disputed(plain), "no dispute: no amount_disputed")
	assert.Nil(t, disputed(open))
	lostID := ds[lost]["id"].(string)
	require.True(t, strings.HasPrefix(lostID, "dp_"), lostID)
	st, one := s.call(t, "GET", "http://"+s.gw+"/v1/disputes/"+lostID, "", "")
	require.Equal(t, 200, st, "%v", one)
	assert.Equal(t, ds[lost], one, "GET /v1/disputes/{id} answers the listed dispute")
	st, page := s.call(t, "GET", "http://"+s.gw+"/v1/disputes?payment="+won, "", "")
	require.Equal(t, 200, st)
	require.Len(t, page["disputes"], 1, "filtered by payment")

	// Report 2: both under review. Report 3: one lost, one won.
	rep = s.settle(t)
	assert.EqualValues(t, 2, rep.GetMatched(), "%v", rep)
	for p, d := range disputes() {
		assert.Equal(t, "under_review", d["status"], p)
	}
	before := s.balances(t)
	rep = s.settle(t)
	assert.EqualValues(t, 2, rep.GetMatched(), "%v", rep)
	ds = disputes()
	assert.Equal(t, "lost", ds[lost]["status"])
	assert.Equal(t, "won", ds[won]["status"])
	assert.EqualValues(t, 2000, disputed(lost), "a lost dispute stays disputed")
	assert.Nil(t, disputed(won), "a won dispute is not")
	after := s.balances(t)
	assert.EqualValues(t, 3000+1500, after.GetPending()-before.GetPending(), "the won chargeback and its fee returned to the merchant")
	assert.Empty(t, s.settle(t).GetResults(), "nothing left to settle")

	// Another merchant's key sees none of it.
	keys, err := merchants.Create(context.Background(), s.vaultd().Store, "Other", nil, "test")
	require.NoError(t, err)
	own := s.sk
	s.sk = keys.SecretKey
	st, l := s.call(t, "GET", "http://"+s.gw+"/v1/disputes", "", "")
	require.Equal(t, 200, st)
	assert.Empty(t, l["disputes"])
	st, m := s.call(t, "GET", "http://"+s.gw+"/v1/disputes/"+lostID, "", "")
	s.sk = own
	assert.Equal(t, 404, st)
	assert.Equal(t, "dispute_not_found", errCode(m))

	refusals := []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown dispute", "/v1/disputes/dp_000000000000000000000000", 404, "dispute_not_found"},
		{"forged page token", "/v1/disputes?page_token=nope", 400, "page_token_invalid"},
		{"page size too large", "/v1/disputes?page_size=500", 400, "page_size_invalid"},
		{"bad payment filter", "/v1/disputes?payment=pay%20x", 400, "payment_id_invalid"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			st, m := s.call(t, "GET", "http://"+s.gw+tt.path, "", "")
			assert.Equal(t, tt.status, st, "%v", m)
			assert.Equal(t, tt.code, errCode(m))
		})
	}
	req, _ := http.NewRequest("GET", "http://"+s.gw+"/v1/disputes", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode, "no key")

	// ledgerd down: what needs it fails closed; a payment never captured
	// (it cannot be disputed) still reads.
	s.deps["ledger"].down()
	for _, path := range []string{"/v1/disputes", "/v1/disputes/" + lostID, "/v1/payments/" + lost, "/v1/payments"} {
		st, m := s.call(t, "GET", "http://"+s.gw+path, "", "")
		assert.Equal(t, 503, st, "%s: %v", path, m)
		assert.Equal(t, "ledger_unavailable", errCode(m), path)
	}
	st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+open, "", "")
	assert.Equal(t, 200, st, "an uncaptured payment with ledgerd down: %v", p)
	s.deps["ledger"].up(t)
	eventually(t, "the payment reads again once ledgerd is back", func() bool {
		st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+lost, "", "")
		return st == 200 && p["amount_disputed"] == 2000.0
	})
}
