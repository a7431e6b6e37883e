package gatewayd_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/proxy/reconcile"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
)

func (s *stack) reconcile(t *testing.T) *reconcile.Report {
	t.Helper()
	gw, err := paypg.OpenReadOnly(context.Background(), s.gatewayDB)
	require.NoError(t, err)
	defer gw.Close()
	rep, err := reconcile.Run(context.Background(), gw, s.ledger, reconcile.Options{LedgerToken: "ledger-token"})
	require.NoError(t, err)
	return rep
}

func sqlOn(t *testing.T, url string, qs ...string) {
	t.Helper()
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	for _, q := range qs {
		tag, err := db.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err, q)
		if tag.Delete() || tag.Update() {
			require.NotZero(t, tag.RowsAffected(), "changed nothing: %s", q)
		}
	}
}

// TestReconcileWithLedger: payments through the real stack (vaultd on
// Vault, riskd, ledgerd on PostgreSQL, the simulator) reconcile clean; a
// capture the ledger missed during an outage is reported, explained by the
// pending outbox entry, until the sweeper delivers it; then a refund lost
// by the ledger and a payment row lost by the gateway are each reported
// exactly.
func TestReconcileWithLedger(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4242424242424242", "123")
	pay := func(body string) string {
		t.Helper()
		st, p := s.pay(t, body, "")
		require.Equal(t, 200, st, "%v", p)
		return p["id"].(string)
	}
	authorized := pay(`{"token":"` + tok + `","amount":2500,"currency":"USD","capture":false}`)
	refunded := pay(`{"token":"` + tok + `","amount":1500,"currency":"USD","capture":true}`)
	st, p := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+refunded+"/refunds", `{"amount":500}`, "")
	require.Equal(t, 200, st, "%v", p)
	refundID := p["refunds"].([]any)[0].(map[string]any)["id"].(string)
	canceled := pay(`{"token":"` + tok + `","amount":700,"currency":"USD","capture":false}`)
	st, p = s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+canceled+"/cancel", `{}`, "")
	require.Equal(t, 200, st, "%v", p)
	declined := pay(`{"token":"` + s.tokenize(t, "4000000000000002", "123") + `","amount":1000,"currency":"USD","capture":true}`)

	rep := s.reconcile(t)
	require.Empty(t, rep.Differences)
	require.Equal(t, 4, rep.GatewayPayments)
	require.Equal(t, 4, rep.LedgerPayments)

	// The ledger goes down as the acquirer captures: the capture waits in
	// the outbox, and reconcile says so.
	h := func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/capture") {
			s.hook.Store(nil)
			s.deps["ledger"].down()
		}
	}
	s.hook.Store(&h)
	st, p = s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+authorized+"/capture", `{}`, "")
	require.Equal(t, 200, st, "%v", p)
	require.Equal(t, "captured", p["status"])
	s.deps["ledger"].up(t)
	eventually(t, "ledgerd reachable again", func() bool {
		_, err := s.ledger.ListPaymentLedgers(s.ledgerCtx, &ledgerv1.ListPaymentLedgersRequest{PageSize: 1})
		return err == nil
	})
	ob := []string{"PAYMENT_EVENT_CAPTURED:" + authorized + ":"}
	rep = s.reconcile(t)
	require.Equal(t, []reconcile.Difference{
		{PaymentID: authorized, MerchantID: s.merchantID, Kind: reconcile.KindAmountMismatch, Field: "captured", GatewayStatus: "captured", Gateway: "2500", Ledger: "0", Explained: true, Outbox: ob},
		{PaymentID: authorized, MerchantID: s.merchantID, Kind: reconcile.KindStatusMismatch, Field: "hold_status", GatewayStatus: "captured", Gateway: "captured", Ledger: "pending", Explained: true, Outbox: ob},
	}, rep.Differences)
	require.Equal(t, 0, rep.Unexplained())
	require.Equal(t, 1, rep.PendingOutbox)
	eventually(t, "the outbox delivered", func() bool {
		res, err := s.gateway.Service.Sweep(context.Background())
		return err == nil && res.Delivered == 1
	})
	require.Empty(t, s.reconcile(t).Differences)

	// The ledger loses a refund; the gateway loses a payment row.
	sqlOn(t, s.ledgerDB,
		`ALTER TABLE postings DISABLE TRIGGER postings_immutable`,
		`ALTER TABLE transactions DISABLE TRIGGER transactions_immutable`,
		`DELETE FROM postings WHERE seq = (SELECT seq FROM transactions WHERE id = 'pay:`+refunded+`:refund:`+refundID+`')`,
		`DELETE FROM transactions WHERE id = 'pay:`+refunded+`:refund:`+refundID+`'`)
	sqlOn(t, s.gatewayDB, `DELETE FROM payments WHERE id = '`+declined+`'`)
	rep = s.reconcile(t)
	want := []reconcile.Difference{
		{PaymentID: declined, MerchantID: s.merchantID, Kind: reconcile.KindMissingAtGateway, Gateway: "none", Ledger: "hold voided 1000 USD, captured 0, refunded 0"},
		{PaymentID: refunded, MerchantID: s.merchantID, Kind: reconcile.KindMissingInLedger, Field: "refunds[" + refundID + "]", GatewayStatus: "partially_refunded", Gateway: "500", Ledger: "none"},
	}
	if want[1].PaymentID < want[0].PaymentID {
		want[0], want[1] = want[1], want[0]
	}
	require.Equal(t, want, rep.Differences)
	require.Equal(t, 2, rep.Unexplained())
}
