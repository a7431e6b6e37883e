package drill

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/deploy/topology"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	testenv.Shutdown()
	os.Exit(code)
}

// binDir holds the binaries built for this test run.
var binDir string

// binaries are the commands the drills run as processes.
var binaries = []string{"vaultd", "gatewayd", "riskd", "ledgerd", "eventsd", "acquirer-sim", "obol"}

// build builds the binaries once per test binary (with -race when
// OBOL_DRILL_RACE=1). The go build cache makes repeated runs cheap.
var build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "obol-drill-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the drills build the daemons with the go command: %w", err)
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if os.Getenv("OBOL_DRILL_RACE") == "1" {
		args = append(args, "-race")
	}
	for _, b := range binaries {
		args = append(args, "github.com/obolpay/obol/cmd/"+b)
	}
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return dir, nil
})

// proc is one daemon process; it can be killed, stopped and started again
// with the same command line and environment (so on the same ports). Its
// output, over every start, is kept for the leak scan and for failures.
type proc struct {
	name  string
	path  string
	args  []string
	env   []string
	ready func() error
	out   *testenv.SyncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// start starts the process and waits until ready answers (or it exits).
func (p *proc) start() error {
	p.mu.Lock()
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Dir = filepath.Dir(p.path)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.starts++
	fmt.Fprintf(p.out, "--- drill: start %s (#%d)\n", p.name, p.starts)
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	var died bool
	err := testenv.WaitFor(45*time.Second, func() error {
		select {
		case <-exited:
			died = true
			return nil
		default:
		}
		return p.ready()
	})
	if died {
		return fmt.Errorf("%s exited at start:\n%s", p.name, tail(p.out.String(), 15))
	}
	if err != nil {
		return fmt.Errorf("%s not ready: %w\n%s", p.name, err, tail(p.out.String(), 15))
	}
	return nil
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() { p.signal(syscall.SIGKILL, 0) }

// stop SIGTERMs the process (graceful shutdown) and waits, SIGKILLing it
// after 15 s.
func (p *proc) stop() { p.signal(syscall.SIGTERM, 15*time.Second) }

func (p *proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	fmt.Fprintf(p.out, "--- drill: %s %s\n", sig, p.name)
	_ = syscall.Kill(cmd.Process.Pid, sig)
	if grace > 0 {
		select {
		case <-exited:
			return
		case <-time.After(grace):
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-exited
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Tokens shared by the daemons and the load.
const (
	riskToken   = "drill-risk-token"
	ledgerToken = "drill-ledger-token"
)

// Timeouts the gateway runs with in the drills: a short sweep so that the
// outbox and abandoned payments are resolved within the drill, and a
// processing timeout well above any request (and above the time a retry
// needs to resume a payment after a crash).
const (
	sweepInterval     = time.Second
	processingTimeout = 20 * time.Second
	acquirerTimeout   = 5 * time.Second
)

// stack is one drill's deployment: its own databases, merchant and daemons.
type stack struct {
	name     string
	pg       *testenv.Postgres
	redis    *testenv.Redis
	pki      *devpki.PKI
	gwDB     string
	ledgerDB string
	vaultDB  string

	vaultd, riskd, ledgerd, gatewayd, sim *proc

	gwURL, vaultURL, simURL string
	ledgerGRPC              string
	merchant, sk            string
	http                    *http.Client // trusts the dev CA
	obol                    string       // the obol binary
	ledgerToken             string
	ledgerTLS               func() (*tls.Config, error) // the gateway's client certificate, for the reconciliation

	run    string        // random, in every Idempotency-Key: drills can share a deployment
	settle time.Duration // how long the sweeper may take to resolve what the faults left
	before *census       // what the deployment held before the current drill
	// outputsFn, when set, gives every process's output for the leak scan
	// (else the stack's own procs).
	outputsFn func() map[string][]byte
	// storedFn, when set, gives what the deployment stores (database dumps,
	// Redis values) for the leak scan.
	storedFn func(t *testing.T) (map[string][]byte, error)

	topo        *topology.Topology // the multi-node drills' deployment (nil: single node)
	killedVault int                // the Vault node the vault-leader drill killed

	notesMu sync.Mutex
	notes   []string // what the faults observed (printed under them)
}

// note records what a fault observed, e.g. how long a takeover took.
func (s *stack) note(format string, a ...any) {
	s.notesMu.Lock()
	defer s.notesMu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, a...))
}

// takeNotes returns the notes so far and forgets them.
func (s *stack) takeNotes() []string {
	s.notesMu.Lock()
	defer s.notesMu.Unlock()
	n := s.notes
	s.notes = nil
	return n
}

func (s *stack) procs() []*proc {
	var out []*proc
	for _, p := range []*proc{s.vaultd, s.riskd, s.ledgerd, s.gatewayd, s.sim} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// outputs is every daemon's output so far, by name.
func (s *stack) outputs() map[string][]byte {
	if s.outputsFn != nil {
		return s.outputsFn()
	}
	out := map[string][]byte{}
	for _, p := range s.procs() {
		out[p.name] = p.out.Bytes()
	}
	return out
}

type stackOptions struct {
	ownPostgres bool // a dedicated cluster the drill stops
	ownRedis    bool // a dedicated redis-server the drill stops
}

func randHex(t *testing.T) string {
	var b [4]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

func addr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// baseEnv is the environment every daemon gets: nothing inherited from the
// test's environment but PATH and HOME, so no stray OBOL_* setting applies.
func baseEnv(kv map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "OBOL_LOG_FORMAT=json"}
	for k, v := range kv {
		env = append(env, k+"="+v)
	}
	return env
}

func httpReady(c *http.Client, url string) func() error {
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d %.200s", url, resp.StatusCode, b)
		}
		return nil
	}
}

// startStack builds (once) and starts the five daemons on the real
// services, and creates the drill's merchant with the obol CLI.
func startStack(t *testing.T, name string, opts stackOptions) *stack {
	t.Helper()
	dir, err := build()
	require.NoError(t, err, "build the daemons")
	hv := testenv.SharedVault(t)
	pg := testenv.SharedPostgres(t)
	if opts.ownPostgres {
		pg = testenv.StartPostgres(t)
	}
	rd := testenv.SharedRedis(t)
	if opts.ownRedis {
		rd = testenv.StartRedis(t)
	}
	suffix := randHex(t)
	s := &stack{name: name, pg: pg, redis: rd, obol: filepath.Join(dir, "obol"), ledgerToken: ledgerToken,
		run: suffix, settle: processingTimeout + 30*sweepInterval}
	s.pki, err = devpki.Ensure(t.TempDir())
	require.NoError(t, err)
	_, err = s.pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	pem := func(f string) string { return filepath.Join(s.pki.Dir, f) }
	s.ledgerTLS = func() (*tls.Config, error) {
		cert, err := s.pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
		if err != nil {
			return nil, err
		}
		return s.pki.ClientTLS(cert), nil
	}
	s.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pki.Pool(), MinVersion: tls.VersionTLS12}}}
	t.Cleanup(s.http.CloseIdleConnections)

	// Vault: a KEK, fingerprint secret and audit anchor of the drill's own.
	tc := transit.Config{Address: hv.Addr, Token: hv.Token, KeyName: "drill-kek-" + suffix,
		FingerprintPath: "secret/data/obol/drill-fp-" + suffix, AuditAnchorPath: "secret/data/obol/drill-anchor-" + suffix}
	admin, err := transit.New(tc)
	require.NoError(t, err)
	_, err = admin.Setup(context.Background(), transit.SetupOptions{})
	require.NoError(t, err, "vault setup")
	s.vaultDB = pg.NewDatabase(t, "vault", vaultpg.MigrateURL)
	s.ledgerDB = pg.NewDatabase(t, "ledger", ledgerpg.MigrateURL)
	s.gwDB = pg.NewDatabase(t, "gateway", paypg.MigrateURL)

	// with adds the daemon's own server TLS settings (OBOL_VAULTD_TLS_CERT, ...).
	with := func(daemon string, m map[string]string) map[string]string {
		p := "OBOL_" + daemon + "_"
		m[p+"TLS_CERT"], m[p+"TLS_KEY"], m[p+"CLIENT_CA"] = pem(devpki.ServerCert), pem(devpki.ServerKey), pem(devpki.CACert)
		return m
	}
	mk := func(name string, env map[string]string, readyURL string, args ...string) *proc {
		return &proc{name: name, path: filepath.Join(dir, name), args: args, env: baseEnv(env), ready: httpReady(s.http, readyURL), out: &testenv.SyncBuffer{}}
	}

	vHTTP, vGRPC := addr(t), addr(t)
	s.vaultURL = "http://" + vHTTP
	s.vaultd = mk("vaultd", with("VAULTD", map[string]string{
		"OBOL_VAULT_ADDR": hv.Addr, "OBOL_VAULT_TOKEN": hv.Token, "OBOL_TRANSIT_KEY": tc.KeyName,
		"OBOL_FINGERPRINT_PATH": tc.FingerprintPath, "OBOL_AUDIT_ANCHOR_PATH": tc.AuditAnchorPath,
		"OBOL_VAULT_POSTGRES_URL": s.vaultDB, "OBOL_CVC_REDIS_URL": rd.URL, "OBOL_VAULTD_HTTP_ADDR": vHTTP, "OBOL_VAULTD_GRPC_ADDR": vGRPC,
	}), s.vaultURL+"/readyz")
	rHTTP, rGRPC := addr(t), addr(t)
	s.riskd = mk("riskd", with("RISKD", map[string]string{
		"OBOL_RISK_REDIS_URL": rd.URL, "OBOL_RISK_TOKEN": riskToken, "OBOL_RISK_KEY_PREFIX": "obol:drill:" + suffix + ":",
		"OBOL_RISKD_HTTP_ADDR": rHTTP, "OBOL_RISKD_GRPC_ADDR": rGRPC,
	}), "http://"+rHTTP+"/healthz")
	lHTTP, lGRPC := addr(t), addr(t)
	s.ledgerGRPC = lGRPC
	s.ledgerd = mk("ledgerd", with("LEDGERD", map[string]string{
		"OBOL_LEDGER_POSTGRES_URL": s.ledgerDB, "OBOL_LEDGER_TOKEN": ledgerToken, "OBOL_LEDGERD_HTTP_ADDR": lHTTP, "OBOL_LEDGERD_GRPC_ADDR": lGRPC,
	}), "http://"+lHTTP+"/readyz")
	simAddr := addr(t)
	s.simURL = "https://" + simAddr
	s.sim = mk("acquirer-sim", nil, s.simURL+"/v1/authorizations",
		"--addr", simAddr, "--tls-cert", pem(devpki.ServerCert), "--tls-key", pem(devpki.ServerKey), "--log-format", "json")
	gHTTP, gGRPC := addr(t), addr(t)
	s.gwURL = "http://" + gHTTP
	s.gatewayd = mk("gatewayd", map[string]string{
		"OBOL_GATEWAY_POSTGRES_URL": s.gwDB, "OBOL_GATEWAYD_HTTP_ADDR": gHTTP, "OBOL_GATEWAYD_GRPC_ADDR": gGRPC,
		"OBOL_VAULT_GRPC_ADDR": vGRPC, "OBOL_RISK_ADDR": rGRPC, "OBOL_LEDGER_ADDR": lGRPC,
		"OBOL_RISK_TOKEN": riskToken, "OBOL_LEDGER_TOKEN": ledgerToken, "OBOL_TLS_SERVICES": "true",
		"OBOL_GATEWAY_CERT": pem("gatewayd.pem"), "OBOL_GATEWAY_KEY": pem("gatewayd-key.pem"), "OBOL_CA": pem(devpki.CACert),
		"OBOL_SIMULATOR_URL": s.simURL, "OBOL_ACQUIRER_TIMEOUT": acquirerTimeout.String(),
		"OBOL_SWEEP_INTERVAL": sweepInterval.String(), "OBOL_PROCESSING_TIMEOUT": processingTimeout.String(),
	}, s.gwURL+"/readyz")

	t.Cleanup(func() {
		for _, p := range s.procs() {
			p.stop()
		}
	})
	for _, p := range s.procs() {
		require.NoError(t, p.start())
	}

	// The merchant, as an operator creates one.
	out, err := exec.Command(s.obol, "merchants", "create", "--name", "drill "+name, "--postgres-url", s.vaultDB).Output()
	require.NoError(t, err, "obol merchants create: %s", out)
	var keys struct {
		MerchantID string `json:"merchant_id"`
		SecretKey  string `json:"secret_key"`
	}
	require.NoError(t, json.Unmarshal(out, &keys))
	s.merchant, s.sk = keys.MerchantID, keys.SecretKey
	return s
}

// card is a test card: a random Luhn-valid Visa number outside
// TESTCARDS.md's special numbers (so the simulator approves it), distinct
// per payment so that risk velocity stays quiet.
type card struct{ pan, cvc string }

func randomVisa(t *testing.T) string {
	for {
		d := make([]byte, 15)
		d[0] = 4
		for i := 1; i < 15; i++ {
			n, err := rand.Int(rand.Reader, big.NewInt(10))
			require.NoError(t, err)
			d[i] = byte(n.Int64())
		}
		sum := 0
		for i := 0; i < 15; i++ {
			v := int(d[14-i])
			if i%2 == 0 {
				v *= 2
				if v > 9 {
					v -= 9
				}
			}
			sum += v
		}
		s := make([]byte, 16)
		for i := range d {
			s[i] = '0' + d[i]
		}
		s[15] = byte('0' + (10-sum%10)%10)
		if !strings.HasPrefix(string(s), "4000000000") {
			return string(s)
		}
	}
}

// errTB lets testenv's Stop/Start (which take a TB) run on a fault's
// goroutine: Fatalf panics with the message, and runFault recovers it.
type errTB struct{ dir string }

type tbFailure struct{ msg string }

func (errTB) Helper()                        {}
func (errTB) Logf(string, ...any)            {}
func (errTB) Cleanup(func())                 {}
func (e errTB) TempDir() string              { return e.dir }
func (errTB) Fatalf(format string, a ...any) { panic(tbFailure{fmt.Sprintf(format, a...)}) }
func runFault(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if tf, ok := r.(tbFailure); ok {
				err = errors.New(tf.msg)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
