package vaultd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/revealbox"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/vaultd"
)

// leaks collects every test PAN used by this package and every source the
// stacks produced; each stack scans its own sources at cleanup.
var leaks = testenv.NewLeakScanner()

func TestMain(m *testing.M) {
	code := m.Run()
	hits, summary := leaks.Report()
	fmt.Println(summary)
	for _, h := range hits {
		fmt.Println("LEAK:", h)
	}
	testenv.Shutdown()
	if len(hits) > 0 && code == 0 {
		code = 1
	}
	os.Exit(code)
}

type stackOpts struct {
	dedicated bool // own Vault, Postgres and Redis (outage tests)
	cvcTTL    time.Duration
	// dekMaxUses makes data keys retire quickly (many DEKs to rewrap).
	dekMaxUses int64
	// noAutoJobs turns off vaultd's background rewrap/refingerprint.
	noAutoJobs bool
	// cluster: CVCs on this Redis Cluster instead of a single Redis.
	cluster *testenv.RedisCluster
	// requireNonce: vaultd refuses reveals without a request nonce.
	requireNonce bool
}

// stack is vaultd started in-process with vaultd.Start against real Vault,
// PostgreSQL and Redis, plus clients for merchants and the gateway.
type stack struct {
	t     *testing.T
	opts  stackOpts
	vault *testenv.Vault
	pg    *testenv.Postgres
	redis *testenv.Redis
	// cluster is opts.cluster (nil: s.redis holds the CVCs).
	cluster *testenv.RedisCluster
	dbURL   string
	cfg     vaultd.Config
	kek     string
	logs    *testenv.SyncBuffer
	pki     *devpki.PKI
	in      *vaultd.Instance
	cancel  context.CancelFunc
	done    chan error
	base    string
	gw      vaultv1.VaultServiceClient // gateway identity (mTLS)
	anon    vaultv1.VaultServiceClient // TLS, no client certificate
	rogue   vaultv1.VaultServiceClient // client certificate with another identity
	a, b    merchants.Keys
	// metrics holds a /metrics scrape from each run, taken before it stopped.
	metrics [][]byte
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newStack(t *testing.T, opts stackOpts) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Vault, PostgreSQL and Redis")
	}
	s := &stack{t: t, opts: opts, logs: &testenv.SyncBuffer{}}
	if opts.dedicated {
		s.vault, s.pg, s.redis = testenv.StartVault(t), testenv.StartPostgres(t), testenv.StartRedis(t)
	} else {
		s.vault, s.pg, s.redis = testenv.SharedVault(t), testenv.SharedPostgres(t), testenv.SharedRedis(t)
	}
	s.dbURL = s.pg.NewDatabase(t, "vault", postgres.MigrateURL)
	s.kek = "kek-" + randHex(4)
	tc := transit.Config{Address: s.vault.Addr, Token: s.vault.Token, KeyName: s.kek, FingerprintPath: "secret/data/obol/fp-" + randHex(4), AuditAnchorPath: "secret/data/obol/anchor-" + randHex(4)}
	admin, err := transit.New(tc)
	require.NoError(t, err)
	_, err = admin.Setup(context.Background(), transit.SetupOptions{})
	require.NoErrorf(t, err, "vault setup: %v", err)
	s.pki, err = devpki.Ensure(t.TempDir())
	require.NoError(t, err)
	srvTLS, err := s.pki.ServerTLS()
	require.NoError(t, err)
	s.cfg = vaultd.Config{
		Vault: tc, PostgresURL: s.dbURL, RedisURL: s.redis.URL,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", TLS: srvTLS,
		CVCTTL: opts.cvcTTL, KeyCheckEvery: 50 * time.Millisecond, KEKCheckEvery: 100 * time.Millisecond, DEKMaxUses: opts.dekMaxUses,
		AuditAnchorEvery: 100 * time.Millisecond, NoAutoRewrap: opts.noAutoJobs, RequireRequestNonce: opts.requireNonce,
		Logger: slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opts.cluster != nil {
		s.cluster = opts.cluster
		s.cfg.RedisURL = opts.cluster.URL()
	}
	// Registered after NewDatabase, so it runs before the database is dropped.
	t.Cleanup(s.scanForLeaks)
	s.start()
	ctx := context.Background()
	s.a, err = merchants.Create(ctx, s.in.Store, "Merchant A", []string{"https://shop-a.example"}, "test")
	require.NoError(t, err)
	s.b, err = merchants.Create(ctx, s.in.Store, "Merchant B", nil, "test")
	require.NoError(t, err)
	return s
}

// start runs vaultd (again) on the same dependencies; its addresses change.
func (s *stack) start() {
	s.t.Helper()
	in, err := vaultd.Start(context.Background(), s.cfg)
	require.NoErrorf(s.t, err, "vaultd.Start: %v", err)
	ctx, cancel := context.WithCancel(context.Background())
	s.in, s.cancel, s.done = in, cancel, make(chan error, 1)
	go func() { s.done <- in.Serve(ctx) }()
	s.base = "http://" + in.Server.HTTPAddr()
	s.gw = s.grpcClient("gatewayd", service.DefaultGatewayIdentity)
	s.anon = s.grpcClient("", "")
	s.rogue = s.grpcClient("riskd", "spiffe://obol.local/riskd")
	s.t.Cleanup(s.stop)
}

func (s *stack) stop() {
	if s.cancel == nil {
		return
	}
	m := s.rest(http.MethodGet, "/metrics", "", nil)
	if assert.Equal(s.t, 200, m.status, "/metrics") && assert.Contains(s.t, string(m.raw), "obol_vault_key_service_up", "/metrics") {
		s.metrics = append(s.metrics, m.raw)
	}
	s.cancel()
	err := <-s.done
	assert.NoErrorf(s.t, err, "Serve: %v", err)
	s.in.Close()
	s.cancel = nil
}

func (s *stack) grpcClient(name, identity string) vaultv1.VaultServiceClient {
	s.t.Helper()
	cfg := s.pki.ClientTLS(tlsCertOrNone(s.t, s.pki, name, identity))
	if name == "" {
		cfg.Certificates = nil
	}
	conn, err := grpc.NewClient(s.in.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(s.t, err)
	s.t.Cleanup(func() { conn.Close() })
	return vaultv1.NewVaultServiceClient(conn)
}

func (s *stack) scanForLeaks() {
	t := s.t
	before, _ := leaks.Report()
	leaks.Scan("logs", s.logs.Bytes())
	for _, m := range s.metrics {
		leaks.Scan("metrics", m)
	}
	leaks.Scan("postgres pg_dump", s.pg.Dump(t, s.dbURL))
	leaks.Scan("redis", nil)
	for _, kv := range s.redis.Dump(t) {
		leaks.Scan("redis", kv)
	}
	if s.cluster != nil {
		leaks.Scan("redis cluster", nil)
		for _, kv := range s.cluster.Dump(t) {
			leaks.Scan("redis cluster", kv)
		}
	}
	after, _ := leaks.Report()
	assert.Empty(t, after[len(before):], "card data leaked")
}

// cardIn registers a test card with the leak scanner and returns its JSON.
func cardIn(number string, month, year int, cvc string) map[string]any {
	leaks.AddCard(strings.NewReplacer(" ", "", "-", "").Replace(number), cvc)
	c := map[string]any{"number": number, "exp_month": month, "exp_year": year}
	if cvc != "" {
		c["cvc"] = cvc
	}
	return c
}

type restResp struct {
	status int
	body   map[string]any
	raw    []byte
	header http.Header
}

func (r restResp) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r restResp) errField() string {
	e, _ := r.body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func (r restResp) str(path ...string) string {
	var v any = r.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// rest calls the REST API; body may be a string (sent raw) or a value (JSON).
func (s *stack) rest(method, path, key string, body any, headers ...string) restResp {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	require.NoError(s.t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoErrorf(s.t, err, "%s %s: %v", method, path, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := restResp{status: resp.StatusCode, raw: raw, header: resp.Header}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (s *stack) tokenize(key string, c map[string]any, headers ...string) restResp {
	s.t.Helper()
	return s.rest(http.MethodPost, "/v1/tokens", key, map[string]any{"card": c}, headers...)
}

// detokenize calls Detokenize as the gateway and opens the sealed card.
func (s *stack) detokenize(client vaultv1.VaultServiceClient, merchantID, token string, includeCVC bool) (card.Card, *vaultv1.DetokenizeResponse, error) {
	rcpt, err := revealbox.NewRecipient()
	require.NoError(s.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &vaultv1.DetokenizeRequest{MerchantId: merchantID, Token: token, IncludeCvc: includeCVC, Purpose: "test", DestinationHost: "acquirer.test"}
	require.NoError(s.t, rcpt.Ask(req))
	resp, err := client.Detokenize(ctx, req)
	if err != nil {
		return card.Card{}, nil, err
	}
	plain, err := rcpt.OpenAnswer(req, resp)
	require.NoErrorf(s.t, err, "open sealed card: %v", err)
	c, err := card.Decode(plain)
	clear(plain)
	require.NoErrorf(s.t, err, "decode card: %v", err)
	return c, resp, nil
}

// grpcCtx attaches a merchant API key (and idempotency key) as metadata.
func grpcCtx(key string, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), append([]string{"authorization", "Bearer " + key}, kv...)...)
}

func tlsCertOrNone(t *testing.T, pki *devpki.PKI, name, identity string) tls.Certificate {
	t.Helper()
	if name == "" {
		return tls.Certificate{}
	}
	c, err := pki.ClientCert(name, identity)
	require.NoError(t, err)
	return c
}

// metadataFromOutgoing turns outgoing metadata into incoming metadata, to
// call the service in-process as the gRPC server would.
func metadataFromOutgoing(ctx context.Context) (context.Context, bool) {
	md, ok := metadata.FromOutgoingContext(ctx)
	return metadata.NewIncomingContext(context.Background(), md), ok
}
