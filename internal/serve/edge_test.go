package serve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// logLevel is raised by the benchmark (request logs are not what it measures).
var logLevel = new(slog.LevelVar)

const (
	testPAN = "4242424242424242"
	goodKey = "sk_test_goodgoodgoodgoodgoodgood"
)

var errUnauthenticated = apierr.New(apierr.KindUnauthenticated, apierr.CodeUnauthenticated, "", "invalid API key")

// checkKey stands in for a service's API-key check.
func checkKey(authorization string) error {
	if authorization != "Bearer "+goodKey {
		return errUnauthenticated
	}
	return nil
}

// itemsDesc is a one-method gRPC service whose handler checks the key, as
// the real services do.
var itemsDesc = grpc.ServiceDesc{
	ServiceName: "test.Items",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			auth := ""
			if v := md.Get("authorization"); len(v) > 0 {
				auth = v[0]
			}
			if err := checkKey(auth); err != nil {
				return nil, err
			}
			return &emptypb.Empty{}, nil
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Items/Get"}, h)
	}}},
}

type testServer struct {
	*Server
	logs *testenv.SyncBuffer
	url  string
}

// startTest serves a Server with one gateway route (GET /v1/items/{id},
// annotated as generated handlers are), one WrapREST route (/v1/raw) and a
// gRPC method, all checking the API key.
func startTest(t testing.TB, mod func(*Options)) *testServer {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	o := Options{
		Name: "test", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: logLevel})),
		Register: func(g *grpc.Server) { g.RegisterService(&itemsDesc, struct{}{}) },
		RegisterREST: func(_ context.Context, mux *runtime.ServeMux) error {
			return mux.HandlePath(http.MethodGet, "/v1/items/{id}", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
				ctx, err := runtime.AnnotateIncomingContext(r.Context(), mux, r, "/test.Items/Get", runtime.WithHTTPPathPattern("/v1/items/{id}"))
				if err == nil {
					err = checkKey(r.Header.Get("Authorization"))
				}
				if err != nil {
					runtime.HTTPError(ctx, mux, &runtime.JSONPb{}, w, r, err)
					return
				}
				_, _ = w.Write([]byte(`{}`))
			})
		},
		Routes: []string{"/v1/raw"},
		WrapREST: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/raw" {
					next.ServeHTTP(w, r)
					return
				}
				if err := checkKey(r.Header.Get("Authorization")); err != nil {
					httpapi.WriteError(w, apierr.From(err))
					return
				}
				_, _ = w.Write([]byte(`{}`))
			})
		},
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(context.Background(), o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return &testServer{Server: s, logs: logs, url: "http://" + s.HTTPAddr()}
}

func (ts *testServer) do(t *testing.T, method, path string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// rawRequest sends a request line the Go client refuses to build.
func (ts *testServer) rawRequest(t *testing.T, line string) {
	t.Helper()
	c, err := net.Dial("tcp", ts.HTTPAddr())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "%s\r\nHost: x\r\nConnection: close\r\n\r\n", line)
	require.NoError(t, err)
	_, _ = http.ReadResponse(bufio.NewReader(c), nil)
}

func (ts *testServer) metrics(t *testing.T) string {
	t.Helper()
	code, _, body := ts.do(t, http.MethodGet, "/metrics")
	require.Equal(t, 200, code)
	return body
}

// series counts the series of one metric family in a /metrics body.
func series(metrics, name string) int {
	n := 0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, name+"{") {
			n++
		}
	}
	return n
}

// TestHostileRequestsStayOutOfMetricsAndLogs: a card number as the HTTP
// method, in unknown and known paths and in the query, and 300 random
// paths, add a bounded number of series labelled only by route templates,
// standard methods and "other", and no card number reaches /metrics or a
// log line.
func TestHostileRequestsStayOutOfMetricsAndLogs(t *testing.T) {
	ts := startTest(t, nil)
	auth := []string{"Authorization", "Bearer " + goodKey}
	ts.do(t, http.MethodGet, "/v1/items/abc", auth...)
	ts.do(t, http.MethodGet, "/v1/raw", auth...)
	baseline := series(ts.metrics(t), "obol_test_requests_total")

	hostile := []struct{ method, path string }{
		{testPAN, "/v1/items/abc"},
		{testPAN, "/v1/raw"},
		{testPAN, "/" + testPAN},
		{http.MethodGet, "/v1/" + testPAN},
		{http.MethodGet, "/v1/items/" + testPAN},
		{http.MethodPost, "/v1/items/" + testPAN + "/x/y/z"},
		{http.MethodGet, "/4242-4242-4242-4242/v1"},
		{http.MethodGet, "/v1/items/abc?number=" + testPAN},
		{http.MethodGet, "/v1/raw?pan=" + testPAN},
		{http.MethodGet, "/nothing?q=" + testPAN},
		{"PROPFIND", "/v1/items/abc"},
	}
	for _, h := range hostile {
		ts.do(t, h.method, h.path, auth...)
	}
	ts.rawRequest(t, "GET /v1/"+testPAN+"%20x HTTP/1.1")
	for range 300 {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		ts.do(t, http.MethodGet, "/v1/"+hex.EncodeToString(b)+"/"+hex.EncodeToString(b[:3]))
	}
	m := ts.metrics(t)
	got := series(m, "obol_test_requests_total")
	// Possible new series: {GET,POST,other} x {/v1/items/{id}, /v1/raw,
	// other} x a few status codes; far below one per request.
	assert.LessOrEqual(t, got-baseline, 12, "series added by 311 hostile requests")
	assert.Contains(t, m, `method="other other"`)
	assert.Contains(t, m, `method="GET /v1/items/{id}"`)
	assert.Contains(t, m, `method="other /v1/raw"`)

	scan := testenv.NewLeakScanner()
	scan.AddCard(testPAN, "")
	scan.Scan("metrics", []byte(m))
	scan.Scan("logs", ts.logs.Bytes())
	hits, summary := scan.Report()
	t.Log(summary)
	assert.Empty(t, hits)
	assert.Contains(t, ts.logs.String(), `"route":"other"`)
	assert.NotContains(t, ts.logs.String(), "/v1/"+testPAN[:6])
}

// TestInvalidParameterMessageHidden: grpc-gateway's own error for a path
// or query value that does not parse quotes the value; the answer keeps
// the status and says which kind of thing was wrong, without the value.
func TestInvalidParameterMessageHidden(t *testing.T) {
	mux := httpapi.NewMux(slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/x?amount="+testPAN+"9999", nil)
	runtime.HTTPError(context.Background(), mux, &runtime.JSONPb{}, rec, req, status.Errorf(codes.InvalidArgument, "parsing field \"amount\": %s9999: value out of range", testPAN))
	assert.Equal(t, 400, rec.Code)
	assert.NotContains(t, rec.Body.String(), testPAN)
	assert.Contains(t, rec.Body.String(), httpapi.CodeInvalidParameter)
	// An Obol error keeps its message and field.
	rec = httptest.NewRecorder()
	runtime.HTTPError(context.Background(), mux, &runtime.JSONPb{}, rec, req, apierr.Invalid("amount_invalid", "amount", "amount must be positive"))
	assert.Contains(t, rec.Body.String(), "amount must be positive")
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var eb httpapi.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
	return eb.Error.Code
}

// TestFailedAuthLimitREST: after the limit of failed keys from one client
// address, every attempt from it (a correct key too, so the limit is no
// oracle) is refused with 429, Retry-After and rate_limited before the key
// is checked; other addresses (told by a trusted proxy) are unaffected; the
// refusals are counted in /metrics.
func TestFailedAuthLimitREST(t *testing.T) {
	ts := startTest(t, func(o *Options) {
		o.LimitAuthREST = true
		o.Edge.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		o.Edge.AuthLimit = authlimit.Config{PerAddress: 5, PerPrefix: 8, Window: time.Minute}
	})
	attacker := []string{"X-Forwarded-For", "203.0.113.5"}
	for i := range 5 {
		path := "/v1/items/a"
		if i%2 == 1 {
			path = "/v1/raw"
		}
		code, _, _ := ts.do(t, http.MethodGet, path, append(attacker, "Authorization", fmt.Sprintf("Bearer sk_test_wrong%d", i))...)
		require.Equal(t, 401, code)
	}
	for _, h := range [][]string{{"Authorization", "Bearer sk_test_wrong9"}, {"Authorization", "Bearer " + goodKey}, {}} {
		code, hdr, body := ts.do(t, http.MethodGet, "/v1/items/a", append(attacker, h...)...)
		assert.Equal(t, 429, code)
		assert.Equal(t, "rate_limited", errorCode(t, body))
		assert.Equal(t, "60", hdr.Get("Retry-After"))
	}
	code, _, _ := ts.do(t, http.MethodGet, "/v1/items/a", "X-Forwarded-For", "198.51.100.9", "Authorization", "Bearer "+goodKey)
	assert.Equal(t, 200, code, "another client is served")
	code, _, _ = ts.do(t, http.MethodGet, "/v1/raw", "Authorization", "Bearer "+goodKey)
	assert.Equal(t, 200, code, "the proxy itself is another client")

	// Per key prefix: failures with one prefix from many addresses.
	for i := range 8 {
		code, _, _ := ts.do(t, http.MethodGet, "/v1/raw", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 100+i), "Authorization", "Bearer sk_test_targ"+fmt.Sprint(i)+"xxxxxxxx")
		require.Equal(t, 401, code)
	}
	code, _, body := ts.do(t, http.MethodGet, "/v1/raw", "X-Forwarded-For", "198.51.100.200", "Authorization", "Bearer sk_test_targ0yyyyyyyy")
	assert.Equal(t, 429, code)
	assert.Equal(t, "rate_limited", errorCode(t, body))

	// No cheap lockout: failures with the prefix of the merchant's real key
	// from many addresses make failed attempts 429s, but the real key is
	// still served, on both kinds of route.
	for i := range 8 {
		code, _, _ := ts.do(t, http.MethodGet, "/v1/raw", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 120+i), "Authorization", "Bearer "+goodKey[:len("sk_test_good")]+"bad"+fmt.Sprint(i))
		require.Equal(t, 401, code)
	}
	code, hdr, body := ts.do(t, http.MethodGet, "/v1/items/a", "X-Forwarded-For", "198.51.100.201", "Authorization", "Bearer "+goodKey[:len("sk_test_good")]+"guess")
	assert.Equal(t, 429, code, "a failed attempt with the attacked prefix")
	assert.Equal(t, "rate_limited", errorCode(t, body))
	assert.Equal(t, "60", hdr.Get("Retry-After"))
	for _, path := range []string{"/v1/items/a", "/v1/raw"} {
		code, _, _ = ts.do(t, http.MethodGet, path, "X-Forwarded-For", "198.51.100.202", "Authorization", "Bearer "+goodKey)
		assert.Equal(t, 200, code, "the merchant's own key is never locked out (%s)", path)
	}

	// Publishable keys are public: no prefix budget anyone could exhaust
	// to switch off a merchant's checkout.
	for i := range 10 {
		code, _, _ := ts.do(t, http.MethodGet, "/v1/raw", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 150+i), "Authorization", "Bearer pk_test_pubk"+fmt.Sprint(i)+"xxxxxxxx")
		require.Equal(t, 401, code, "publishable attempt %d", i)
	}

	m := ts.metrics(t)
	assert.Contains(t, m, `obol_test_auth_rate_limited_total{scope="address",transport="http"} 3`)
	// Two prefix refusals (both failed attempts); every failed attempt is
	// counted, the prefix-refused ones included: 5 + 8 + 1 + 8 + 1 + 10.
	assert.Contains(t, m, `obol_test_auth_rate_limited_total{scope="key_prefix",transport="http"} 2`)
	assert.Contains(t, m, `obol_test_auth_failures_total{transport="http"} 33`)
	// Refused before routing: the gateway route is not matched yet.
	assert.Contains(t, m, `obol_test_requests_total{code="429",method="GET other",transport="http"} 3`)
}

// countingCounter counts the reads of a shared failure counter.
type countingCounter struct {
	*authlimit.Memory
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingCounter) Get(ctx context.Context, key string) (int64, time.Duration, error) {
	c.mu.Lock()
	c.gets[key[:3]]++
	c.mu.Unlock()
	return c.Memory.Get(ctx, key)
}

func (c *countingCounter) reads(scope string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[scope]
}

// TestAuthLimitReadsPrefixOnlyOnFailure: a served request reads the shared
// counter once (its address); the key prefix's count is read only when the
// answer is a 401, which is still sent as it was (body included) while the
// prefix is under its budget.
func TestAuthLimitReadsPrefixOnlyOnFailure(t *testing.T) {
	cases := []struct {
		name       string
		key        string
		wantCode   int
		wantPrefix int
	}{
		{name: "valid key", key: goodKey, wantCode: 200, wantPrefix: 0},
		{name: "wrong key", key: "sk_test_wrongwrongwrong", wantCode: 401, wantPrefix: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := &countingCounter{Memory: authlimit.NewMemory(nil), gets: map[string]int{}}
			ts := startTest(t, func(o *Options) {
				o.LimitAuthREST = true
				o.Edge.AuthLimit = authlimit.Config{Counter: cc, PerAddress: 5, PerPrefix: 8, Window: time.Minute}
			})
			for _, path := range []string{"/v1/items/a", "/v1/raw"} {
				cc.mu.Lock()
				clear(cc.gets)
				cc.mu.Unlock()
				code, _, body := ts.do(t, http.MethodGet, path, "Authorization", "Bearer "+tc.key)
				assert.Equal(t, tc.wantCode, code, path)
				assert.Equal(t, 1, cc.reads("{a:"), "address reads (%s)", path)
				assert.Equal(t, tc.wantPrefix, cc.reads("{p:"), "prefix reads (%s)", path)
				if tc.wantCode == 401 {
					assert.Equal(t, apierr.CodeUnauthenticated, errorCode(t, body), path)
				}
			}
		})
	}
}

// TestFailedAuthLimitGRPC: the same limit on gRPC: ResourceExhausted with
// a retry-after header and the rate_limited code.
func TestFailedAuthLimitGRPC(t *testing.T) {
	ts := startTest(t, func(o *Options) {
		o.LimitAuthGRPC = true
		o.Edge.AuthLimit = authlimit.Config{PerAddress: 3, Window: time.Minute}
	})
	conn, err := grpc.NewClient(ts.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	call := func(key string) (metadata.MD, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
		var hdr metadata.MD
		err := conn.Invoke(ctx, "/test.Items/Get", &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&hdr))
		return hdr, err
	}
	_, err = call(goodKey)
	require.NoError(t, err)
	for range 3 {
		_, err := call("sk_test_wrongwrongwrong")
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	hdr, err := call(goodKey)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Equal(t, "rate_limited", apierr.From(err).Code)
	assert.Equal(t, []string{"60"}, hdr.Get("retry-after"))
	assert.Contains(t, ts.metrics(t), `obol_test_auth_rate_limited_total{scope="address",transport="grpc"} 1`)
}

func TestCheckPlaintext(t *testing.T) {
	tests := []struct {
		name          string
		addr          string
		tls, behind   bool
		wantErrSubstr string
	}{
		{"loopback v4", "127.0.0.1:8080", false, false, ""},
		{"loopback v6", "[::1]:8080", false, false, ""},
		{"localhost", "localhost:8080", false, false, ""},
		{"all interfaces", "0.0.0.0:8080", false, false, "OBOL_VAULTD_HTTP_BEHIND_TLS_PROXY"},
		{"empty host", ":8080", false, false, "OBOL_VAULTD_HTTP_TLS_CERT"},
		{"a name", "vaultd.internal:8080", false, false, "plaintext listener beyond loopback"},
		{"TLS anywhere", "0.0.0.0:8080", true, false, ""},
		{"declared proxy", "0.0.0.0:8080", false, true, ""},
		{"both TLS and proxy", "0.0.0.0:8080", true, true, "choose one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPlaintext(RESTListener("OBOL_VAULTD_"), tt.addr, tt.tls, tt.behind)
			if tt.wantErrSubstr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErrSubstr)
		})
	}
}

// TestNewRefusesPlaintextBeyondLoopback: serve.New itself (not only the
// command-line check) refuses to bind a plaintext listener on every
// interface, and a declared proxy is logged loudly.
func TestNewRefusesPlaintextBeyondLoopback(t *testing.T) {
	_, err := New(context.Background(), Options{Name: "t", GRPCAddr: "127.0.0.1:0", HTTPAddr: "0.0.0.0:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.ErrorIs(t, err, ErrPlaintext)
	require.ErrorContains(t, err, "REST listener")
	_, err = New(context.Background(), Options{Name: "t", GRPCAddr: "0.0.0.0:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.ErrorContains(t, err, "OBOL_<DAEMON>_GRPC_BEHIND_TLS_PROXY")
	var logs bytes.Buffer
	s, err := New(context.Background(), Options{Name: "t", GRPCAddr: "127.0.0.1:0", HTTPAddr: "0.0.0.0:0", Edge: Edge{HTTPBehindTLSProxy: true}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	s.lnG.Close()
	s.lnH.Close()
	assert.Contains(t, logs.String(), "PLAINTEXT REST listener")
}

func TestScrub(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain digits", "x 4242424242424242 y", "x [digits] y"},
		{"spaces", "4242 4242 4242 4242", "[digits]"},
		{"dashes", "(4242-4242-4242-4242)", "([digits])"},
		{"amex", "3782 822463 10005", "[digits]"},
		{"short numbers stay", "port 8443 took 12 ms, 1234567 bytes", "port 8443 took 12 ms, 1234567 bytes"},
		{"double space joins", "4242424  42424242", "[digits]"},
		{"dots", "4242.4242.4242.4242", "[digits]"},
		{"slashes in brackets", "protocols ([4242/4242/4242/4242])", "protocols ([[digits]])"},
		{"spaced dashes", "4242 - 4242 - 4242 - 4242", "[digits]"},
		{"quoted pieces", `"4242","4242","4242","4242"`, `"[digits]"`},
		{"letters split", "4242a4242b4242c4242", "4242a4242b4242c4242"},
		{"an address and port stay", "TLS handshake error from 192.168.1.10:54321: EOF", "TLS handshake error from 192.168.1.10:54321: EOF"},
		{"colon groups are withheld", "4242:4242:4242:4242", "[withheld: the line looks like it holds a card number]"},
		{"fullwidth is withheld", "x \uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12", "[withheld: the line looks like it holds a card number]"},
		{"percent-encoded", "GET /%34%32%34%32%34%32%34%32%34%32%34%32%34%32%34%32", "GET /%[digits]"},
		{"trailing separator kept", "123456789012- x", "[digits]- x"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Scrub(tt.in))
		})
	}
}

// FuzzScrub: no run of 12 digits survives scrubbing, and text without
// digits is unchanged.
func FuzzScrub(f *testing.F) {
	f.Add("4242 4242 4242 4242")
	f.Add("tls: client requested unsupported application protocols ([4242424242424242])")
	f.Fuzz(func(t *testing.T, s string) {
		out := Scrub(s)
		run := 0
		for i := 0; i < len(out); i++ {
			switch {
			case isDigit(out[i]):
				run++
			case (out[i] == ' ' || out[i] == '-') && i+1 < len(out) && isDigit(out[i+1]) && run > 0:
			default:
				run = 0
			}
			require.Less(t, run, 12, "Scrub(%q) = %q keeps a 12-digit run", s, out)
		}
		require.False(t, cardtext.Contains(out), "Scrub(%q) = %q still looks like a card number", s, out)
		if !strings.ContainsAny(s, "0123456789") && !cardtext.Contains(s) {
			require.Equal(t, s, out, "scrub changed text without digits")
		}
	})
}

// TestTLSHandshakeErrorScrubbed: a TLS client offering a card number as
// its application protocol makes net/http log a handshake error that
// quotes it; the log line carries no card number.
func TestTLSHandshakeErrorScrubbed(t *testing.T) {
	dir := t.TempDir()
	pki, err := devpki.Ensure(dir)
	require.NoError(t, err)
	stc, err := pki.ServerTLS()
	require.NoError(t, err)
	ts := startTest(t, func(o *Options) { o.Edge.HTTPTLS = stc })
	c, err := tls.Dial("tcp", ts.HTTPAddr(), &tls.Config{RootCAs: pki.Pool(), NextProtos: []string{testPAN}})
	if err == nil {
		c.Close()
	}
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if !strings.Contains(ts.logs.String(), "TLS handshake error") {
			return fmt.Errorf("no handshake error logged yet")
		}
		return nil
	}))
	scan := testenv.NewLeakScanner()
	scan.AddCard(testPAN, "")
	scan.Scan("logs", ts.logs.Bytes())
	hits, _ := scan.Report()
	assert.Empty(t, hits, "%s", ts.logs)
	assert.Contains(t, ts.logs.String(), "[digits]")
}

// TestIdempotencyKeyCheckedOnGRPC: every service's gRPC edge refuses a
// malformed Idempotency-Key with the REST edge's typed error, before the
// handler runs; a valid key and no key pass.
func TestIdempotencyKeyCheckedOnGRPC(t *testing.T) {
	ts := startTest(t, nil)
	conn, err := grpc.NewClient(ts.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	tests := []struct {
		name string
		keys []string
		ok   bool
	}{
		{"no key", nil, true},
		{"valid key", []string{"order-1234"}, true},
		{"too long", []string{strings.Repeat("k", 256)}, false},
		{"card number", []string{testPAN}, false},
		// Control characters and non-ASCII are refused by grpc-go's own
		// client before sending; the REST edge's TestHeadersNeverSilentlyDropped
		// covers them.
		{"leading space", []string{" order-1"}, false},
		{"sent twice", []string{"a", "b"}, false},
		{"merged duplicates", []string{"a1, a2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := metadata.Pairs("authorization", "Bearer "+goodKey)
			for _, k := range tt.keys {
				md.Append("idempotency-key", k)
			}
			err := conn.Invoke(metadata.NewOutgoingContext(context.Background(), md), "/test.Items/Get", &emptypb.Empty{}, &emptypb.Empty{})
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			e := apierr.From(err)
			assert.Equal(t, "idempotency_key_invalid", e.Code)
			assert.Equal(t, "Idempotency-Key", e.Field)
			assert.NotContains(t, err.Error(), testPAN)
		})
	}
	t.Run("binary key", func(t *testing.T) {
		md := metadata.Pairs("authorization", "Bearer "+goodKey, "idempotency-key-bin", "order-1")
		err := conn.Invoke(metadata.NewOutgoingContext(context.Background(), md), "/test.Items/Get", &emptypb.Empty{}, &emptypb.Empty{})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		assert.Equal(t, "idempotency_key_invalid", apierr.From(err).Code)
	})
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
