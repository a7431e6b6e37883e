package gatewayd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/ledgerd"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/proxy/gatewayd"
	"github.com/obolpay/obol/proxy/simulator"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/risk/riskd"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/service"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/vaultd"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func randHex(t *testing.T) string {
	var b [4]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

type stack struct {
	gw, vault  string
	sk, pk     string
	sim        *simulator.Simulator
	ledger     ledgerv1.LedgerServiceClient
	ledgerCtx  context.Context
	logs       *testenv.SyncBuffer
	merchantID string
	gatewayDB  string
	ledgerDB   string
	vaultDB    string
	pg         *testenv.Postgres
	redis      *testenv.Redis
	riskAddr   func() string
	gateway    *gatewayd.Instance
	vaultd     func() *vaultd.Instance // the running one (it restarts in outage tests)
	// deps are vaultd, riskd and ledgerd, each stoppable and restartable
	// on the same address.
	deps map[string]*dep
	// hook, when set, runs before the simulator handles a request.
	hook atomic.Pointer[func(*http.Request)]
}

// dep is a service the test can stop and start again.
type dep struct {
	start  func(ctx context.Context) (serve func(context.Context) error, closer func(), err error)
	cancel context.CancelFunc
	done   chan error
	closer func()
}

func (d *dep) up(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	serve, closer, err := d.start(ctx)
	if err != nil {
		cancel()
	}
	require.NoError(t, err)
	d.cancel, d.closer, d.done = cancel, closer, make(chan error, 1)
	go func() { d.done <- serve(ctx) }()
}

func (d *dep) down() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	<-d.done
	d.closer()
	d.cancel = nil
}

// start runs the real stack in process: vaultd on HashiCorp Vault (transit),
// PostgreSQL and Redis; riskd on Redis; ledgerd and the gateway's store on
// PostgreSQL; the acquirer simulator over HTTPS; stripe-mock; and gatewayd.
// vaultd, riskd and ledgerd can be stopped and started again.
func start(t *testing.T, opts ...func(c *gatewayd.Config, merchantID string)) *stack {
	t.Helper()
	return startOn(t, nil, opts...)
}

// startOn is start on the HashiCorp Vault hv (nil: the shared one), e.g. a
// dedicated one the test seals.
func startOn(t *testing.T, hv *testenv.Vault, opts ...func(c *gatewayd.Config, merchantID string)) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s := &stack{logs: logs, deps: map[string]*dep{}}
	// vaultd on the real stack: HashiCorp Vault (transit, its own KEK),
	// PostgreSQL and Redis; mTLS with a dev PKI.
	pg, rd := testenv.SharedPostgres(t), testenv.SharedRedis(t)
	if hv == nil {
		hv = testenv.SharedVault(t)
	}
	suffix := randHex(t)
	tc := transit.Config{Address: hv.Addr, Token: hv.Token, KeyName: "kek-gw-" + suffix, FingerprintPath: "secret/data/obol/fp-gw-" + suffix, AuditAnchorPath: "secret/data/obol/anchor-gw-" + suffix}
	admin, err := transit.New(tc)
	require.NoError(t, err)
	_, err = admin.Setup(context.Background(), transit.SetupOptions{})
	require.NoError(t, err, "vault setup")
	pki, err := devpki.Ensure(t.TempDir())
	require.NoError(t, err)
	srvTLS, err := pki.ServerTLS()
	require.NoError(t, err)
	vaultDB := pg.NewDatabase(t, "vault", vaultpg.MigrateURL)
	var v *vaultd.Instance
	vaultHTTP, vaultGRPC := "127.0.0.1:0", "127.0.0.1:0"
	s.deps["vault"] = &dep{start: func(ctx context.Context) (func(context.Context) error, func(), error) {
		var err error
		v, err = vaultd.Start(ctx, vaultd.Config{Vault: tc, PostgresURL: vaultDB, RedisURL: rd.URL, HTTPAddr: vaultHTTP, GRPCAddr: vaultGRPC, TLS: srvTLS, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		vaultHTTP, vaultGRPC = v.Server.HTTPAddr(), v.Server.GRPCAddr()
		return v.Serve, v.Close, nil
	}}
	// riskd on real Redis (its keys namespaced per test).
	riskGRPC := "127.0.0.1:0"
	s.deps["risk"] = &dep{start: func(ctx context.Context) (func(context.Context) error, func(), error) {
		r, err := riskd.Start(ctx, riskd.Config{RedisURL: rd.URL, KeyPrefix: "obol:risk:gw-" + suffix + ":", GRPCAddr: riskGRPC, HTTPAddr: "127.0.0.1:0", Token: "risk-token", Logger: log})
		if err != nil {
			return nil, nil, err
		}
		riskGRPC = r.Server.GRPCAddr()
		return r.Serve, r.Close, nil
	}}
	ledgerURL := pg.NewDatabase(t, "ledger", ledgerpg.MigrateURL)
	ledgerGRPC := "127.0.0.1:0"
	s.deps["ledger"] = &dep{start: func(ctx context.Context) (func(context.Context) error, func(), error) {
		l, err := ledgerd.Start(ctx, ledgerd.Config{PostgresURL: ledgerURL, GRPCAddr: ledgerGRPC, HTTPAddr: "127.0.0.1:0", Token: "ledger-token", Logger: log})
		if err != nil {
			return nil, nil, err
		}
		ledgerGRPC = l.Server.GRPCAddr()
		return l.Serve, l.Close, nil
	}}
	for _, name := range []string{"vault", "risk", "ledger"} {
		s.deps[name].up(t)
		t.Cleanup(s.deps[name].down)
	}
	s.sim = simulator.New(simulator.Config{Logger: log, SlowDelay: 3 * time.Second})
	simSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := s.hook.Load(); h != nil {
			(*h)(r)
		}
		s.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	keys, err := merchants.Create(context.Background(), v.Store, "Gateway test merchant", nil, "test")
	require.NoError(t, err)
	cert, err := pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	s.gatewayDB = pg.NewDatabase(t, "gateway", paypg.MigrateURL)
	s.ledgerDB, s.vaultDB, s.pg, s.redis = ledgerURL, vaultDB, pg, rd
	s.riskAddr = func() string { return riskGRPC }
	cfg := gatewayd.Config{PostgresURL: s.gatewayDB, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		VaultAddr: vaultGRPC, VaultTLS: pki.ClientTLS(cert), RiskAddr: riskGRPC, RiskToken: "risk-token",
		LedgerAddr: ledgerGRPC, LedgerToken: "ledger-token", SimulatorURL: simSrv.URL, SimulatorTLS: simSrv.Client().Transport.(*http.Transport).TLSClientConfig,
		StripeURL: testenv.StripeMock(t), StripeSecretKey: "sk_test_obol",
		AcquirerTimeout: 500 * time.Millisecond, SweepInterval: time.Hour, RoutesReload: time.Hour, Logger: log}
	for _, o := range opts {
		o(&cfg, keys.MerchantID)
	}
	g, err := gatewayd.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(g.Close)
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	conn, err := grpc.NewClient(ledgerGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	s.gw, s.vault, s.sk, s.merchantID, s.gateway = g.Server.HTTPAddr(), vaultHTTP, keys.SecretKey, keys.MerchantID, g
	s.pk = keys.PublishableKey
	s.vaultd = func() *vaultd.Instance { return v }
	s.ledger, s.ledgerCtx = ledgerv1.NewLedgerServiceClient(conn), metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer ledger-token")
	return s
}

func (s *stack) call(t *testing.T, method, url, body, idem string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.sk)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s %s: %d %s", method, url, resp.StatusCode, b)
	return resp.StatusCode, m
}

func (s *stack) tokenize(t *testing.T, pan, cvc string) string {
	t.Helper()
	st, m := s.call(t, "POST", "http://"+s.vault+"/v1/tokens", `{"card":{"number":"`+pan+`","exp_month":12,"exp_year":2031,"cvc":"`+cvc+`"}}`, "")
	require.Equal(t, 200, st, "tokenize: %v", m)
	return m["token"].(string)
}

func (s *stack) pay(t *testing.T, body, idem string) (int, map[string]any) {
	t.Helper()
	return s.call(t, "POST", "http://"+s.gw+"/v1/payments", body, idem)
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestPaymentEndToEnd: tokenize → pay → capture → refund → read, through
// real vaultd, riskd, ledgerd (PostgreSQL) and the simulator over HTTPS;
// the ledger's journal balances and nothing card-related is logged.
func TestPaymentEndToEnd(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4242424242424242", "123")
	st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"usd","capture":false,"customer_ip":"203.0.113.9"}`, "order-1")
	require.Equal(t, 200, st, "authorize: %v", p)
	require.Equal(t, "authorized", p["status"], "authorize: %v", p)
	require.Equal(t, "4242", p["card"].(map[string]any)["last4"], "authorize: %v", p)
	require.NotEmpty(t, p["risk"].(map[string]any)["action"], "authorize: %v", p)
	id := p["id"].(string)
	// A retry with the same key is the same payment; the acquirer saw one.
	st, again := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"usd","capture":false,"customer_ip":"203.0.113.9"}`, "order-1")
	require.Equal(t, 200, st, "retry: %v", again)
	require.Equal(t, id, again["id"], "retry")
	require.Equal(t, int64(1), s.sim.Requests("authorize"), "authorizations the acquirer received")
	st, m := s.pay(t, `{"token":"`+tok+`","amount":9999,"currency":"usd"}`, "order-1")
	require.Equal(t, 409, st, "same key, other body: %v", m)
	require.Equal(t, "idempotency_key_reused", errCode(m), "same key, other body")
	bal := func() *ledgerv1.MerchantBalances {
		b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "USD"})
		require.NoError(t, err)
		return b
	}
	require.EqualValues(t, 2500, bal().Held, "ledger after authorization")
	base := "http://" + s.gw + "/v1/payments/" + id
	st, m = s.call(t, "POST", base+"/capture", `{"amount":3000}`, "")
	require.Equal(t, 409, st, "capture above the authorization: %v", m)
	require.Equal(t, "capture_exceeds_authorization", errCode(m))
	st, p = s.call(t, "POST", base+"/capture", `{}`, "cap-1")
	require.Equal(t, 200, st, "capture: %v", p)
	require.Equal(t, "captured", p["status"], "capture: %v", p)
	require.Equal(t, 2500.0, p["amount_captured"], "capture: %v", p)
	require.Equal(t, 103.0, p["fee"], "capture: %v", p)
	st, m = s.call(t, "POST", base+"/capture", `{}`, "")
	require.Equal(t, 409, st, "second capture: %v", m)
	require.Equal(t, "payment_not_capturable", errCode(m), "second capture")
	st, p = s.call(t, "POST", base+"/refunds", `{"amount":500}`, "ref-1")
	require.Equal(t, 200, st, "refund: %v", p)
	require.Equal(t, "partially_refunded", p["status"], "refund: %v", p)
	require.Equal(t, 500.0, p["amount_refunded"], "refund: %v", p)
	st, m = s.call(t, "POST", base+"/refunds", `{"amount":2001}`, "")
	require.Equal(t, 409, st, "refund above the capture: %v", m)
	require.Equal(t, "refund_exceeds_captured", errCode(m), "refund above the capture")
	st, m = s.call(t, "POST", base+"/refunds", `{"amount":1,"reason":"card 4242.4242.4242.4242"}`, "")
	require.Equal(t, 400, st, "card number in a refund reason: %v", m)
	require.Equal(t, "card_number_in_text", errCode(m), "card number in a refund reason")
	require.Equal(t, "reason", m["error"].(map[string]any)["field"], "card number in a refund reason")
	b := bal()
	require.EqualValues(t, 0, b.Held, "ledger after capture and refund: %+v", b)
	require.EqualValues(t, 2500-103-500, b.Pending, "ledger after capture and refund: %+v", b)
	st, p = s.call(t, "GET", base, "", "")
	require.Equal(t, 200, st, "read: %v", p)
	require.Equal(t, "partially_refunded", p["status"], "read: %v", p)
	require.Len(t, p["refunds"].([]any), 1, "read: %v", p)
	require.NotEmpty(t, p["acquirer"].(map[string]any)["reference"], "read: %v", p)

	// A declined card: declined, the hold released.
	dec := s.tokenize(t, "4000000000000002", "123")
	st, p = s.pay(t, `{"token":"`+dec+`","amount":1000,"currency":"USD","capture":true}`, "")
	require.Equal(t, 200, st, "declined card: %v", p)
	require.Equal(t, "declined", p["status"], "declined card: %v", p)
	require.Equal(t, "card_declined", p["decline_code"], "declined card: %v", p)
	// Bad input: typed errors naming the field, and the acquirer not called.
	before := s.sim.Requests("authorize")
	ok := `{"token":"` + tok + `","amount":100,"currency":"USD"}`
	bad := []struct{ name, body, idem, code, field string }{
		{"zero amount", `{"token":"` + tok + `","amount":0,"currency":"USD"}`, "", "amount_invalid", "amount"},
		{"unknown currency", `{"token":"` + tok + `","amount":100,"currency":"ABC"}`, "", "currency_unknown", "currency"},
		{"no token", `{"amount":100,"currency":"USD"}`, "", "field_required", "token"},
		{"unknown token", `{"token":"tok_nope","amount":100,"currency":"USD"}`, "", "token_not_found", "token"},
		{"unknown acquirer", `{"token":"` + tok + `","amount":100,"currency":"USD","acquirer":"nope"}`, "", "acquirer_unknown", "acquirer"},
		{"card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"card 4242 4242 4242 4242"}`, "", "card_number_in_text", "description"},
		{"card number in metadata", `{"token":"` + tok + `","amount":100,"currency":"USD","metadata":{"note":"5555555555554444"}}`, "", "card_number_in_text", "metadata"},
		{"card number grouped with dots", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"ref 4242.4242.4242.4242"}`, "", "card_number_in_text", "description"},
		{"card number grouped with slashes in metadata", `{"token":"` + tok + `","amount":100,"currency":"USD","metadata":{"n":"5555/5555/5555/4444"}}`, "", "card_number_in_text", "metadata"},
		{"card number split across metadata values", `{"token":"` + tok + `","amount":100,"currency":"USD","metadata":{"a":"4242 4242","b":"4242 4242"}}`, "", "card_number_in_text", "metadata"},
		{"card number split between description and metadata", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"5555 5555","metadata":{"rest":"5555 4444"}}`, "", "card_number_in_text", "metadata"},
		{"card number in the device id", `{"token":"` + tok + `","amount":100,"currency":"USD","device_id":"4242-4242-4242-4242"}`, "", "card_number_in_text", "device_id"},
		{"fullwidth card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"４１１１１１１１１１１１１１１１"}`, "", "card_number_in_text", "description"},
		{"arabic-indic card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"٤١١١١١١١١١١١١١١١"}`, "", "card_number_in_text", "description"},
		{"superscript card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"⁴¹¹¹¹¹¹¹¹¹¹¹¹¹¹¹"}`, "", "card_number_in_text", "description"},
		{"percent-encoded card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31"}`, "", "card_number_in_text", "description"},
		{"html-escaped card number in the description", `{"token":"` + tok + `","amount":100,"currency":"USD","description":"&#52;111111111111111"}`, "", "card_number_in_text", "description"},
		{"fullwidth card number in the device id", `{"token":"` + tok + `","amount":100,"currency":"USD","device_id":"４１１１１１１１１１１１１１１１"}`, "", "card_number_in_text", "device_id"},
		{"card number split between a metadata key and its value", `{"token":"` + tok + `","amount":100,"currency":"USD","metadata":{"41111111":"11111111"}}`, "", "card_number_in_text", "metadata"},
		{"card number split between a metadata value and the next key", `{"token":"` + tok + `","amount":100,"currency":"USD","metadata":{"0":"41111111","11111111":"x"}}`, "", "card_number_in_text", "metadata"},
		{"non-ascii idempotency key", ok, "commande-\u00e9", "idempotency_key_invalid", "Idempotency-Key"},
		{"idempotency key too long", ok, strings.Repeat("k", 256), "idempotency_key_invalid", "Idempotency-Key"},
		{"idempotency key is a card number", ok, "4242424242424242", "idempotency_key_invalid", "Idempotency-Key"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			st, m := s.pay(t, tt.body, tt.idem)
			e, _ := m["error"].(map[string]any)
			require.True(t, st >= 400 && st < 500, "got %d %v, want a 4xx", st, m)
			require.Equal(t, tt.code, e["code"], "%v", m)
			require.Equal(t, tt.field, e["field"], "%v", m)
		})
	}
	t.Run("invalid idempotency key over gRPC", func(t *testing.T) {
		conn, err := grpc.NewClient(s.gateway.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		pc := gatewayv1.NewPaymentServiceClient(conn)
		for _, k := range []string{"", strings.Repeat("k", 256), "4242424242424242"} {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.sk, "idempotency-key", k)
			_, err := pc.CreatePayment(ctx, &gatewayv1.CreatePaymentRequest{Token: tok, Amount: 100, Currency: "USD"})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Equal(t, "idempotency_key_invalid", apierr.From(err).Code)
			assert.Equal(t, "Idempotency-Key", apierr.From(err).Field)
		}
	})
	require.Equal(t, before, s.sim.Requests("authorize"), "refused requests reached the acquirer")
	st, list := s.call(t, "GET", "http://"+s.gw+"/v1/payments?page_size=1", "", "")
	require.Equal(t, 200, st, "list: %v", list)
	require.Len(t, list["payments"].([]any), 1, "list: %v", list)
	require.NotEmpty(t, list["next_page_token"], "list: %v", list)
	v, err := s.ledger.Verify(s.ledgerCtx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err, "ledger verify")
	require.Empty(t, v.Problems, "ledger verify")
	// Idempotency-Keys are stored hashed, never as sent.
	const storedKey = "idempotency-key-stored-hashed-7f3a"
	st, p = s.pay(t, `{"token":"`+tok+`","amount":100,"currency":"USD"}`, storedKey)
	require.Equal(t, 200, st, "payment with a key: %v", p)
	assert.NotContains(t, string(s.pg.Dump(t, s.gatewayDB)), storedKey)
	assert.NotContains(t, string(s.pg.Dump(t, s.gatewayDB)), "order-1")
	leaks := testenv.NewLeakScanner()
	leaks.AddCard("4242424242424242", "123")
	leaks.AddCard("4000000000000002", "123")
	leaks.AddCard("5555555555554444", "")
	leaks.Scan("logs", s.logs.Bytes())
	leaks.Scan("gateway pg_dump", s.pg.Dump(t, s.gatewayDB))
	leaks.Scan("ledger pg_dump", s.pg.Dump(t, s.ledgerDB))
	leaks.Scan("vault pg_dump", s.pg.Dump(t, s.vaultDB))
	for _, kv := range s.redis.Dump(t) {
		leaks.Scan("redis", kv)
	}
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "leaks")
}

// TestAcquirerFailures: a timeout is failed with a reversal sent and the
// hold released; a 5xx is failed the same way: a 5xx does not prove that
// nothing was authorized (the acquirer may have charged before failing),
// so it is reversed too (a reversal of nothing is harmless). Both are
// counted at the acquirer.
func TestAcquirerFailures(t *testing.T) {
	s := start(t)
	cases := []struct {
		name, pan, code string
		reversals       int64
	}{
		{"timeout", "4000000000000036", "acquirer_timeout", 1},
		{"5xx", "4000000000000119", "acquirer_unavailable", 1},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			tok := s.tokenize(t, tt.pan, "123")
			auth, rev := s.sim.Requests("authorize"), s.sim.Requests("reversal")
			st, p := s.pay(t, `{"token":"`+tok+`","amount":1000,"currency":"USD","capture":true}`, "")
			require.Equal(t, 200, st, "%v", p)
			require.Equal(t, "failed", p["status"], "%v", p)
			require.Equal(t, tt.code, p["decline_code"], "%v", p)
			require.Equal(t, int64(1), s.sim.Requests("authorize")-auth, "acquirer authorizations")
			require.Equal(t, tt.reversals, s.sim.Requests("reversal")-rev, "reversals")
			b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "USD"})
			require.NoError(t, err)
			require.EqualValues(t, 0, b.Held, "ledger: %+v (the hold must be released)", b)
			require.EqualValues(t, 0, b.Pending, "ledger: %+v (the hold must be released)", b)
		})
	}
}

// TestStripeConnector pays through the stripe connector against the real
// stripe-mock: the payment method and the confirmed payment intent are
// accepted by Stripe's OpenAPI validation; stripe-mock's fixture intent is
// requires_payment_method, i.e. a decline, so the hold is released.
//
// The merchant's connector is stripe by configuration
// (MerchantAcquirers), so its payments name none; the default stays the
// simulator for everyone else.
func TestStripeConnector(t *testing.T) {
	s := start(t, func(c *gatewayd.Config, merchant string) { c.MerchantAcquirers = map[string]string{merchant: "stripe"} })
	tok := s.tokenize(t, "5555555555554444", "321")
	st, p := s.pay(t, `{"token":"`+tok+`","amount":1200,"currency":"EUR","capture":false}`, "stripe-1")
	acq, _ := p["acquirer"].(map[string]any)
	require.Equal(t, 200, st, "stripe payment: %v", p)
	require.Equal(t, "declined", p["status"], "stripe payment: %v", p)
	require.Equal(t, "stripe", acq["name"], "stripe payment: %v", p)
	require.True(t, strings.HasPrefix(acq["reference"].(string), "pi_"), "stripe payment: %v", p)
	st, again := s.pay(t, `{"token":"`+tok+`","amount":1200,"currency":"EUR","capture":false}`, "stripe-1")
	require.Equal(t, 200, st, "retry: %v", again)
	require.Equal(t, p["id"], again["id"], "retry")
	// The request may still name another connector.
	sim := s.tokenize(t, "4242424242424242", "123")
	st, sp := s.pay(t, `{"token":"`+sim+`","amount":1200,"currency":"EUR","acquirer":"simulator"}`, "")
	require.Equal(t, 200, st, "simulator by request: %v", sp)
	require.Equal(t, "authorized", sp["status"], "simulator by request: %v", sp)
	require.Equal(t, "simulator", sp["acquirer"].(map[string]any)["name"], "simulator by request: %v", sp)
	st, c := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+sp["id"].(string)+"/cancel", `{}`, "")
	require.Equal(t, 200, st, "cancel: %v", c)
	require.Equal(t, "canceled", c["status"], "cancel")
	b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "EUR"})
	require.NoError(t, err)
	require.EqualValues(t, 0, b.Held, "ledger: %+v", b)
	leaks := testenv.NewLeakScanner()
	leaks.AddCard("5555555555554444", "321")
	leaks.Scan("logs", s.logs.Bytes())
	hits, _ := leaks.Report()
	require.Empty(t, hits, "leaks")
}

// TestRiskBlocked: a payment riskd blocks is declined with risk_blocked,
// before any ledger hold or acquirer call.
func TestRiskBlocked(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "6011111111111117", "123")
	conn, err := grpc.NewClient(s.riskAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	rctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer risk-token")
	_, err = riskv1.NewRiskServiceClient(conn).AddListEntries(rctx, &riskv1.ListEntriesRequest{List: "block_ips", Values: []string{"198.51.100.66"}})
	require.NoError(t, err)
	calls := s.sim.Requests("authorize")
	st, p := s.pay(t, `{"token":"`+tok+`","amount":1000,"currency":"USD","customer_ip":"198.51.100.66"}`, "")
	risk, _ := p["risk"].(map[string]any)
	require.Equal(t, 200, st, "blocked payment: %v", p)
	require.Equal(t, "declined", p["status"], "blocked payment: %v", p)
	require.Equal(t, "risk_blocked", p["decline_code"], "blocked payment: %v", p)
	require.Equal(t, "block", risk["action"], "blocked payment: %v", p)
	require.Equal(t, calls, s.sim.Requests("authorize"), "the acquirer received authorizations for a blocked payment")
	require.EqualValues(t, 0, s.balances(t).Held, "the ledger holds money for a blocked payment")
	// Another IP pays.
	st, p = s.pay(t, `{"token":"`+tok+`","amount":1000,"currency":"USD","customer_ip":"198.51.100.67"}`, "")
	require.Equal(t, 200, st, "unblocked payment: %v", p)
	require.Equal(t, "authorized", p["status"], "unblocked payment: %v", p)
}
