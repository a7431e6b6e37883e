// Package images_test is the smoke test of Obol's container images
// (deploy/images/README.md). It builds them with build.sh (what `make
// images` runs), checks what `docker image inspect` shows (non-root user,
// OCI labels, entrypoint, listen flags matching the daemons' default
// ports), that there is no shell, that the binaries are static and stamped,
// that the default command refuses to serve plaintext beyond loopback, and
// then runs every container on the host network, read-only, with every
// capability dropped, against a real Vault, PostgreSQL and Redis started
// by internal/testenv: each answers /healthz and /readyz, a card is
// tokenized through the vaultd container and paid through the gatewayd
// container, and no container's output carries the card.
//
// The test needs a Docker engine. It is skipped under -short, and when
// there is no engine, unless OBOL_TEST_REQUIRE_DOCKER is set (the test
// command sets it: there, no engine is a failure). It runs the images'
// binaries only: it never sees a PAN other than the test card it sends.
package images_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	eventstore "github.com/obolpay/obol/ledger/events/store"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/service"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// image is one image and the listen flags its default command carries.
type image struct {
	name     string
	httpFlag string // the daemon's REST (simulator: HTTPS) listen flag
	grpcFlag string // "" for the simulator
}

var images = []image{
	{"vaultd", "http-addr", "grpc-addr"},
	{"gatewayd", "http-addr", "grpc-addr"},
	{"riskd", "http-addr", "grpc-addr"},
	{"ledgerd", "http-addr", "grpc-addr"},
	{"eventsd", "http-addr", "grpc-addr"},
	{"acquirer-sim", "addr", ""},
}

// nonRoot is the user every image runs as.
const nonRoot = "65532:65532"

// defaultPort is the port of the flag's default in the binary's config
// (internal/cli/config): the images listen on it, on every interface.
func defaultPort(t *testing.T, binary, flag string) string {
	t.Helper()
	for _, b := range config.Binaries {
		if b.Name != binary {
			continue
		}
		for _, s := range cli.Settings(b.Config) {
			if s.Flag == flag {
				_, port, err := net.SplitHostPort(s.Default)
				require.NoError(t, err, "%s --%s default %q", binary, flag, s.Default)
				return port
			}
		}
	}
	require.FailNow(t, "no such flag", "%s --%s", binary, flag)
	return ""
}

// docker runs the docker client and returns its combined output.
func docker(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// requireDocker skips the test without a Docker engine, unless
// OBOL_TEST_REQUIRE_DOCKER is set, and under -short.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("image smoke test: builds images and runs containers")
	}
	_, err := exec.LookPath("docker")
	if err == nil {
		var out string
		if out, err = docker(context.Background(), nil, "version", "--format", "{{.Server.Version}}"); err != nil {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
		}
	}
	if err == nil {
		return
	}
	if os.Getenv("OBOL_TEST_REQUIRE_DOCKER") != "" {
		require.FailNow(t, "OBOL_TEST_REQUIRE_DOCKER is set but no Docker engine answers (apt-get install docker.io; dockerd --iptables=false --bridge=none)", "%v", err)
	}
	t.Skipf("no Docker engine (%v); set OBOL_TEST_REQUIRE_DOCKER=1 to make this a failure", err)
}

// built runs build.sh once per test binary, so the images are the tree's.
var built = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("./build.sh")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("deploy/images/build.sh: %w\n%s", err, out)
	}
	return string(out), nil
})

func buildImages(t *testing.T) {
	t.Helper()
	requireDocker(t)
	_, err := built()
	require.NoError(t, err)
}

// inspected is the part of `docker image inspect` the test checks.
type inspected struct {
	ID       string   `json:"Id"`
	RepoTags []string `json:"RepoTags"`
	Config   struct {
		User         string              `json:"User"`
		Labels       map[string]string   `json:"Labels"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	} `json:"Config"`
}

func inspect(t *testing.T, ref string) inspected {
	t.Helper()
	out, err := docker(context.Background(), nil, "image", "inspect", ref)
	require.NoError(t, err, out)
	var is []inspected
	require.NoError(t, json.Unmarshal([]byte(out), &is), out)
	require.Len(t, is, 1)
	return is[0]
}

// gitHead is the commit the images were built from ("" outside git).
func gitHead(t *testing.T) string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Logf("no git revision to compare with: %v", err)
		return ""
	}
	return strings.TrimSpace(string(out))
}

// TestImageMetadata: every image runs as 65532, carries the OCI labels
// (revision = the checked-out commit), is tagged with its version and :dev,
// has the binary as entrypoint and, as default arguments, listen flags on
// 0.0.0.0 at the daemon's default ports, which it exposes.
func TestImageMetadata(t *testing.T) {
	buildImages(t)
	head := gitHead(t)
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			got := inspect(t, "obolpay/"+im.name+":dev")
			c := got.Config
			assert.Equal(t, nonRoot, c.User, "user")
			l := c.Labels
			assert.Equal(t, im.name, l["org.opencontainers.image.title"])
			assert.Equal(t, "https://github.com/obolpay/obol", l["org.opencontainers.image.source"])
			for _, k := range []string{"version", "revision", "created", "licenses", "description"} {
				assert.NotEmpty(t, l["org.opencontainers.image."+k], "label org.opencontainers.image.%s", k)
			}
			_, err := time.Parse(time.RFC3339, l["org.opencontainers.image.created"])
			assert.NoError(t, err, "created label is RFC 3339")
			if head != "" {
				assert.Equal(t, head, l["org.opencontainers.image.revision"])
			}
			version := l["org.opencontainers.image.version"]
			assert.Contains(t, got.RepoTags, "obolpay/"+im.name+":"+version, "tagged with its version")
			assert.Equal(t, []string{"/" + im.name}, c.Entrypoint)

			wantCmd := []string{"--" + im.httpFlag + "=0.0.0.0:" + defaultPort(t, im.name, im.httpFlag)}
			wantPorts := []string{defaultPort(t, im.name, im.httpFlag) + "/tcp"}
			if im.grpcFlag != "" {
				wantCmd = append(wantCmd, "--"+im.grpcFlag+"=0.0.0.0:"+defaultPort(t, im.name, im.grpcFlag))
				wantPorts = append(wantPorts, defaultPort(t, im.name, im.grpcFlag)+"/tcp")
			}
			assert.Subset(t, c.Cmd, wantCmd, "default arguments")
			var ports []string
			for p := range c.ExposedPorts {
				ports = append(ports, p)
			}
			assert.ElementsMatch(t, wantPorts, ports, "exposed ports")
		})
	}
}

// TestNoShell: the images hold the binary, the CA bundle and passwd/group
// only; a shell cannot be started in them.
func TestNoShell(t *testing.T) {
	buildImages(t)
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/busybox"} {
				out, err := docker(context.Background(), nil, "run", "--rm", "--network", "none", "--entrypoint", sh, "obolpay/"+im.name+":dev", "-c", "true")
				require.Error(t, err, "%s started in %s: %s", sh, im.name, out)
				assert.Contains(t, out, "no such file or directory", sh)
			}
		})
	}
}

// TestStaticBinaries: the images' binaries are static (CGO_ENABLED=0),
// built with -trimpath, and stamped with the commit when built in a clone
// (the go command does not stamp in a git worktree, where .git is a file).
func TestStaticBinaries(t *testing.T) {
	buildImages(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(root, ".git"))
	stamped := err == nil && fi.IsDir()
	head := gitHead(t)
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			out, err := exec.Command("go", "version", "-m", filepath.Join(root, "bin", "images", im.name)).CombinedOutput()
			require.NoError(t, err, "%s", out)
			info := string(out)
			assert.Contains(t, info, "\tbuild\tCGO_ENABLED=0\n")
			assert.Contains(t, info, "\tbuild\t-trimpath=true\n")
			assert.Contains(t, info, "\tpath\tgithub.com/obolpay/obol/cmd/"+im.name+"\n")
			if stamped && head != "" {
				assert.Contains(t, info, "\tbuild\tvcs.revision="+head+"\n")
			}
		})
	}
}

// hardened are the docker run options every container of the test gets.
var hardened = []string{"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", nonRoot}

// TestDefaultCommandFailsClosed: started with nothing but their default
// arguments (listen on 0.0.0.0, no certificate), the daemons refuse to
// serve plaintext beyond loopback and exit with a message naming what to
// set; the simulator, given a tmpfs /tmp for its dev certificate, serves
// HTTPS on 0.0.0.0:8443, and without one says its root is read-only.
func TestDefaultCommandFailsClosed(t *testing.T) {
	buildImages(t)
	for _, im := range images[:5] {
		t.Run(im.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := append(append([]string{"run", "--rm", "--network", "none"}, hardened...), "obolpay/"+im.name+":dev")
			out, err := docker(ctx, nil, args...)
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s started: %s", im.name, out)
			assert.NotEqual(t, 0, ee.ExitCode())
			assert.Contains(t, out, "plaintext listener beyond loopback")
			assert.Contains(t, out, "0.0.0.0:"+defaultPort(t, im.name, im.httpFlag))
		})
	}
	t.Run("acquirer-sim", func(t *testing.T) {
		name := containerName(t, "sim-default")
		args := append(append([]string{"run", "-d", "--name", name, "--network", "none", "--tmpfs", "/tmp:rw,size=1m"}, hardened...), "obolpay/acquirer-sim:dev")
		out, err := docker(context.Background(), nil, args...)
		require.NoError(t, err, out)
		t.Cleanup(func() { _, _ = docker(context.Background(), nil, "rm", "-f", name) })
		require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
			logs, _ := docker(context.Background(), nil, "logs", name)
			if !strings.Contains(logs, "acquirer simulator listening") {
				return fmt.Errorf("not listening yet: %s", logs)
			}
			return nil
		}))
		logs, _ := docker(context.Background(), nil, "logs", name)
		assert.Contains(t, logs, ":8443", "the default port")

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args = append(append([]string{"run", "--rm", "--network", "none"}, hardened...), "obolpay/acquirer-sim:dev")
		out, err = docker(ctx, nil, args...)
		require.Error(t, err, "started without a writable /tmp: %s", out)
		assert.Contains(t, out, "read-only file system")
	})
}

// containerName is a name unique to this test run.
func containerName(t *testing.T, what string) string {
	var b [4]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "obol-images-test-" + what + "-" + hex.EncodeToString(b[:])
}

// container is one running container of the smoke stack.
type container struct {
	name string
}

// runContainer starts image on the host network with the hardened
// options and the PKI directory mounted read-only at /pki; secrets are
// passed by name (-e NAME) from the docker client's environment, so they
// are not on any command line. It is removed in t.Cleanup, after its logs
// are shown if the test failed.
func runContainer(t *testing.T, pkiDir, image string, secrets map[string]string, args ...string) *container {
	t.Helper()
	c := &container{name: containerName(t, image)}
	run := append([]string{"run", "-d", "--name", c.name, "--network", "host", "--label", "obol.test=images"}, hardened...)
	run = append(run, "-v", pkiDir+":/pki:ro")
	var env []string
	for k, v := range secrets {
		run = append(run, "-e", k)
		env = append(env, k+"="+v)
	}
	run = append(append(run, "obolpay/"+image+":dev"), args...)
	out, err := docker(context.Background(), env, run...)
	require.NoError(t, err, "docker run %s: %s", image, out)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s (%s) output:\n%s", image, c.name, c.logs())
		}
		_, _ = docker(context.Background(), nil, "rm", "-f", c.name)
	})
	return c
}

func (c *container) logs() string {
	out, _ := docker(context.Background(), nil, "logs", c.name)
	return out
}

// running returns an error when the container has exited.
func (c *container) running() error {
	out, err := docker(context.Background(), nil, "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", c.name)
	if err != nil {
		return fmt.Errorf("inspect %s: %w: %s", c.name, err, out)
	}
	if !strings.HasPrefix(out, "true") {
		return fmt.Errorf("%s exited (running, code: %s):\n%s", c.name, strings.TrimSpace(out), c.logs())
	}
	return nil
}

// waitOK polls url until it answers 200, failing at once when the
// container exits.
func (c *container) waitOK(t *testing.T, client *http.Client, url string) {
	t.Helper()
	var exited error
	err := testenv.WaitFor(60*time.Second, func() error {
		if exited = c.running(); exited != nil {
			return nil
		}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d %.300s", url, resp.StatusCode, b)
		}
		return nil
	})
	require.NoError(t, exited)
	require.NoError(t, err, "%s never answered 200:\n%s", url, c.logs())
}

func loopback(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// Service tokens of the smoke stack (tests only).
const (
	riskToken   = "images-smoke-risk-token"
	ledgerToken = "images-smoke-ledger-token"
	eventsToken = "images-smoke-events-token"
)

// TestSmoke runs the six images as containers on the host network against
// real Vault, PostgreSQL and Redis: each answers /healthz and, where it has
// dependencies, /readyz; then a card is tokenized through vaultd and
// authorized, captured and (with the same Idempotency-Key) authorized again
// through gatewayd, which reaches vaultd (mTLS), riskd, ledgerd, eventsd and
// the simulator; the payment's events reach eventsd's database and its
// entries ledgerd's; no container's output, API answer or database dump
// holds the card number or CVC.
func TestSmoke(t *testing.T) {
	buildImages(t)
	ctx := context.Background()
	hv, pg, rd := testenv.SharedVault(t), testenv.SharedPostgres(t), testenv.SharedRedis(t)

	// The PKI, readable by the containers' user only.
	pkiDir := t.TempDir()
	pki, err := devpki.Ensure(pkiDir)
	require.NoError(t, err)
	_, err = pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	ownByNonRoot(t, pkiDir)
	pem := func(f string) string { return "/pki/" + f }
	serverTLS := []string{"--tls-cert", pem(devpki.ServerCert), "--tls-key", pem(devpki.ServerKey)}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}}}
	t.Cleanup(client.CloseIdleConnections)

	// Vault: a KEK, fingerprint secret and audit anchor of this test's own.
	var sfx [4]byte
	_, err = rand.Read(sfx[:])
	require.NoError(t, err)
	suffix := hex.EncodeToString(sfx[:])
	tc := transit.Config{Address: hv.Addr, Token: hv.Token, KeyName: "images-kek-" + suffix,
		FingerprintPath: "secret/data/obol/images-fp-" + suffix, AuditAnchorPath: "secret/data/obol/images-anchor-" + suffix}
	admin, err := transit.New(tc)
	require.NoError(t, err)
	_, err = admin.Setup(ctx, transit.SetupOptions{})
	require.NoError(t, err, "vault setup")
	vaultDB := pg.NewDatabase(t, "vault", vaultpg.MigrateURL)
	gatewayDB := pg.NewDatabase(t, "gateway", paypg.MigrateURL)
	ledgerDB := pg.NewDatabase(t, "ledger", ledgerpg.MigrateURL)
	eventsDB := pg.NewDatabase(t, "events", eventstore.MigrateURL)
	sealKey := make([]byte, 32)
	_, err = rand.Read(sealKey)
	require.NoError(t, err)

	type svc struct {
		c          *container
		http, grpc string
		ready      string // the readiness URL
	}
	start := func(image string, secrets map[string]string, ready string, s svc, args ...string) svc {
		s.c = runContainer(t, pkiDir, image, secrets, args...)
		s.ready = ready
		return s
	}
	addrs := func() svc { return svc{http: loopback(t), grpc: loopback(t)} }
	with := func(s svc, args ...string) []string {
		return append([]string{"--http-addr", s.http, "--grpc-addr", s.grpc, "--log-format", "json"}, args...)
	}

	ev := addrs()
	ev = start("eventsd", map[string]string{"OBOL_EVENTS_TOKEN": eventsToken, "OBOL_EVENTS_SEAL_KEY": encodeKey(sealKey)}, "/readyz", ev,
		with(ev, append([]string{"--postgres-url", eventsDB}, serverTLS...)...)...)
	risk := addrs()
	risk = start("riskd", map[string]string{"OBOL_RISK_TOKEN": riskToken}, "/readyz", risk,
		with(risk, append([]string{"--redis-url", rd.URL, "--key-prefix", "obol:images:" + suffix + ":"}, serverTLS...)...)...)
	ledger := addrs()
	ledger = start("ledgerd", map[string]string{"OBOL_LEDGER_TOKEN": ledgerToken, "OBOL_EVENTS_TOKEN": eventsToken}, "/readyz", ledger,
		with(ledger, append([]string{"--postgres-url", ledgerDB, "--events-addr", ev.grpc, "--events-ca", pem(devpki.CACert)}, serverTLS...)...)...)
	vault := addrs()
	vault = start("vaultd", map[string]string{"OBOL_VAULT_TOKEN": hv.Token}, "/readyz", vault,
		with(vault, append([]string{"--vault-addr", hv.Addr, "--transit-key", tc.KeyName, "--fingerprint-path", tc.FingerprintPath,
			"--audit-anchor-path", tc.AuditAnchorPath, "--postgres-url", vaultDB, "--redis-url", rd.URL, "--client-ca", pem(devpki.CACert)}, serverTLS...)...)...)
	sim := svc{http: loopback(t)}
	sim = start("acquirer-sim", nil, "", sim, "--addr", sim.http, "--tls-cert", pem(devpki.ServerCert), "--tls-key", pem(devpki.ServerKey), "--log-format", "json")
	gw := addrs()
	gw = start("gatewayd", map[string]string{"OBOL_RISK_TOKEN": riskToken, "OBOL_LEDGER_TOKEN": ledgerToken, "OBOL_EVENTS_TOKEN": eventsToken}, "/readyz", gw,
		with(gw, append([]string{"--postgres-url", gatewayDB, "--redis-url", rd.URL,
			"--vault-grpc-addr", vault.grpc, "--risk-addr", risk.grpc, "--ledger-addr", ledger.grpc, "--events-addr", ev.grpc, "--tls-services",
			"--gateway-cert", pem("gatewayd.pem"), "--gateway-key", pem("gatewayd-key.pem"), "--ca", pem(devpki.CACert),
			"--simulator-url", "https://" + sim.http, "--sweep-interval", "1s"}, serverTLS...)...)...)

	all := map[string]svc{"eventsd": ev, "riskd": risk, "ledgerd": ledger, "vaultd": vault, "acquirer-sim": sim, "gatewayd": gw}
	for _, name := range []string{"eventsd", "riskd", "ledgerd", "vaultd", "acquirer-sim", "gatewayd"} {
		s := all[name]
		t.Run("up/"+name, func(t *testing.T) {
			if name == "acquirer-sim" {
				s.c.waitOK(t, client, "https://"+s.http+"/v1/authorizations")
				return
			}
			s.c.waitOK(t, client, "http://"+s.http+"/healthz")
			s.c.waitOK(t, client, "http://"+s.http+s.ready)
		})
	}
	if t.Failed() {
		return
	}

	// A merchant, as `obol merchants create` makes one, in vaultd's database.
	st, err := vaultpg.Open(ctx, vaultDB, vaultpg.Options{MaxConns: 2})
	require.NoError(t, err)
	keys, err := merchants.Create(ctx, st, "images smoke", nil, "test")
	st.Close()
	require.NoError(t, err)

	const pan, cvc = "4242424242424242", "737"
	leaks := testenv.NewLeakScanner()
	leaks.AddCard(pan, cvc)
	call := func(method, url, idem string, body any) (int, map[string]any) {
		t.Helper()
		b, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(method, url, bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+keys.SecretKey)
		req.Header.Set("Content-Type", "application/json")
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		leaks.Scan(method+" "+url+" answer", raw)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m), "%s %s: %s", method, url, raw)
		return resp.StatusCode, m
	}

	code, tok := call(http.MethodPost, "http://"+vault.http+"/v1/tokens", "images-"+suffix+"-tokenize",
		map[string]any{"card": map[string]any{"number": pan, "exp_month": 12, "exp_year": time.Now().Year() + 3, "cvc": cvc}})
	require.Equal(t, http.StatusOK, code, "tokenize through the vaultd container: %v", tok)
	token, _ := tok["token"].(string)
	require.True(t, strings.HasPrefix(token, "tok_"), "token %q", token)

	payment := map[string]any{"token": token, "amount": 1234, "currency": "USD", "capture": false}
	code, pay := call(http.MethodPost, "http://"+gw.http+"/v1/payments", "images-"+suffix+"-authorize", payment)
	require.Equal(t, http.StatusOK, code, "authorize through the gatewayd container: %v", pay)
	assert.Equal(t, "authorized", pay["status"])
	id, _ := pay["id"].(string)
	require.NotEmpty(t, id)

	code, capt := call(http.MethodPost, "http://"+gw.http+"/v1/payments/"+id+"/capture", "images-"+suffix+"-capture", map[string]any{})
	require.Equal(t, http.StatusOK, code, "capture: %v", capt)
	assert.Equal(t, "captured", capt["status"])

	code, again := call(http.MethodPost, "http://"+gw.http+"/v1/payments", "images-"+suffix+"-authorize", payment)
	require.Equal(t, http.StatusOK, code, "authorize retried with the same key: %v", again)
	assert.Equal(t, id, again["id"], "the retry answers the first payment")

	// The gateway's outbox reaches the ledgerd and eventsd containers.
	count := func(url, query string, args ...any) (n int, err error) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, query, args...).Scan(&n)
		return n, err
	}
	require.NoError(t, testenv.WaitFor(60*time.Second, func() error {
		if n, err := count(eventsDB, "SELECT count(*) FROM events WHERE object_id = $1", id); err != nil || n == 0 {
			return fmt.Errorf("eventsd holds %d events of %s (%v)", n, id, err)
		}
		if n, err := count(ledgerDB, "SELECT count(*) FROM transactions"); err != nil || n == 0 {
			return fmt.Errorf("ledgerd holds %d transactions (%v)", n, err)
		}
		return nil
	}), "the payment's events and ledger entries")

	for name, s := range all {
		leaks.Scan(name+" container output", []byte(s.c.logs()))
	}
	for name, url := range map[string]string{"vault": vaultDB, "gateway": gatewayDB, "ledger": ledgerDB, "events": eventsDB} {
		leaks.Scan(name+" database dump", pg.Dump(t, url))
	}
	hits, summary := leaks.Report()
	assert.Empty(t, hits, "the card leaked: %s", summary)
	t.Log(summary)
}

// encodeKey is the form of OBOL_EVENTS_SEAL_KEY.
func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// ownByNonRoot hands the PKI files to the containers' user (keys stay
// 0600); without root it makes them world-readable instead (a throwaway
// test PKI).
func ownByNonRoot(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, 65532, 65532); err == nil {
			return nil
		} else if !errors.Is(err, os.ErrPermission) {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	}))
}
