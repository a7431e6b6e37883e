package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/store/postgres"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// TestMain doubles as ledgerd for the crash test (see clitest.Main).
func TestMain(m *testing.M) { clitest.Main(m, "ledgerd", run) }

const token = "ledger-test-token"

type env struct {
	grpcAddr, httpAddr string
	client             ledgerv1.LedgerServiceClient
	ctx                context.Context
}

func dial(t *testing.T, addr string) ledgerv1.LedgerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewLedgerServiceClient(conn)
}

func authed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func ledgerEnv(t *testing.T, url string) []string {
	return []string{"OBOL_LEDGER_POSTGRES_URL=" + url, "OBOL_LEDGER_TOKEN=" + token, "OBOL_LOG_FORMAT=text"}
}

func startInProcess(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "ledger", postgres.MigrateURL)
	gp, hp := testenv.FreePort(t), testenv.FreePort(t)
	e := &env{grpcAddr: "127.0.0.1:" + strconv.Itoa(gp), httpAddr: "127.0.0.1:" + strconv.Itoa(hp), ctx: authed()}
	for _, kv := range ledgerEnv(t, url) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("OBOL_LEDGERD_GRPC_ADDR", e.grpcAddr)
	t.Setenv("OBOL_LEDGERD_HTTP_ADDR", e.httpAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done, "ledgerd")
	})
	e.client = dial(t, e.grpcAddr)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		_, err := e.client.Verify(e.ctx, &ledgerv1.VerifyRequest{})
		return err
	}))
	return e
}

func (e *env) rest(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.httpAddr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s %s: %d %s", method, path, resp.StatusCode, b)
	return resp.StatusCode, m
}

func code(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return st.Code().String()
}

// TestLedgerdAPI drives the API over gRPC and REST against real PostgreSQL.
func TestLedgerdAPI(t *testing.T) {
	e := startInProcess(t)
	c, ctx := e.client, e.ctx
	rec := func(ev ledgerv1.PaymentEvent, pay string, amount int64, refund string) (*ledgerv1.RecordPaymentResponse, error) {
		return c.RecordPayment(ctx, &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: pay, MerchantId: "mer_api", Currency: "usd", Amount: amount, Acquirer: "simulator", AcquirerReference: "sim_" + pay, RefundId: refund})
	}
	_, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, "pay_1", 2500, "")
	require.NoError(t, err)
	r, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, "pay_1", 2500, "")
	require.NoError(t, err, "capture")
	assert.Equal(t, int64(2500*290/10000+1+30), r.Fee, "72.5 rounds half up to 73")
	r2, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, "pay_1", 2500, "")
	require.NoError(t, err, "retried capture")
	assert.True(t, r2.Transaction.Replayed, "retried capture")
	assert.Equal(t, r.Fee, r2.Fee, "retried capture")
	grpcErrs := []struct {
		name string
		err  func() error
		want codes.Code
		code string
	}{
		{"no token", func() error { _, err := c.Verify(context.Background(), &ledgerv1.VerifyRequest{}); return err }, codes.Unauthenticated, "unauthenticated"},
		{"refund above capture", func() error {
			_, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, "pay_1", 2501, "re_1")
			return err
		}, codes.FailedPrecondition, "refund_exceeds_captured"},
		{"refund without id", func() error { _, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, "pay_1", 1, ""); return err }, codes.InvalidArgument, "field_required"},
		{"capture twice with another amount", func() error {
			_, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, "pay_1", 100, "")
			return err
		}, codes.AlreadyExists, "idempotency_key_reused"},
		{"capture unknown payment", func() error {
			_, err := rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, "pay_x", 100, "")
			return err
		}, codes.NotFound, "payment_not_found"},
		{"unknown currency", func() error {
			_, err := c.RecordPayment(ctx, &ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, PaymentId: "p", MerchantId: "m", Currency: "ABC", Amount: 1})
			return err
		}, codes.InvalidArgument, "currency_unknown"},
		{"unbalanced transaction", func() error {
			_, err := c.PostTransaction(ctx, &ledgerv1.PostTransactionRequest{Id: "t1", Postings: []*ledgerv1.Posting{{AccountId: "platform:USD:bank", Amount: -2, Currency: "USD"}, {AccountId: "platform:USD:fee_revenue", Amount: 1, Currency: "USD"}}})
			return err
		}, codes.InvalidArgument, "unbalanced"},
		{"card number in an account name", func() error {
			_, err := c.CreateAccount(ctx, &ledgerv1.CreateAccountRequest{Id: "acct-card", Currency: "USD", Name: "card 4242 4242 4242 4242"})
			return err
		}, codes.InvalidArgument, "card_number_in_text"},
		{"card number grouped with dots in a description", func() error {
			_, err := c.PostTransaction(ctx, &ledgerv1.PostTransactionRequest{Id: "t-card-1", Description: "ref 4242.4242.4242.4242", Postings: []*ledgerv1.Posting{{AccountId: "platform:USD:bank", Amount: -1, Currency: "USD"}, {AccountId: "platform:USD:fee_revenue", Amount: 1, Currency: "USD"}}})
			return err
		}, codes.InvalidArgument, "card_number_in_text"},
		{"card number split across metadata values", func() error {
			_, err := c.PostTransaction(ctx, &ledgerv1.PostTransactionRequest{Id: "t-card-2", Metadata: map[string]string{"a": "5555 5555", "b": "5555 4444"}, Postings: []*ledgerv1.Posting{{AccountId: "platform:USD:bank", Amount: -1, Currency: "USD"}, {AccountId: "platform:USD:fee_revenue", Amount: 1, Currency: "USD"}}})
			return err
		}, codes.InvalidArgument, "card_number_in_text"},
		{"overdraw a protected account", func() error {
			_, err := c.PostTransaction(ctx, &ledgerv1.PostTransactionRequest{Id: "t2", Postings: []*ledgerv1.Posting{{AccountId: "merchant:mer_api:USD:available", Amount: -1, Currency: "USD"}, {AccountId: "platform:USD:bank", Amount: 1, Currency: "USD"}}})
			return err
		}, codes.FailedPrecondition, "insufficient_funds"},
	}
	for _, tt := range grpcErrs {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			assert.Equal(t, tt.want, status.Code(err), "%v", err)
			assert.Equal(t, tt.code, code(err), "%v", err)
		})
	}
	_, err = rec(ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, "pay_1", 500, "re_1")
	require.NoError(t, err)

	st, bal := e.rest(t, "GET", "/v1/ledger/merchants/mer_api/balances/USD", "")
	require.Equal(t, 200, st, "balances: %v", bal)
	assert.Equal(t, float64(2500-r.Fee-500), bal["pending"], "balances: %v", bal)
	st, ent := e.rest(t, "GET", "/v1/ledger/accounts/merchant:mer_api:USD:pending/entries?page_size=2", "")
	require.Equal(t, 200, st, "entries page 1: %v", ent)
	assert.Len(t, ent["entries"], 2, "entries page 1")
	require.NotEmpty(t, ent["next_page_token"], "entries page 1")
	st, ent2 := e.rest(t, "GET", "/v1/ledger/accounts/merchant:mer_api:USD:pending/entries?page_size=2&page_token="+ent["next_page_token"].(string), "")
	require.Equal(t, 200, st, "entries page 2: %v", ent2)
	assert.Len(t, ent2["entries"], 1, "entries page 2")
	restErrs := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown account", "GET", "/v1/ledger/accounts/nope", "", 404, "account_not_found", "account_id"},
		{"bad page token", "GET", "/v1/ledger/accounts/merchant:mer_api:USD:pending/entries?page_token=zz", "", 400, "page_token_invalid", "page_token"},
		{"bad payout date", "POST", "/v1/ledger/payouts:run", `{"date":"tomorrow"}`, 400, "date_invalid", "date"},
		{"bad payout status", "POST", "/v1/ledger/payouts/po_x", `{"status":"lost"}`, 400, "status_invalid", "status"},
		{"unknown payout", "POST", "/v1/ledger/payouts/po_x", `{"status":"paid"}`, 404, "payout_not_found", "id"},
		{"settlement with a bad amount", "POST", "/v1/ledger/settlements", `{"acquirer":"simulator","csv":"acquirer_reference,amount,fee,currency,settled_date\nsim_pay_1,2500,10,USD,2026-11-20\nsim_pay_1,abc,0,USD,2026-11-21\n"}`, 400, "settlement_file_invalid", "csv.line[3].amount"},
		{"settlement in another currency", "POST", "/v1/ledger/settlements", `{"acquirer":"simulator","currency":"EUR","csv":"acquirer_reference,amount,fee,currency,settled_date\nsim_pay_1,2500,10,USD,2026-11-20\n"}`, 400, "settlement_file_invalid", "csv.line[2].currency"},
		{"unknown JSON field", "POST", "/v1/ledger/payouts:run", `{"when":"now"}`, 400, "unknown_field", "when"},
	}
	before, _ := c.Verify(ctx, &ledgerv1.VerifyRequest{})
	for _, tt := range restErrs {
		t.Run(tt.name, func(t *testing.T) {
			st, body := e.rest(t, tt.method, tt.path, tt.body)
			errObj, _ := body["error"].(map[string]any)
			assert.Equal(t, tt.status, st, "%v", body)
			assert.Equal(t, tt.code, errObj["code"], "%v", body)
			assert.Equal(t, tt.field, errObj["field"], "%v", body)
		})
	}
	after, err := c.Verify(ctx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err)
	assert.Equal(t, before.Transactions, after.Transactions, "refused requests post nothing")
	st, srep := e.rest(t, "POST", "/v1/ledger/settlements", `{"acquirer":"simulator","csv":"acquirer_reference,amount,fee,currency,settled_date,type\nsim_pay_1,2500,83,USD,2026-11-20,capture\nsim_pay_1,-500,0,USD,2026-11-20,refund\nsim_nobody,5,0,USD,2026-11-20,capture\n"}`)
	require.Equal(t, 200, st, "settlement: %v", srep)
	assert.Equal(t, 2.0, srep["matched"], "settlement: %v", srep)
	assert.Equal(t, 1.0, srep["unmatched"], "settlement: %v", srep)
	// Payouts: T+2 has not passed, so nothing today.
	st, run := e.rest(t, "POST", "/v1/ledger/payouts:run", `{}`)
	require.Equal(t, 200, st, "payout run: %v", run)
	assert.Empty(t, run["payouts"], "payout run")
	v, err := c.Verify(ctx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err, "verify")
	assert.Empty(t, v.Problems, "verify")
	assert.Equal(t, int64(5), v.Transactions, "verify")
}

// TestCrashSafety SIGKILLs ledgerd while 32 clients post transfers (a hot
// account and spread ones), restarts it, replays every client's retries
// with the same ids, and checks that each transaction is applied exactly
// once and the journal verifies.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "ledger", postgres.MigrateURL)
	grpcAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	logs := &testenv.SyncBuffer{}
	start := func() *exec.Cmd {
		return clitest.StartSelf(t, "ledgerd", logs, append(ledgerEnv(t, url), "OBOL_LEDGERD_GRPC_ADDR="+grpcAddr, "OBOL_LEDGERD_HTTP_ADDR=127.0.0.1:0")...)
	}
	proc := start()
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	c := dial(t, grpcAddr)
	ctx := authed()
	waitUp := func() {
		require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
			_, err := c.GetAccount(ctx, &ledgerv1.GetAccountRequest{Id: "hot"})
			if status.Code(err) == codes.NotFound {
				return nil
			}
			return err
		}), "ledgerd did not come up:\n%s", logs.String())
	}
	waitUp()
	const clients, each, accounts = 32, 40, 64
	for _, id := range append([]string{"hot", "world"}, func() []string {
		var ids []string
		for i := 0; i < accounts; i++ {
			ids = append(ids, fmt.Sprintf("acct_%d", i))
		}
		return ids
	}()...) {
		_, err := c.CreateAccount(ctx, &ledgerv1.CreateAccountRequest{Id: id, Currency: "USD"})
		require.NoError(t, err)
	}
	tx := func(cl, i int) *ledgerv1.PostTransactionRequest {
		from, to := "world", fmt.Sprintf("acct_%d", (cl*each+i)%accounts)
		if i%2 == 0 {
			to = "hot"
		}
		return &ledgerv1.PostTransactionRequest{Id: fmt.Sprintf("c%d-%d", cl, i), Postings: []*ledgerv1.Posting{
			{AccountId: from, Amount: -int64(i + 1), Currency: "USD"}, {AccountId: to, Amount: int64(i + 1), Currency: "USD"}}}
	}
	var confirmed atomic.Int64
	killed := make(chan struct{})
	var killOnce sync.Once
	var wg sync.WaitGroup
	unconfirmed := make([][]int, clients)
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := c.PostTransaction(cctx, tx(cl, i))
				cancel()
				if err != nil {
					unconfirmed[cl] = append(unconfirmed[cl], i) // the client will retry it
					continue
				}
				if confirmed.Add(1) == clients*each/3 {
					killOnce.Do(func() {
						_ = proc.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
			}
		}(cl)
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		require.FailNow(t, "ledgerd was never killed")
	}
	_ = proc.Wait()
	lost := 0
	for _, u := range unconfirmed {
		lost += len(u)
	}
	t.Logf("SIGKILL after %d confirmed transfers; %d requests failed and are retried", clients*each/3, lost)
	require.NotZero(t, lost, "the kill interrupted nothing: the test proves nothing")
	proc = start()
	waitUp()
	// Every client retries what it did not see confirmed, and (as a client
	// unsure of its last answer would) replays everything else too.
	replayed := 0
	for cl := 0; cl < clients; cl++ {
		for i := 0; i < each; i++ {
			r, err := c.PostTransaction(ctx, tx(cl, i))
			require.NoError(t, err, "retry c%d-%d", cl, i)
			if r.Replayed {
				replayed++
			}
		}
	}
	t.Logf("after restart: %d of %d retries were replays of transactions already committed", replayed, clients*each)
	require.GreaterOrEqual(t, replayed, int(confirmed.Load()), "fewer replays than transfers confirmed before the kill: a confirmed transfer was lost")
	var want int64
	for cl := 0; cl < clients; cl++ {
		for i := 0; i < each; i += 2 {
			want += int64(i + 1)
		}
	}
	hot, err := c.GetAccount(ctx, &ledgerv1.GetAccountRequest{Id: "hot"})
	require.NoError(t, err)
	assert.Equal(t, want, hot.Posted, "hot account: a transfer lost or applied twice")
	v, err := c.Verify(ctx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err, "verify after crash")
	assert.Empty(t, v.Problems, "verify after crash")
	assert.EqualValues(t, clients*each, v.Transactions, "verify after crash")
	assert.NotContains(t, logs.String(), "panic", "ledgerd panicked")
}

// TestListenerMatrix: ledgerd's REST and gRPC listeners refuse plaintext
// beyond loopback unless a TLS-terminating proxy is declared; loopback,
// TLS and a declared proxy serve.
func TestListenerMatrix(t *testing.T) {
	d := clitest.Daemon{Vars: "OBOL_LEDGERD_", Run: run}
	if !testing.Short() {
		d.Args, d.Serving = []string{"--postgres-url", testenv.SharedPostgres(t).NewDatabase(t, "ledger", postgres.MigrateURL)}, true
	}
	t.Setenv("OBOL_LEDGER_TOKEN", token)
	clitest.EdgeMatrix(t, d, t.TempDir())
}
