package reconcile_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/ledgerd"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/proxy/reconcile"
	"github.com/obolpay/obol/proxy/service"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "ledger-token"

// fixture is a real ledgerd (gRPC, PostgreSQL) and the gateway's payment
// store (PostgreSQL), with payments recorded on both sides as the gateway
// records them: the payment row in its store, each state change through
// the ledger's RecordPayment.
type fixture struct {
	gw                  *paystore.Store
	ledger              ledgerv1.LedgerServiceClient
	gatewayDB, ledgerDB string
	fees                map[string]int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	pg := testenv.SharedPostgres(t)
	f := &fixture{ledgerDB: pg.NewDatabase(t, "ledger", ledgerpg.MigrateURL), gatewayDB: pg.NewDatabase(t, "gateway", paypg.MigrateURL), fees: map[string]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	l, err := ledgerd.Start(ctx, ledgerd.Config{PostgresURL: f.ledgerDB, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: token, SweepEvery: time.Hour})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done; l.Close() })
	conn, err := grpc.NewClient(l.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	f.ledger = ledgerv1.NewLedgerServiceClient(conn)
	f.gw, err = paypg.Open(context.Background(), f.gatewayDB)
	require.NoError(t, err)
	t.Cleanup(func() { f.gw.Close() })

	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, p := range []struct {
		id, status               string
		amount, captured, refund int64
		events                   []ledgerv1.PaymentEvent
	}{
		{"pay_auth", service.StatusAuthorized, 1000, 0, 0, []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED}},
		{"pay_cap", service.StatusCaptured, 2000, 2000, 0, []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED}},
		{"pay_ref", service.StatusPartiallyRefunded, 3000, 3000, 500, []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED}},
		{"pay_can", service.StatusCanceled, 1500, 0, 0, []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED}},
		{"pay_dec", service.StatusDeclined, 900, 0, 0, nil},
		{"pay_busy", service.StatusProcessing, 700, 0, 0, []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED}},
	} {
		gp := &service.Payment{ID: p.id, MerchantID: "mer_1", Status: p.status, Amount: p.amount, AmountCaptured: p.captured, AmountRefunded: p.refund,
			Currency: "USD", Token: "tok_x", Acquirer: "simulator", AcquirerReference: "ref_" + p.id, CreatedAt: now, UpdatedAt: now}
		if p.refund > 0 {
			gp.Refunds = []service.Refund{{ID: "re_1", Amount: p.refund, CreatedAt: now}}
		}
		for _, ev := range p.events {
			req := &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: p.id, MerchantId: "mer_1", Currency: "USD", Amount: p.amount, Acquirer: "simulator", AcquirerReference: "ref_" + p.id}
			switch ev {
			case ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED:
				req.Amount = 0
			case ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED:
				req.Amount, req.RefundId = p.refund, "re_1"
			}
			resp, err := f.ledger.RecordPayment(f.ctx(), req)
			require.NoError(t, err)
			if ev == ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED {
				gp.Fee = resp.GetFee()
				f.fees[p.id] = resp.GetFee()
			}
		}
		require.NoError(t, f.gw.Insert(context.Background(), gp))
	}
	return f
}

func (f *fixture) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (f *fixture) run(t *testing.T) *reconcile.Report {
	t.Helper()
	rep, err := reconcile.Run(context.Background(), f.gw, f.ledger, reconcile.Options{LedgerToken: token, PageSize: 2})
	require.NoError(t, err)
	return rep
}

func execSQL(t *testing.T, url string, qs ...string) {
	t.Helper()
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	for _, q := range qs {
		tag, err := db.Exec(ctx, q)
		require.NoError(t, err, q)
		if tag.Delete() || tag.Update() {
			require.NotZero(t, tag.RowsAffected(), "changed nothing: %s", q)
		}
	}
}

// ledgerTamper lifts the journal's immutability (as an attacker with owner
// rights, or a restore from the wrong backup, would) before qs.
func ledgerTamper(t *testing.T, f *fixture, qs ...string) {
	t.Helper()
	execSQL(t, f.ledgerDB, append([]string{`ALTER TABLE postings DISABLE TRIGGER postings_immutable`, `ALTER TABLE transactions DISABLE TRIGGER transactions_immutable`}, qs...)...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestReconcile: a clean stack reports no difference; each tampering with
// one side is reported exactly; a difference that the gateway's pending
// ledger outbox will resolve is reported as explained.
func TestReconcile(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		f := newFixture(t)
		rep := f.run(t)
		require.Empty(t, rep.Differences)
		require.Equal(t, 6, rep.GatewayPayments)
		require.Equal(t, 1, rep.InFlight)
		require.Equal(t, 5, rep.LedgerPayments)
		require.NotZero(t, f.fees["pay_cap"], "the default fee applies")
	})
	cases := []struct {
		name   string
		tamper func(t *testing.T, f *fixture)
		want   func(f *fixture) []reconcile.Difference
	}{
		{"capture lost by the ledger", func(t *testing.T, f *fixture) {
			ledgerTamper(t, f,
				`DELETE FROM postings WHERE seq = (SELECT seq FROM transactions WHERE id = 'pay:pay_cap:capture')`,
				`DELETE FROM transactions WHERE id = 'pay:pay_cap:capture'`,
				`UPDATE pending_transfers SET status = 'pending' WHERE id = 'pay:pay_cap:authorize'`)
		}, func(f *fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_cap", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "captured", GatewayStatus: "captured", Gateway: "2000", Ledger: "0"},
				{PaymentID: "pay_cap", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "fee", GatewayStatus: "captured", Gateway: itoa(f.fees["pay_cap"]), Ledger: "0"},
				{PaymentID: "pay_cap", MerchantID: "mer_1", Kind: reconcile.KindStatusMismatch, Field: "hold_status", GatewayStatus: "captured", Gateway: "captured", Ledger: "pending"},
			}
		}},
		{"ledger refund posting altered", func(t *testing.T, f *fixture) {
			ledgerTamper(t, f,
				`UPDATE postings SET amount = sign(amount) * 400 WHERE seq = (SELECT seq FROM transactions WHERE id = 'pay:pay_ref:refund:re_1')`)
		}, func(*fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_ref", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "refunds[re_1]", GatewayStatus: "partially_refunded", Gateway: "500", Ledger: "400"},
			}
		}},
		{"payment missing in the ledger", func(t *testing.T, f *fixture) {
			ledgerTamper(t, f,
				`DELETE FROM pending_transfers WHERE id = 'pay:pay_auth:authorize'`,
				`DELETE FROM transactions WHERE id = 'pay:pay_auth:authorize'`)
		}, func(*fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindMissingInLedger, GatewayStatus: "authorized", Gateway: "authorized 1000 USD", Ledger: "none"},
			}
		}},
		{"gateway row altered", func(t *testing.T, f *fixture) {
			execSQL(t, f.gatewayDB, `UPDATE payments SET amount_captured = 1500 WHERE id = 'pay_cap'`)
		}, func(*fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_cap", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "captured", GatewayStatus: "captured", Gateway: "1500", Ledger: "2000"},
			}
		}},
		{"gateway row deleted", func(t *testing.T, f *fixture) {
			execSQL(t, f.gatewayDB, `DELETE FROM payments WHERE id = 'pay_can'`)
		}, func(*fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_can", MerchantID: "mer_1", Kind: reconcile.KindMissingAtGateway, Gateway: "none", Ledger: "hold voided 1500 USD, captured 0, refunded 0"},
			}
		}},
		{"capture waiting in the outbox", func(t *testing.T, f *fixture) {
			req, _ := protojson.Marshal(&ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, PaymentId: "pay_auth", MerchantId: "mer_1", Currency: "USD", Amount: 1000})
			require.NoError(t, f.gw.AddOutbox(context.Background(), "PAYMENT_EVENT_CAPTURED:pay_auth:", "pay_auth", string(req), time.Now()))
			execSQL(t, f.gatewayDB, `UPDATE payments SET status = 'captured', amount_captured = 1000 WHERE id = 'pay_auth'`)
		}, func(*fixture) []reconcile.Difference {
			ob := []string{"PAYMENT_EVENT_CAPTURED:pay_auth:"}
			return []reconcile.Difference{
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "captured", GatewayStatus: "captured", Gateway: "1000", Ledger: "0", Explained: true, Outbox: ob},
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindStatusMismatch, Field: "hold_status", GatewayStatus: "captured", Gateway: "captured", Ledger: "pending", Explained: true, Outbox: ob},
			}
		}},
		{"capture dead in the outbox", func(t *testing.T, f *fixture) {
			req, _ := protojson.Marshal(&ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, PaymentId: "pay_auth", MerchantId: "mer_1", Currency: "USD", Amount: 1000})
			require.NoError(t, f.gw.AddOutbox(context.Background(), "PAYMENT_EVENT_CAPTURED:pay_auth:", "pay_auth", string(req), time.Now()))
			require.NoError(t, f.gw.OutboxDeadLetter(context.Background(), "PAYMENT_EVENT_CAPTURED:pay_auth:", "FailedPrecondition"))
			execSQL(t, f.gatewayDB, `UPDATE payments SET status = 'captured', amount_captured = 1000 WHERE id = 'pay_auth'`)
		}, func(*fixture) []reconcile.Difference {
			dead := []string{"PAYMENT_EVENT_CAPTURED:pay_auth:"}
			return []reconcile.Difference{
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindAmountMismatch, Field: "captured", GatewayStatus: "captured", Gateway: "1000", Ledger: "0", DeadOutbox: dead},
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindStatusMismatch, Field: "hold_status", GatewayStatus: "captured", Gateway: "captured", Ledger: "pending", DeadOutbox: dead},
			}
		}},
		{"hold release still owed", func(t *testing.T, f *fixture) {
			execSQL(t, f.gatewayDB, `UPDATE payments SET status = 'declined', compensation = 'release' WHERE id = 'pay_auth'`)
		}, func(*fixture) []reconcile.Difference {
			return []reconcile.Difference{
				{PaymentID: "pay_auth", MerchantID: "mer_1", Kind: reconcile.KindStatusMismatch, Field: "hold_status", GatewayStatus: "declined", Gateway: "declined", Ledger: "pending", Explained: true, Compensation: "release"},
			}
		}},
		{"operation in flight", func(t *testing.T, f *fixture) {
			execSQL(t, f.gatewayDB, `UPDATE payments SET pending_op = 'op_1', status = 'captured', amount_captured = 1000 WHERE id = 'pay_auth'`)
		}, func(*fixture) []reconcile.Difference { return []reconcile.Difference{} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.tamper(t, f)
			rep := f.run(t)
			require.Equal(t, c.want(f), rep.Differences)
		})
	}
}

// staleLedger answers the full listing as it was before pay_auth's hold
// was taken (the gateway's rows are read after it); reads by id are fresh.
type staleLedger struct{ reconcile.Ledger }

func (l staleLedger) ListPaymentLedgers(ctx context.Context, in *ledgerv1.ListPaymentLedgersRequest, opts ...grpc.CallOption) (*ledgerv1.ListPaymentLedgersResponse, error) {
	resp, err := l.Ledger.ListPaymentLedgers(ctx, in, opts...)
	if err != nil || len(in.GetPaymentIds()) > 0 {
		return resp, err
	}
	out := &ledgerv1.ListPaymentLedgersResponse{NextPageToken: resp.GetNextPageToken()}
	for _, p := range resp.GetPayments() {
		if p.GetPaymentId() != "pay_auth" {
			out.Payments = append(out.Payments, p)
		}
	}
	return out, nil
}

// TestReconcileLiveSystem: a payment that moved on in the ledger between
// the ledger's listing and the gateway's read is compared again with a
// fresh read of its ledger side, not reported.
func TestReconcileLiveSystem(t *testing.T) {
	f := newFixture(t)
	rep, err := reconcile.Run(context.Background(), f.gw, staleLedger{f.ledger}, reconcile.Options{LedgerToken: token, PageSize: 2})
	require.NoError(t, err)
	require.Empty(t, rep.Differences)
}
