// Package topology starts Obol's reference production layout on one
// machine, with real components only: a 3-node HashiCorp Vault Raft
// cluster, PostgreSQL with a synchronous streaming standby reached by
// multi-host URLs, a Redis Cluster (3 primaries with a replica each),
// HAProxy in front of Vault and of two replicas
// each of vaultd, gatewayd, riskd, ledgerd and eventsd, and the acquirer
// simulator, every one a separate process on loopback. It is the
// harness of the failure drills and of `go run ./deploy/topology/cmd/topology
// up`; README.md in this directory documents the layout as the
// reference for production.
//
// It never sees a PAN (it tokenizes none itself); the daemons' output is
// kept for the callers' leak scans.
package topology

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/service"
)

// RiskKeyPrefix is riskd's Redis key prefix in the topology: on a Redis
// Cluster it must carry a hash tag (riskd refuses to start without one).
const RiskKeyPrefix = "obol:risk:{risk}:"

// Replicas is how many replicas of vaultd, gatewayd, riskd, ledgerd and
// eventsd run.
const Replicas = 2

// Binaries are the commands the topology builds and runs.
var Binaries = []string{"vaultd", "gatewayd", "riskd", "ledgerd", "eventsd", "acquirer-sim", "obol"}

// Options tune a topology. The zero value is the reference layout with
// drill timings.
type Options struct {
	// Dir holds everything (binaries, certificates, data, logs/). Default:
	// a temp dir of the TB.
	Dir string
	// BinDir has the binaries already built (Binaries); default: build
	// them into Dir/bin with the go command (cheap with a warm build cache).
	BinDir string
	// Race builds the binaries with -race.
	Race bool
	// Logf reports progress and where the start-up time goes (default: the
	// TB's Logf).
	Logf func(format string, args ...any)
	// SweepInterval, ProcessingTimeout and AcquirerTimeout are gatewayd's
	// (defaults 1s, 20s, 5s: abandoned payments resolve within a drill).
	SweepInterval, ProcessingTimeout, AcquirerTimeout time.Duration
}

// Topology is a running layout. Its exported fields are what clients and
// operators' tools need; they do not change after Start.
type Topology struct {
	// Dir is the topology's directory; logs are in Dir/logs/<process>.log.
	Dir string
	// Bin is the directory of the built binaries (Binaries).
	Bin string

	// GatewayURL is gatewayd's REST API through HAProxy (http://).
	GatewayURL string
	// GatewayGRPCAddr is gatewayd's gRPC through HAProxy (TLS passthrough;
	// the certificate is signed by CACert).
	GatewayGRPCAddr string
	// VaultdURL is vaultd's REST API (tokenize, hosted fields) through
	// HAProxy (http://).
	VaultdURL string
	// VaultdGRPCAddr is vaultd's gRPC through HAProxy (mTLS passthrough).
	VaultdGRPCAddr string
	// SimulatorURL is the acquirer simulator (https://, CACert).
	SimulatorURL string
	// RiskAddr and LedgerAddr are riskd's and ledgerd's gRPC through
	// HAProxy (TLS passthrough; they require a client certificate signed by
	// CACert, e.g. GatewayCert).
	RiskAddr, LedgerAddr string
	// EventsAddr is eventsd's internal gRPC through HAProxy (TLS
	// passthrough, CACert).
	EventsAddr string

	// VaultAddr is HashiCorp Vault through HAProxy (http://; only the
	// active node passes its health check).
	VaultAddr string
	// VaultToken is the root token (for the stock vault CLI and setup).
	VaultToken string
	// VaultBin is the vault binary.
	VaultBin string
	// TransitKey is the KEK's name in transit.
	TransitKey string

	// PostgresURLs are the multi-host URLs of the databases, by key of
	// Databases ("vault", "gateway", "ledger", "events").
	PostgresURLs map[string]string
	// RedisURL is the Redis Cluster every daemon uses (redis+cluster://,
	// every node a seed).
	RedisURL string
	// RiskKeyPrefix is riskd's key prefix: hash-tagged, so that its
	// multi-key scripts keep their keys in one slot.
	RiskKeyPrefix string

	// MerchantID, SecretKey and PublishableKey are the merchant created at
	// start (obol merchants create).
	MerchantID, SecretKey, PublishableKey string

	// RiskToken, LedgerToken and EventsToken are the service tokens.
	RiskToken, LedgerToken, EventsToken string
	// CACert signs every certificate (PEM file); LedgerCA is the same file,
	// for obol's --ledger-ca / OBOL_LEDGER_CA.
	CACert, LedgerCA string
	// GatewayCert and GatewayKey are the gateway's client certificate (URI
	// SAN spiffe://obol.local/gatewayd), PEM files.
	GatewayCert, GatewayKey string

	// HTTP is a client that trusts CACert.
	HTTP *http.Client

	opts   Options
	logDir string
	logf   func(string, ...any)

	mu           sync.Mutex
	pgPrimary    *pgNode
	pgStandby    *pgNode
	pgFailedOver bool
	redis        *testenv.RedisCluster
	vault        []*vaultNode
	unsealKey    string
	haproxy      *Process
	haproxyStats string

	vaultd, gatewayd, riskd, ledgerd, eventsd []*Process
	sim                                       *Process

	procs   []*Process // every process, in start order
	closers []func()
	closed  bool
}

// Start starts the whole layout and registers Close with tb.Cleanup. It
// fails tb (after stopping what it started) when a component does not come
// up.
func Start(tb testenv.TB, opts Options) *Topology {
	tb.Helper()
	t, err := start(tb, opts)
	if err != nil {
		if t != nil {
			t.Close()
		}
		tb.Fatalf("topology: %v", err)
		return nil
	}
	return t
}

func start(tb testenv.TB, opts Options) (*Topology, error) {
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Second
	}
	if opts.ProcessingTimeout == 0 {
		opts.ProcessingTimeout = 20 * time.Second
	}
	if opts.AcquirerTimeout == 0 {
		opts.AcquirerTimeout = 5 * time.Second
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	t := &Topology{Dir: dir, opts: opts, logDir: filepath.Join(dir, "logs"), logf: opts.Logf, TransitKey: "obol-kek", RiskKeyPrefix: RiskKeyPrefix,
		RiskToken: randToken(), LedgerToken: randToken(), EventsToken: randToken()}
	tb.Cleanup(t.Close)
	if err := os.MkdirAll(t.logDir, 0o700); err != nil {
		return t, err
	}
	step := func(what string, f func() error) error {
		began := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		t.logf("topology: %s in %s", what, time.Since(began).Round(time.Millisecond))
		return nil
	}
	began := time.Now()
	if err := step("binaries built", t.build); err != nil {
		return t, err
	}
	if err := step("certificates issued", t.certs); err != nil {
		return t, err
	}
	if err := step("postgres primary and synchronous standby up", func() error { return t.startPostgres(tb) }); err != nil {
		return t, err
	}
	if err := step("redis cluster (3 primaries, a replica each) up", func() error {
		t.redis = testenv.StartRedisCluster(tb)
		t.RedisURL = t.redis.URL()
		return nil
	}); err != nil {
		return t, err
	}
	if err := step("vault raft cluster (3 nodes) initialised, unsealed and joined", func() error { return t.startVault(tb) }); err != nil {
		return t, err
	}
	backends := t.plan(tb)
	if err := step("haproxy up", func() error { return t.startHAProxy(backends) }); err != nil {
		return t, err
	}
	if err := step("haproxy follows the active vault node", func() error {
		leader, err := t.VaultLeader()
		if err != nil {
			return err
		}
		return t.WaitHAProxy(30*time.Second, map[string][]string{"vault": {t.vault[leader].Name}})
	}); err != nil {
		return t, err
	}
	if err := step("vault setup (transit, KEK, KV, fingerprint secret)", t.setupVault); err != nil {
		return t, err
	}
	for _, group := range [][]*Process{{t.sim}, t.eventsd, t.riskd, t.ledgerd, t.vaultd, t.gatewayd} {
		for _, p := range group {
			if err := step(p.Name+" ready", p.Start); err != nil {
				return t, err
			}
		}
	}
	if err := step("haproxy sees every replica", func() error {
		want := map[string][]string{}
		for _, be := range backends {
			if be.name == "vault" {
				continue
			}
			for _, s := range be.servers {
				want[be.name] = append(want[be.name], s.name)
			}
		}
		return t.WaitHAProxy(30*time.Second, want)
	}); err != nil {
		return t, err
	}
	if err := step("merchant created", t.createMerchant); err != nil {
		return t, err
	}
	t.logf("topology: up in %s (logs in %s)", time.Since(began).Round(time.Millisecond), t.logDir)
	return t, nil
}

func randToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (t *Topology) build() error {
	if t.opts.BinDir != "" {
		t.Bin = t.opts.BinDir
		for _, b := range Binaries {
			if _, err := os.Stat(filepath.Join(t.Bin, b)); err != nil {
				return fmt.Errorf("BinDir: %w", err)
			}
		}
		return nil
	}
	t.Bin = filepath.Join(t.Dir, "bin")
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the topology builds the daemons with the go command: %w", err)
	}
	args := []string{"build", "-o", t.Bin + string(os.PathSeparator)}
	if t.opts.Race {
		args = append(args, "-race")
	}
	for _, b := range Binaries {
		args = append(args, "github.com/obolpay/obol/cmd/"+b)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// moduleRoot is the module's directory (this file is deploy/topology/).
func moduleRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}

func (t *Topology) certs() error {
	pki, err := devpki.Ensure(filepath.Join(t.Dir, "pki"))
	if err != nil {
		return err
	}
	if _, err := pki.ClientCert("gatewayd", service.DefaultGatewayIdentity); err != nil {
		return err
	}
	t.CACert = filepath.Join(pki.Dir, devpki.CACert)
	t.LedgerCA = t.CACert
	t.GatewayCert, t.GatewayKey = filepath.Join(pki.Dir, "gatewayd.pem"), filepath.Join(pki.Dir, "gatewayd-key.pem")
	t.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}}}
	t.closers = append(t.closers, t.HTTP.CloseIdleConnections)
	return nil
}

// plan allocates every address, defines the daemons' processes and returns
// HAProxy's backends.
func (t *Topology) plan(tb testenv.TB) []backend {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(tb)) }
	pki := filepath.Dir(t.CACert)
	cert, key := filepath.Join(pki, devpki.ServerCert), filepath.Join(pki, devpki.ServerKey)
	serverTLS := []string{"--tls-cert", cert, "--tls-key", key}
	common := []string{"--log-format", "json"}

	vaultLB, vaultdREST, vaultdGRPC, gwREST, gwGRPC, riskGRPC, ledgerGRPC := addr(), addr(), addr(), addr(), addr(), addr(), addr()
	t.VaultAddr = "http://" + vaultLB
	t.VaultdURL, t.VaultdGRPCAddr = "http://"+vaultdREST, vaultdGRPC
	t.GatewayURL, t.GatewayGRPCAddr = "http://"+gwREST, gwGRPC
	t.RiskAddr, t.LedgerAddr = riskGRPC, ledgerGRPC

	simAddr := addr()
	t.SimulatorURL = "https://" + simAddr
	t.sim = t.daemon("acquirer-sim", simAddr, "", nil, t.SimulatorURL+"/v1/authorizations",
		"--addr", simAddr, "--tls-cert", cert, "--tls-key", key, "--log-format", "json")
	eventsGRPC := addr()
	t.EventsAddr = eventsGRPC
	sealKey := make([]byte, 32)
	_, _ = rand.Read(sealKey)
	for i := range Replicas {
		// Two replicas on one database: deliveries are leased in it, the
		// per-endpoint and per-merchant bounds count every process's
		// leases, and PublishEvents is idempotent by event id. Webhooks
		// may reach loopback endpoints with certificates of CACert (the
		// drills' receiver).
		h, g := addr(), addr()
		t.eventsd = append(t.eventsd, t.daemon(fmt.Sprintf("eventsd-%d", i), h, g,
			map[string]string{"OBOL_EVENTS_TOKEN": t.EventsToken, "OBOL_EVENTS_SEAL_KEY": base64.StdEncoding.EncodeToString(sealKey)}, "http://"+h+"/readyz",
			append(append([]string{"--postgres-url", t.PostgresURLs["events"], "--http-addr", h, "--grpc-addr", g,
				"--webhook-allow-cidrs", "127.0.0.0/8", "--webhook-ca", t.CACert}, serverTLS...), common...)...))
	}

	for i := range Replicas {
		h, g := addr(), addr()
		t.riskd = append(t.riskd, t.daemon(fmt.Sprintf("riskd-%d", i), h, g, map[string]string{"OBOL_RISK_TOKEN": t.RiskToken}, "http://"+h+"/readyz",
			append(append([]string{"--redis-url", t.RedisURL, "--key-prefix", t.RiskKeyPrefix, "--http-addr", h, "--grpc-addr", g, "--client-ca", t.CACert}, serverTLS...), common...)...))
		h, g = addr(), addr()
		t.ledgerd = append(t.ledgerd, t.daemon(fmt.Sprintf("ledgerd-%d", i), h, g, map[string]string{"OBOL_LEDGER_TOKEN": t.LedgerToken, "OBOL_EVENTS_TOKEN": t.EventsToken}, "http://"+h+"/readyz",
			append(append([]string{"--postgres-url", t.PostgresURLs["ledger"], "--http-addr", h, "--grpc-addr", g, "--client-ca", t.CACert,
				"--events-addr", t.EventsAddr, "--events-ca", t.CACert}, serverTLS...), common...)...))
		h, g = addr(), addr()
		t.vaultd = append(t.vaultd, t.daemon(fmt.Sprintf("vaultd-%d", i), h, g, map[string]string{"OBOL_VAULT_TOKEN": t.VaultToken}, "http://"+h+"/readyz",
			append(append([]string{"--vault-addr", t.VaultAddr, "--transit-key", t.TransitKey, "--postgres-url", t.PostgresURLs["vault"],
				"--redis-url", t.RedisURL, "--http-addr", h, "--grpc-addr", g, "--client-ca", t.CACert}, serverTLS...), common...)...))
		h, g = addr(), addr()
		t.gatewayd = append(t.gatewayd, t.daemon(fmt.Sprintf("gatewayd-%d", i), h, g,
			map[string]string{"OBOL_RISK_TOKEN": t.RiskToken, "OBOL_LEDGER_TOKEN": t.LedgerToken, "OBOL_EVENTS_TOKEN": t.EventsToken}, "http://"+h+"/readyz",
			append(append([]string{"--postgres-url", t.PostgresURLs["gateway"], "--redis-url", t.RedisURL, "--http-addr", h, "--grpc-addr", g,
				"--vault-grpc-addr", t.VaultdGRPCAddr, "--risk-addr", t.RiskAddr, "--ledger-addr", t.LedgerAddr, "--events-addr", t.EventsAddr,
				"--tls-services", "--gateway-cert", t.GatewayCert, "--gateway-key", t.GatewayKey, "--ca", t.CACert,
				"--simulator-url", t.SimulatorURL, "--acquirer-timeout", t.opts.AcquirerTimeout.String(),
				"--sweep-interval", t.opts.SweepInterval.String(), "--processing-timeout", t.opts.ProcessingTimeout.String()}, serverTLS...), common...)...))
	}

	vault := backend{name: "vault", listen: vaultLB, http: true, check: "/v1/sys/health"}
	for _, n := range t.vault {
		vault.servers = append(vault.servers, server{name: n.Name, addr: n.Addr})
	}
	backends := []backend{vault}
	for _, svc := range []struct {
		name       string
		procs      []*Process
		rest, grpc string
	}{
		{"vaultd", t.vaultd, vaultdREST, vaultdGRPC},
		{"gatewayd", t.gatewayd, gwREST, gwGRPC},
		{"riskd", t.riskd, "", riskGRPC},
		{"ledgerd", t.ledgerd, "", ledgerGRPC},
		{"eventsd", t.eventsd, "", eventsGRPC},
	} {
		if svc.rest != "" {
			be := backend{name: svc.name + "_rest", listen: svc.rest, http: true, check: "/readyz"}
			for _, p := range svc.procs {
				be.servers = append(be.servers, server{name: p.Name, addr: p.HTTPAddr})
			}
			backends = append(backends, be)
		}
		be := backend{name: svc.name + "_grpc", listen: svc.grpc, check: "/readyz"}
		for _, p := range svc.procs {
			_, port, _ := strings.Cut(p.HTTPAddr, ":")
			be.servers = append(be.servers, server{name: p.Name, addr: p.GRPCAddr, checkPort: port})
		}
		backends = append(backends, be)
	}
	return backends
}

// daemon defines one daemon process: flags for every setting, the
// environment only for secrets (and nothing inherited but PATH and HOME,
// so no stray OBOL_* variable applies).
func (t *Topology) daemon(name, httpAddr, grpcAddr string, secrets map[string]string, readyURL string, args ...string) *Process {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.Dir}
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	bin := name
	if i := strings.LastIndex(name, "-"); i > 0 && name != "acquirer-sim" {
		bin = name[:i]
	}
	p := &Process{Name: name, Addr: httpAddr, HTTPAddr: httpAddr, GRPCAddr: grpcAddr, path: filepath.Join(t.Bin, bin), args: args, env: env,
		dir: t.Dir, out: &testenv.SyncBuffer{}}
	if lf, err := logFile(t.logDir, name); err == nil {
		p.log = lf
		t.closers = append(t.closers, func() { lf.Close() })
	}
	p.ready = func() error { return httpOK(t.HTTP, readyURL) }
	t.procs = append(t.procs, p)
	return p
}

func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %s", url, resp.StatusCode, b)
	}
	return nil
}

func (t *Topology) createMerchant() error {
	cmd := exec.Command(filepath.Join(t.Bin, "obol"), "merchants", "create", "--name", "topology", "--postgres-url", t.PostgresURLs["vault"])
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.Dir}
	cmd.Dir = t.Dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("obol merchants create: %w\n%s", err, stderr.String())
	}
	var keys struct {
		MerchantID     string `json:"merchant_id"`
		SecretKey      string `json:"secret_key"`
		PublishableKey string `json:"publishable_key"`
	}
	if err := json.Unmarshal(out, &keys); err != nil || keys.SecretKey == "" {
		return fmt.Errorf("obol merchants create printed no keys: %v", err)
	}
	t.MerchantID, t.SecretKey, t.PublishableKey = keys.MerchantID, keys.SecretKey, keys.PublishableKey
	return nil
}

// GatewayClientTLS is a client TLS configuration with the gateway's
// certificate, trusting CACert: how the gateway (and the drills'
// reconciliation) dial riskd, ledgerd and vaultd.
func (t *Topology) GatewayClientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.GatewayCert, t.GatewayKey)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(t.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", t.CACert)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// DumpDatabase is pg_dump of a database (key of Databases) on the current
// primary, for leak scans.
func (t *Topology) DumpDatabase(key string) ([]byte, error) {
	url, ok := t.PostgresURLs[key]
	if !ok {
		return nil, fmt.Errorf("no database %q", key)
	}
	bin, err := pgBin("pg_dump")
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "--no-owner", "--dbname", url)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_dump %s: %w: %s", key, err, stderr.String())
	}
	return out, nil
}

// Services are every daemon replica: vaultd, gatewayd, riskd, ledgerd,
// eventsd (Replicas each) and the acquirer simulator.
func (t *Topology) Services() []*Process {
	var out []*Process
	for _, g := range [][]*Process{t.vaultd, t.gatewayd, t.riskd, t.ledgerd, t.eventsd, {t.sim}} {
		for _, p := range g {
			if p != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// Vaultd, Gatewayd, Riskd, Ledgerd and Eventsd are a service's replicas.
func (t *Topology) Vaultd() []*Process   { return t.vaultd }
func (t *Topology) Gatewayd() []*Process { return t.gatewayd }
func (t *Topology) Riskd() []*Process    { return t.riskd }
func (t *Topology) Ledgerd() []*Process  { return t.ledgerd }
func (t *Topology) Eventsd() []*Process  { return t.eventsd }

// Simulator is the acquirer simulator.
func (t *Topology) Simulator() *Process { return t.sim }

// HAProxy is the load balancer's process.
func (t *Topology) HAProxy() *Process { return t.haproxy }

// Processes are every process of the topology (Vault nodes, PostgreSQL,
// HAProxy, the daemons; the Redis Cluster's nodes are testenv's), in start
// order.
func (t *Topology) Processes() []*Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Process(nil), t.procs...)
}

// Redis is the Redis Cluster (testenv's: Primaries, PrimaryFor, Client,
// DumpNodes for leak scans of every node).
func (t *Topology) Redis() *testenv.RedisCluster { return t.redis }

// RedisFailover is what KillRedisPrimary did and how long each step took.
type RedisFailover struct {
	// Killed is the primary SIGKILLed; Promoted its replica, now primary of
	// the same slots.
	Killed, Promoted string
	// Promotion is from the SIGKILL until every live node said
	// cluster_state:ok with 3 primaries serving every slot.
	Promotion time.Duration
	// Rejoin is from the restart of the killed node until it was a
	// replica again (every primary with a replica connected).
	Rejoin time.Duration
}

// KillRedisPrimary SIGKILLs the Redis Cluster primary serving key's slot
// ("": riskd's, the slot of RiskKeyPrefix's hash tag, which every payment's
// risk evaluation uses), waits until its replica is promoted, then
// restarts the killed node on its port and waits until it has rejoined as
// the replica of the promoted one.
func (t *Topology) KillRedisPrimary(key string) (RedisFailover, error) {
	if key == "" {
		key = RiskKeyPrefix
	}
	var f RedisFailover
	err := tbCall(func(tb testenv.TB) {
		before := t.redis.Primaries(tb)
		f.Killed = t.redis.PrimaryFor(tb, key)
		i := -1
		for j, a := range before {
			if a == f.Killed {
				i = j
			}
		}
		began := time.Now()
		t.redis.Kill(tb, f.Killed)
		now := t.redis.WaitPromoted(tb)
		f.Promotion = time.Since(began)
		if i < 0 || len(now) != len(before) || now[i] == f.Killed {
			tb.Fatalf("primaries %v after the failover of %s (before: %v)", now, f.Killed, before)
		}
		f.Promoted = now[i]
		began = time.Now()
		t.redis.Restart(tb, f.Killed)
		f.Rejoin = time.Since(began)
	})
	if err != nil {
		return f, fmt.Errorf("topology: kill the redis primary: %w", err)
	}
	t.logf("topology: redis primary %s SIGKILLed; %s promoted in %s; %s rejoined as a replica in %s",
		f.Killed, f.Promoted, f.Promotion.Round(time.Millisecond), f.Killed, f.Rejoin.Round(time.Millisecond))
	return f, nil
}

// tbCall runs f with a TB whose Fatalf ends f with an error (testenv's
// helpers take a TB; the topology's methods return errors).
func tbCall(f func(tb testenv.TB)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if ft, ok := r.(fatal); ok {
				err = errors.New(ft.msg)
				return
			}
			panic(r)
		}
	}()
	f(panicTB{})
	return nil
}

// Outputs are every process's output (daemons, Vault, PostgreSQL, HAProxy),
// by name, for leak scans.
func (t *Topology) Outputs() map[string][]byte {
	out := map[string][]byte{}
	for _, p := range t.Processes() {
		out[p.Name] = p.out.Bytes()
	}
	return out
}

// Close stops every process (daemons first, then HAProxy, Vault and
// PostgreSQL; SIGKILL after a grace period) and releases the rest. It is
// safe to call twice and after a failed Start.
func (t *Topology) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	procs := append([]*Process(nil), t.procs...)
	t.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if strings.HasPrefix(p.Name, "postgres-") || strings.HasPrefix(p.Name, "vault-") || p.Name == "haproxy" {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
	for _, p := range procs {
		if p.Name == "haproxy" || strings.HasPrefix(p.Name, "vault-") {
			wg.Add(1)
			go func() { defer wg.Done(); p.Stop() }()
		}
	}
	wg.Wait()
	for _, p := range procs {
		if strings.HasPrefix(p.Name, "postgres-") {
			// Fast shutdown (SIGINT): connections are closed.
			wg.Add(1)
			go func() { defer wg.Done(); p.signal(syscall.SIGINT, 15*time.Second) }()
		}
	}
	wg.Wait()
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
}

// fatal is a TB failure raised by panicTB.
type fatal struct{ msg string }

// panicTB lets testenv's helpers that take a TB run outside a test: Fatalf
// panics with fatal, which the caller recovers.
type panicTB struct{}

func (panicTB) Helper()                        {}
func (panicTB) Logf(string, ...any)            {}
func (panicTB) Cleanup(func())                 {}
func (panicTB) TempDir() string                { return os.TempDir() }
func (panicTB) Fatalf(format string, a ...any) { panic(fatal{fmt.Sprintf(format, a...)}) }
