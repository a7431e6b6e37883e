package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/ledger/ledgerd"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
	"github.com/obolpay/obol/proxy/gatewayd"
	"github.com/obolpay/obol/risk/riskd"
	"github.com/obolpay/obol/vault/hosted"
	"github.com/obolpay/obol/vault/keys/localkms"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/vaultd"
)

func newDevCmd() *cobra.Command {
	cmd := loadCmd(&cobra.Command{
		Use:   "dev",
		Short: "Run all of Obol in one process on the embedded default (NOT FOR PRODUCTION)",
		Long: `Run Obol on the embedded default: local keyring, SQLite, in-process CVC
store, the risk engine, the ledger, the gateway, the acquirer simulator and a
demo shop with the hosted card fields. NOT FOR PRODUCTION. Everything lives
in the data dir and survives a restart. --payout-delay 0 releases captured
funds at once (default T+2), so payouts can be tried today.`,
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.Dev) error {
		return runDev(cmd.Context(), c, cmd.OutOrStdout())
	})
	cmd.PreRun = nil // obol dev logs the warning (config.WarnUnknown)
	return cmd
}

func runDev(ctx context.Context, c config.Dev, out io.Writer) error {
	if c.PayoutDelay < -1 || c.PayoutDelay > 365 {
		return fmt.Errorf("--payout-delay %d: must be 0-365 days", c.PayoutDelay)
	}
	// The embedded default is plaintext and not for production: it listens
	// on loopback only (the daemons serve TLS; see the README's HTTP edge).
	for name, addr := range map[string]string{"--http-addr": c.HTTPAddr, "--grpc-addr": c.GRPCAddr, "--risk-http-addr": c.RiskHTTP, "--risk-grpc-addr": c.RiskGRPC,
		"--gateway-http-addr": c.GatewayHTTP, "--gateway-grpc-addr": c.GatewayGRPC, "--ledger-http-addr": c.LedgerHTTP, "--ledger-grpc-addr": c.LedgerGRPC,
		"--events-http-addr": c.EventsHTTP, "--events-grpc-addr": c.EventsGRPC, "--simulator-addr": c.SimAddr, "--demo-addr": c.DemoAddr} {
		if name == "--demo-addr" && addr == "" {
			continue // no demo shop
		}
		if !serve.IsLoopback(addr) {
			return fmt.Errorf("%s %s: obol dev listens on loopback only (plaintext, not for production); run vaultd, gatewayd, riskd and ledgerd with TLS instead", name, addr)
		}
	}
	// One obol dev per data dir: a second one would split the simulator's
	// and the CVC store's in-memory state from the first.
	lock, err := lockDataDir(c.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	log := cli.Logger(c.LogFormat)
	config.WarnUnknown(log)
	stopTracing, err := cli.Tracing(ctx, "obol-dev", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	origins := []string{"http://localhost:3000", "http://127.0.0.1:3000"}
	var demo *demoShop
	if c.DemoAddr != "" {
		d, err := listenDemo(c.DemoAddr, log)
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
	e, err := vaultd.StartEmbedded(depCtx, vaultd.EmbeddedConfig{DataDir: c.DataDir, HTTPAddr: c.HTTPAddr, GRPCAddr: c.GRPCAddr, Origins: origins, Logger: log})
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
	riskToken, err := devRiskToken(c.DataDir)
	if err != nil {
		return err
	}
	risk, err := riskd.StartEmbedded(depCtx, riskd.Config{GRPCAddr: c.RiskGRPC, HTTPAddr: c.RiskHTTP, Token: riskToken, Reflection: true, Logger: log,
		StatePath: filepath.Join(c.DataDir, riskStateFile)})
	if err != nil {
		return fmt.Errorf("risk engine: %w", err)
	}
	defer risk.Close()
	events, eventsToken, err := startDevEvents(depCtx, c, log)
	if err != nil {
		return err
	}
	defer events.Close()
	ledgerToken, err := devToken(c.DataDir, "ledger_token", "ldg_")
	if err != nil {
		return err
	}
	lcfg := ledgerd.Config{SQLitePath: filepath.Join(c.DataDir, "ledger.db"), GRPCAddr: c.LedgerGRPC, HTTPAddr: c.LedgerHTTP,
		Token: ledgerToken, Settings: c.Settings, Reflection: true, Logger: log}
	if c.PayoutDelay >= 0 {
		lcfg.PayoutDelayDays = &c.PayoutDelay
	}
	// The ledger's events (disputes, payouts, settlements) are relayed to
	// the embedded eventsd, as the gateway's are (loopback, plaintext).
	evConn, err := grpc.NewClient(events.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("ledger events client: %w", err)
	}
	defer evConn.Close()
	lcfg.Events, lcfg.EventsToken = eventsv1.NewEventLogServiceClient(evConn), eventsToken
	ledger, err := ledgerd.Start(depCtx, lcfg)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer ledger.Close()
	sim, err := startSimulator(c.SimAddr, filepath.Join(c.DataDir, simulatorStateFile), e.PKI, log)
	if err != nil {
		return fmt.Errorf("acquirer simulator: %w", err)
	}
	gwCert, err := e.PKI.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	if err != nil {
		return err
	}
	routes := c.RoutesFile
	if routes == "" {
		if routes, err = devRoutes(c.DataDir, sim.Addr()); err != nil {
			return err
		}
	}
	gw, err := gatewayd.Start(ctx, gatewayd.Config{SQLitePath: filepath.Join(c.DataDir, "gateway.db"), GRPCAddr: c.GatewayGRPC, HTTPAddr: c.GatewayHTTP, Reflection: true,
		RoutesFile: routes, UpstreamTLS: &tls.Config{RootCAs: e.PKI.Pool(), MinVersion: tls.VersionTLS12},
		VaultAddr: e.Server.GRPCAddr(), VaultTLS: e.PKI.ClientTLS(gwCert), RiskAddr: risk.Server.GRPCAddr(), RiskToken: riskToken,
		LedgerAddr: ledger.Server.GRPCAddr(), LedgerToken: ledgerToken, EventsAddr: events.Server.GRPCAddr(), EventsToken: eventsToken, SimulatorURL: "https://" + sim.Addr(), SimulatorTLS: &tls.Config{RootCAs: e.PKI.Pool(), MinVersion: tls.VersionTLS12},
		// One process: the in-process failed-auth counters are the shared ones.
		Edge:            serve.Edge{AuthLimit: authlimit.Config{Counter: authlimit.NewMemory(nil)}},
		AcquirerTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer gw.Close()
	// A request for a path on another service's port is told where to go.
	httpapi.SetDirectory(devDirectory(e.Server.HTTPAddr(), gw.Server.HTTPAddr(), risk.Server.HTTPAddr(), ledger.Server.HTTPAddr()))
	// obol's other commands find this obol dev's services here (see
	// devAddress).
	if err := lock.SetAddresses(map[string]string{"REST": "http://" + e.Server.HTTPAddr(), "gRPC": e.Server.GRPCAddr(),
		"payments": "http://" + gw.Server.HTTPAddr(), addrGatewayGRPC: gw.Server.GRPCAddr(),
		addrLedgerGRPC: ledger.Server.GRPCAddr(), "ledger REST": "http://" + ledger.Server.HTTPAddr(),
		"risk gRPC": risk.Server.GRPCAddr(), addrEventsGRPC: events.Server.GRPCAddr(), "risk REST": "http://" + risk.Server.HTTPAddr(), "acquirer": "https://" + sim.Addr()}); err != nil {
		return err
	}
	abs, _ := filepath.Abs(c.DataDir)
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
	fmt.Fprintf(out, "  events    http://%s/v1/events and /v1/webhook_endpoints   (at the gateway, secret key; eventsd gRPC %s, SQLite; `obol listen` receives webhooks)\n\n",
		gw.Server.HTTPAddr(), events.Server.GRPCAddr())
	if e.CreatedMerchant {
		fmt.Fprintln(out, "  (a new dev merchant was created on this first start)")
	}
	if demo != nil {
		fmt.Fprintf(out, "  demo shop %s   (hosted fields checkout: open it, type a test card, pay)\n\n", demo.Origin())
	}
	gwCtx, stopGW := context.WithCancel(ctx)
	defer stopGW()
	gwDone := make(chan error, 1)
	errc := make(chan error, 6)
	left := 5
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
	go func() { errc <- events.Serve(depCtx) }()
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
