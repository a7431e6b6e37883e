// Command obol is Obol's CLI: `obol dev` runs the whole system in one process
// on the embedded default (no external services), and admin verbs manage
// merchants and bootstrap HashiCorp Vault.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/atomicfile"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/ledger/ledgerd"
	"github.com/obolpay/obol/proxy/gatewayd"
	"github.com/obolpay/obol/proxy/simulator"
	"github.com/obolpay/obol/risk/riskd"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/hosted"
	"github.com/obolpay/obol/vault/keys/localkms"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/vaultd"
)

const usage = `obol — card tokenization vault and gateway

Usage:
  obol dev [--data-dir ./.obol] [--http-addr 127.0.0.1:8080] [--grpc-addr 127.0.0.1:9090]
           [--demo-addr 127.0.0.1:3000] [--payout-delay DAYS] [--routes FILE] ...
      Run Obol on the embedded default: local keyring, SQLite, in-process
      CVC store, and a demo shop with the hosted card fields. NOT FOR PRODUCTION.
      Everything lives in the data dir and survives a restart. --payout-delay 0
      releases captured funds at once (default T+2), so payouts can be tried
      today. Run obol dev -h for every address.
  obol merchants create --name NAME [--origin URL]... [--live]
                        [--data-dir ./.obol | --postgres-url URL]
      Create a merchant and print its API keys (shown once).
  obol vault setup [--vault-addr URL] [--transit-mount transit] [--transit-key obol-kek]
                   [--no-policies] [--audit-file PATH]
      Configure a fresh HashiCorp Vault for vaultd, idempotently: transit,
      the KEK, the fingerprint secret, Obol's policies and the AppRole role.
      Uses the operator token in VAULT_TOKEN.
  obol keys status [--postgres-url URL] [--vault-addr URL] [--deks]
      Show the KEK's versions and how many DEKs and tokens each protects.
  obol keys rewrap [--postgres-url URL] [--vault-addr URL] [--batch 100]
      Rewrap every stored DEK to the latest KEK version (resumable).
  obol keys reencrypt [--older-than 24h] [--destroy]
      Re-seal cards under DEKs older than --older-than with a new DEK
      (resumable); with --destroy, delete the DEKs that then protect nothing.
      Vault credentials as for vaultd: OBOL_VAULT_TOKEN or AppRole.
  obol keys rotate-fingerprint   (operator token in VAULT_TOKEN)
      Write a new random version of the fingerprint secret.
  obol keys refingerprint
      Rewrite fingerprints computed under older secret versions (resumable).
  obol ledger verify [--postgres-url URL | --data-dir ./.obol]
      Recompute every balance and hold from the journal and check its hash chain
      (obol dev's ledger in --data-dir by default; exits 1 on any problem).
  obol ledger reconcile [--gateway-postgres-url URL | --data-dir ./.obol] [--json] [--strict]
      (also obol reconcile) Compare every gateway payment with the ledger:
      hold, captured, fee, refunds; report each difference (pending outbox
      entries that explain one are shown). Exits 3 on differences.
  obol ledger balances --merchant M [--currency USD]
  obol ledger import-settlement --acquirer NAME [--currency USD] FILE.csv
      Reconcile an acquirer's settlement report (columns acquirer_reference,
      amount, fee, currency, settled_date[, type]); a bad file posts nothing.
  obol payouts run [--date YYYY-MM-DD] [--merchant M]
      Release funds past each merchant's delay and create the day's payouts.
  obol payouts list [--batch YYYY-MM-DD] [--csv FILE]
  obol payouts mark PAYOUT_ID paid|failed
      The ledger commands talk to ledgerd (--ledger-addr, OBOL_LEDGER_ADDR,
      default 127.0.0.1:9092) with OBOL_LEDGER_TOKEN, or the dev token from
      --data-dir ./.obol when obol dev runs.
  obol gateway outbox list [--state dead|pending] [--postgres-url URL | --data-dir ./.obol]
  obol gateway outbox retry (OUTBOX_ID | --all)
      Ledger events waiting in the gateway's outbox; requeue the dead ones
      (refused by the ledger for good) once their cause is fixed.
  obol audit list   [--postgres-url URL | --data-dir ./.obol] [--merchant M] [--token T]
  obol audit verify [--postgres-url URL | --data-dir ./.obol] [--vault-addr URL]
      List audit events; verify the hash chain (and, with --vault-addr and an
      auditor token in VAULT_TOKEN, the anchor vaultd keeps in Vault).
`

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	err := run(ctx, os.Args[1:], os.Stdout)
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, "obol:", err)
		os.Exit(ee.ExitCode())
	}
	cli.Exit("obol", err)
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(out, usage)
		return errors.New("a command is required")
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], out)
	case "merchants":
		if len(args) < 2 || args[1] != "create" {
			return errors.New("usage: obol merchants create --name NAME")
		}
		return runMerchantsCreate(ctx, args[2:], out)
	case "vault":
		if len(args) < 2 || args[1] != "setup" {
			return errors.New("usage: obol vault setup")
		}
		return runVaultSetup(ctx, args[2:], out)
	case "keys":
		return runKeys(ctx, args[1:], out)
	case "audit":
		return runAudit(ctx, args[1:], out)
	case "ledger":
		return runLedger(ctx, args[1:], out)
	case "payouts":
		return runPayouts(ctx, args[1:], out)
	case "gateway":
		return runGateway(ctx, args[1:], out)
	case "reconcile":
		return runReconcile(ctx, args[1:], out)
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return nil
	default:
		fmt.Fprint(out, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func runDev(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("obol dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./.obol", "data directory")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "REST listen address")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	riskHTTP := fs.String("risk-http-addr", "127.0.0.1:8081", "risk engine REST listen address")
	riskGRPC := fs.String("risk-grpc-addr", "127.0.0.1:9091", "risk engine gRPC listen address")
	gwHTTP := fs.String("gateway-http-addr", "127.0.0.1:8083", "gateway (payments) REST listen address")
	gwGRPC := fs.String("gateway-grpc-addr", "127.0.0.1:9093", "gateway gRPC listen address")
	ledgerHTTP := fs.String("ledger-http-addr", "127.0.0.1:8082", "ledger REST listen address")
	ledgerGRPC := fs.String("ledger-grpc-addr", "127.0.0.1:9092", "ledger gRPC listen address")
	simAddr := fs.String("simulator-addr", "127.0.0.1:8443", "acquirer simulator HTTPS listen address")
	demoAddr := fs.String("demo-addr", "127.0.0.1:3000", "demo shop (hosted fields checkout) listen address; empty: no demo")
	logFormat := fs.String("log-format", "text", "text or json")
	payoutDelay := fs.Int("payout-delay", -1, "days from capture until funds can be paid out (T+N); 0 releases them at once, so `obol payouts run` pays out today's captures; default: the ledger settings' delay_days (2)")
	routesFile := fs.String("routes", "", "route file for /v1/forward; default: DATA-DIR/routes.yaml, regenerated on every start")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *payoutDelay < -1 || *payoutDelay > 365 {
		return fmt.Errorf("--payout-delay %d: must be 0-365 days", *payoutDelay)
	}
	// The embedded default is plaintext and not for production: it listens
	// on loopback only (the daemons serve TLS; see the README's HTTP edge).
	for name, addr := range map[string]string{"--http-addr": *httpAddr, "--grpc-addr": *grpcAddr, "--risk-http-addr": *riskHTTP, "--risk-grpc-addr": *riskGRPC,
		"--gateway-http-addr": *gwHTTP, "--gateway-grpc-addr": *gwGRPC, "--ledger-http-addr": *ledgerHTTP, "--ledger-grpc-addr": *ledgerGRPC, "--simulator-addr": *simAddr, "--demo-addr": *demoAddr} {
		if name == "--demo-addr" && addr == "" {
			continue // no demo shop
		}
		if !serve.IsLoopback(addr) {
			return fmt.Errorf("%s %s: obol dev listens on loopback only (plaintext, not for production); run vaultd, gatewayd, riskd and ledgerd with TLS instead", name, addr)
		}
	}
	// One obol dev per data dir: a second one would split the simulator's
	// and the CVC store's in-memory state from the first.
	lock, err := lockDataDir(*dataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	log := cli.Logger(*logFormat)
	stopTracing, err := cli.Tracing(ctx, "obol-dev", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	origins := []string{"http://localhost:3000", "http://127.0.0.1:3000"}
	var demo *demoShop
	if *demoAddr != "" {
		d, err := listenDemo(*demoAddr, log)
		if err != nil {
			return err
		}
		defer d.ln.Close()
		demo = d
		if !slices.Contains(origins, d.Origin()) {
			origins = append(origins, d.Origin())
		}
	}
	// The gateway's dependencies outlive it: on a signal the gateway (and
	// the demo shop in front of it) drains first (payments in flight
	// finish, their reversals and hold releases included), and only then
	// do vaultd, riskd, ledgerd and the simulator stop.
	depCtx, stopDeps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDeps()
	e, err := vaultd.StartEmbedded(depCtx, vaultd.EmbeddedConfig{DataDir: *dataDir, HTTPAddr: *httpAddr, GRPCAddr: *grpcAddr, Origins: origins, Logger: log})
	if err != nil {
		return err
	}
	defer e.Close()
	if demo != nil {
		m, err := e.Store.GetMerchant(ctx, e.Credentials.MerchantID)
		if err != nil {
			return err
		}
		if !slices.Contains(m.AllowedOrigins, demo.Origin()) {
			fmt.Fprintf(out, "  note: the demo shop's origin %s is not allowed for the dev merchant (origins are set on the first start); use --demo-addr 127.0.0.1:3000\n", demo.Origin())
		}
	}
	riskToken, err := devRiskToken(*dataDir)
	if err != nil {
		return err
	}
	risk, err := riskd.StartEmbedded(depCtx, riskd.Config{GRPCAddr: *riskGRPC, HTTPAddr: *riskHTTP, Token: riskToken, Reflection: true, Logger: log,
		StatePath: filepath.Join(*dataDir, riskStateFile)})
	if err != nil {
		return fmt.Errorf("risk engine: %w", err)
	}
	defer risk.Close()
	ledgerToken, err := devToken(*dataDir, "ledger_token", "ldg_")
	if err != nil {
		return err
	}
	lcfg := ledgerd.Config{SQLitePath: filepath.Join(*dataDir, "ledger.db"), GRPCAddr: *ledgerGRPC, HTTPAddr: *ledgerHTTP,
		Token: ledgerToken, Settings: os.Getenv("OBOL_LEDGER_SETTINGS"), Reflection: true, Logger: log}
	if *payoutDelay >= 0 {
		lcfg.PayoutDelayDays = payoutDelay
	}
	ledger, err := ledgerd.Start(depCtx, lcfg)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer ledger.Close()
	sim, err := startSimulator(*simAddr, filepath.Join(*dataDir, simulatorStateFile), e.PKI, log)
	if err != nil {
		return fmt.Errorf("acquirer simulator: %w", err)
	}
	gwCert, err := e.PKI.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	if err != nil {
		return err
	}
	routes := *routesFile
	if routes == "" {
		if routes, err = devRoutes(*dataDir, sim.Addr()); err != nil {
			return err
		}
	}
	gw, err := gatewayd.Start(ctx, gatewayd.Config{SQLitePath: filepath.Join(*dataDir, "gateway.db"), GRPCAddr: *gwGRPC, HTTPAddr: *gwHTTP, Reflection: true,
		RoutesFile: routes, UpstreamTLS: &tls.Config{RootCAs: e.PKI.Pool(), MinVersion: tls.VersionTLS12},
		VaultAddr: e.Server.GRPCAddr(), VaultTLS: e.PKI.ClientTLS(gwCert), RiskAddr: risk.Server.GRPCAddr(), RiskToken: riskToken,
		LedgerAddr: ledger.Server.GRPCAddr(), LedgerToken: ledgerToken, SimulatorURL: "https://" + sim.Addr(), SimulatorTLS: &tls.Config{RootCAs: e.PKI.Pool(), MinVersion: tls.VersionTLS12},
		// One process: the in-process failed-auth counters are the shared ones.
		Edge:            serve.Edge{AuthLimit: authlimit.Config{Counter: authlimit.NewMemory(nil)}},
		AcquirerTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer gw.Close()
	// A request for a path on another service's port is told where to go.
	httpapi.SetDirectory(devDirectory(e.Server.HTTPAddr(), gw.Server.HTTPAddr(), risk.Server.HTTPAddr(), ledger.Server.HTTPAddr()))
	if err := lock.SetAddresses(map[string]string{"REST": "http://" + e.Server.HTTPAddr(), "gRPC": e.Server.GRPCAddr(),
		"payments": "http://" + gw.Server.HTTPAddr(), "ledger gRPC": ledger.Server.GRPCAddr(), "acquirer": "https://" + sim.Addr()}); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*dataDir)
	fmt.Fprintf(out, `
  ┌──────────────────────────────────────────────────────────────────────┐
  │ %-68s │
  └──────────────────────────────────────────────────────────────────────┘
`, "obol dev — embedded default. NOT FOR PRODUCTION.")
	fmt.Fprintln(out, "  "+localkms.Banner)
	fmt.Fprintf(out, `
  REST      http://%s   (OpenAPI: /openapi.json, health: /healthz /readyz)
  gRPC      %s   (TLS, CA: %s; reflection on)
  data dir  %s
  merchant  %s
  secret key       %s
  publishable key  %s
  credentials      %s

  risk REST http://%s   (rules %s; token in the credentials file as risk_token)
  risk gRPC %s   (plaintext in dev; reflection on)
  payments  http://%s   (gateway REST: POST /v1/payments with the secret key; gRPC %s, plaintext in dev)
  ledger REST http://%s   (SQLite; token in the credentials file as ledger_token)
  ledger gRPC %s   (plaintext in dev; reflection on)
  acquirer  https://%s   (simulator; test cards: proxy/simulator/TESTCARDS.md)
  forward   http://%s/v1/forward   (routes %s, hot-reloaded)

  Try (put in a test card number from proxy/simulator/TESTCARDS.md;
  obol never prints a card number, not even a test one):
    curl -s http://%s/v1/tokens -H "Authorization: Bearer %s" \
      -d '{"card":{"number":"<test card number>","exp_month":12,"exp_year":%d,"cvc":"123"}}'

`, e.Server.HTTPAddr(), e.Server.GRPCAddr(), filepath.Join(abs, vaultd.TLSDir, "ca.pem"), abs,
		e.Credentials.MerchantID, e.Credentials.SecretKey, e.Credentials.PublishableKey,
		filepath.Join(abs, vaultd.CredentialsFile), risk.Server.HTTPAddr(), risk.Engine.Active().Version, risk.Server.GRPCAddr(), gw.Server.HTTPAddr(), gw.Server.GRPCAddr(), ledger.Server.HTTPAddr(), ledger.Server.GRPCAddr(), sim.Addr(), gw.Server.HTTPAddr(), routes,
		e.Server.HTTPAddr(), e.Credentials.SecretKey, time.Now().Year()+3)
	if e.CreatedMerchant {
		fmt.Fprintln(out, "  (a new dev merchant was created on this first start)")
	}
	if demo != nil {
		fmt.Fprintf(out, "  demo shop %s   (hosted fields checkout: open it, type a test card, pay)\n\n", demo.Origin())
	}
	gwCtx, stopGW := context.WithCancel(ctx)
	defer stopGW()
	gwDone := make(chan error, 1)
	errc := make(chan error, 5)
	left := 4
	if demo != nil {
		left++
		cfg := demoConfig{VaultURL: "http://" + e.Server.HTTPAddr(), GatewayURL: "http://" + gw.Server.HTTPAddr(),
			PublishableKey: e.Credentials.PublishableKey, SecretKey: e.Credentials.SecretKey, Integrity: hosted.New(hosted.Options{}).Integrity()[hosted.Version+"/obol.js"]}
		go func() { errc <- demo.Serve(gwCtx, cfg) }()
	}
	go func() { gwDone <- gw.Serve(gwCtx) }()
	go func() { errc <- e.Serve(depCtx) }()
	go func() { errc <- risk.Serve(depCtx) }()
	go func() { errc <- ledger.Serve(depCtx) }()
	go func() { errc <- sim.Serve(depCtx) }()
	var first error
	select {
	case first = <-gwDone:
	case first = <-errc:
		// A dependency stopped: the gateway drains before the rest stop.
		left--
		stopGW()
		if err := <-gwDone; first == nil {
			first = err
		}
	}
	gw.Close()
	stopGW()
	stopDeps()
	for i := 0; i < left; i++ {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

type simServer struct {
	ln  net.Listener
	srv *http.Server
}

func (s *simServer) Addr() string { return s.ln.Addr().String() }

func (s *simServer) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.ServeTLS(s.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Files obol dev keeps in the data dir besides the vault's.
const (
	riskStateFile      = "risk-state.json" // rule-set versions and lists
	simulatorStateFile = "simulator.json"  // the simulator's authorizations and reports
	routesFileName     = "routes.yaml"
)

// devDirectory says which dev address serves which REST paths.
func devDirectory(vault, gateway, risk, ledger string) []httpapi.Place {
	return []httpapi.Place{
		{Prefix: "/v1/tokens", What: "tokens are served by the vault", URL: "http://" + vault},
		{Prefix: "/v1/payments", What: "payments are served by the gateway", URL: "http://" + gateway},
		{Prefix: "/v1/forward", What: "forwarding is served by the gateway", URL: "http://" + gateway},
		{Prefix: "/v1/disputes", What: "disputes are served by the gateway", URL: "http://" + gateway},
		{Prefix: "/v1/risk", What: "the risk engine is served by riskd", URL: "http://" + risk},
		{Prefix: "/v1/ledger", What: "the ledger is served by ledgerd", URL: "http://" + ledger},
	}
}

// devRoutes writes the dev route file on every start: one route that lets
// /v1/forward reveal a token into the simulator's own authorization format,
// at the simulator's address of this start. obol dev owns the file (use
// --routes for a file of your own).
func devRoutes(dataDir, simAddr string) (string, error) {
	path := filepath.Join(dataDir, routesFileName)
	body := `# Routes for POST /v1/forward (obol dev). GENERATED by obol dev on every
# start (the simulator's address may change): edits here last until the
# next start. For routes of your own, copy this file and run
# obol dev --routes FILE. Hot-reloaded; a bad edit is refused and the
# previous routes stay. See the README, "Forwarding".
routes:
  - name: simulator-authorizations
    host: ` + simAddr + `
    paths: ["/v1/authorizations"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
      - json: card.exp_month
        value: "{{token.exp_month}}"
        as: number
      - json: card.exp_year
        value: "{{token.exp_year}}"
        as: number
      - json: card.cvc
        value: "{{token.cvc}}"
`
	return path, atomicfile.Write(path, []byte(body))
}

// startSimulator serves the acquirer simulator over HTTPS with the dev PKI.
func startSimulator(addr, statePath string, pki *devpki.PKI, log *slog.Logger) (*simServer, error) {
	cfg, err := pki.ServerTLS()
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.NoClientCert
	sim, err := simulator.Open(simulator.Config{Logger: log, StatePath: statePath})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &simServer{ln: ln, srv: &http.Server{Handler: sim, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ErrorLog: serve.ErrorLog(log)}}, nil
}

// devRiskToken returns the dev risk engine's service token.
func devRiskToken(dataDir string) (string, error) { return devToken(dataDir, "risk_token", "rsk_") }

// devToken returns a dev service token, creating it on first use and
// keeping it in the dev credentials file (0600).
func devToken(dataDir, name, prefix string) (string, error) {
	path := filepath.Join(dataDir, vaultd.CredentialsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	creds := map[string]string{}
	if err := json.Unmarshal(b, &creds); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if t := creds[name]; t != "" {
		return t, nil
	}
	var r [24]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	creds[name] = prefix + base64.RawURLEncoding.EncodeToString(r[:])
	out, _ := json.MarshalIndent(creds, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return "", err
	}
	return creds[name], nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runMerchantsCreate(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("obol merchants create", flag.ContinueOnError)
	name := fs.String("name", "", "merchant name (required)")
	var origins stringList
	fs.Var(&origins, "origin", "checkout origin allowed to use the publishable key (repeatable), e.g. https://shop.example")
	live := fs.Bool("live", false, "create live-mode keys (sk_live_/pk_live_)")
	dataDir := fs.String("data-dir", "./.obol", "data directory of `obol dev` (ignored with --postgres-url)")
	pgURL := fs.String("postgres-url", cli.Env("OBOL_POSTGRES_URL", ""), "vault database URL (production)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return errors.New("--name is required")
	}
	for _, o := range origins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") || strings.Count(o, "/") != 2 {
			return fmt.Errorf("--origin %q must be scheme://host[:port] with no path", o)
		}
	}
	st, err := openStore(ctx, *pgURL, *dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	mode := "test"
	if *live {
		mode = "live"
	}
	keys, err := vaultd.CreateMerchant(ctx, st, *name, origins, mode)
	if err != nil {
		return err
	}
	if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: audit.ActionMerchantCreate, MerchantID: keys.MerchantID, Detail: "mode=" + mode}}); err != nil {
		return fmt.Errorf("merchant %s created, but recording it in the audit trail failed: %w", keys.MerchantID, err)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(keys)
}

func runVaultSetup(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("obol vault setup", flag.ContinueOnError)
	var cfg transit.Config
	fs.StringVar(&cfg.Address, "vault-addr", cli.Env("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault address (VAULT_ADDR)")
	fs.StringVar(&cfg.Mount, "transit-mount", "transit", "transit mount")
	fs.StringVar(&cfg.KeyName, "transit-key", "obol-kek", "KEK name")
	fs.StringVar(&cfg.FingerprintPath, "fingerprint-path", "secret/data/obol/fingerprint", "KV v2 path of the fingerprint secret")
	fs.StringVar(&cfg.CACertFile, "vault-cacert", cli.Env("VAULT_CACERT", ""), "CA certificate for Vault's TLS")
	fs.StringVar(&cfg.AppRoleMount, "approle-mount", "approle", "AppRole auth mount")
	noPolicies := fs.Bool("no-policies", false, "do not write policies or the AppRole role")
	auditFile := fs.String("audit-file", "", "also enable Vault's file audit device writing to this path (on the Vault server)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg.Token = os.Getenv("VAULT_TOKEN")
	if cfg.Token == "" {
		return errors.New("VAULT_TOKEN must hold an operator token")
	}
	c, err := transit.New(cfg)
	if err != nil {
		return err
	}
	steps, err := c.Setup(ctx, transit.SetupOptions{Policies: !*noPolicies, AuditFile: *auditFile})
	for _, s := range steps {
		fmt.Fprintln(out, s)
	}
	if err != nil {
		return err
	}
	changed := 0
	for _, s := range steps {
		if s.Changed {
			changed++
		}
	}
	fmt.Fprintf(out, "vault setup complete: %d created, %d already present\n", changed, len(steps)-changed)
	if !*noPolicies {
		fmt.Fprintf(out, `
vaultd logs in with AppRole %[1]q. Give it a role id and a secret id file:
  vault read -field=role_id auth/%[2]s/role/%[1]s/role-id          > role-id
  vault write -f -field=secret_id auth/%[2]s/role/%[1]s/secret-id  > secret-id   # mode 0600
  OBOL_VAULT_ROLE_ID=$(cat role-id) OBOL_VAULT_SECRET_ID_FILE=./secret-id vaultd …
The obol-break-glass policy is written but attached to nothing (see policies/README.md).
`, transit.AppRoleName, cfg.AppRoleMount)
	}
	return nil
}
