package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/ledger/ledgerd"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/proxy/gatewayd"
	"github.com/obolpay/obol/proxy/simulator"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/risk/riskd"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/vaultd"
)

// serveTLS serves h over HTTPS with the dev PKI's server certificate on a
// free loopback port.
func serveTLS(t *tb, component string, pki *devpki.PKI, h http.Handler) string {
	cfg, err := pki.ServerTLS()
	if err != nil {
		t.Fatalf("%v", err)
	}
	cfg.ClientAuth = tls.NoClientCert
	cfg.NextProtos = []string{"h2", "http/1.1"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ErrorLog: serve.ErrorLog(slog.Default())}
	as(component, func() { go func() { _ = srv.ServeTLS(ln, "", "") }() })
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// runGateway measures the gateway on the real stack: HashiCorp Vault
// (transit), PostgreSQL (fsync and synchronous_commit on) and Redis under
// vaultd, riskd, ledgerd and gatewayd, the simulator and a plain upstream
// over HTTPS, all on loopback. suite: forward, payments or gateway (both).
func runGateway(suite string, dur, warmup time.Duration, conc int, cpuprofile string) {
	dir, err := os.MkdirTemp("", "obol-load-")
	if err != nil {
		panic(err)
	}
	t := &tb{dir: dir}
	defer t.cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	serveIn := func(component string, serve func(context.Context) error, closeFn func()) {
		done := make(chan error, 1)
		as(component, func() { go func() { done <- serve(ctx) }() })
		t.Cleanup(func() { cancel(); <-done; closeFn() })
	}

	rs := startReal(t)
	pg, rd, tc, pki, srvTLS := rs.pg, rs.redis, rs.transit, rs.pki, rs.serverTLS
	vaultDB := pg.NewDatabase(t, "vault", postgres.MigrateURL)
	var vd *vaultd.Instance
	as("vaultd", func() {
		vd, err = vaultd.Start(ctx, vaultd.Config{Vault: tc, PostgresURL: vaultDB, RedisURL: rd.URL,
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", TLS: srvTLS, RequireRequestNonce: true, Logger: discard})
	})
	if err != nil {
		t.Fatalf("vaultd: %v", err)
	}
	serveIn("vaultd", vd.Serve, vd.Close)
	keys, err := merchants.Create(ctx, vd.Store, "load", nil, "test")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var rk *riskd.Instance
	as("riskd", func() {
		rk, err = riskd.Start(ctx, riskd.Config{RedisURL: rd.URL, Token: "load-risk", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: discard})
	})
	if err != nil {
		t.Fatalf("riskd: %v", err)
	}
	serveIn("riskd", rk.Serve, rk.Close)
	ledgerDB := pg.NewDatabase(t, "ledger", ledgerpg.MigrateURL)
	var ld *ledgerd.Instance
	as("ledgerd", func() {
		ld, err = ledgerd.Start(ctx, ledgerd.Config{PostgresURL: ledgerDB, Token: "load-ledger", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: discard})
	})
	if err != nil {
		t.Fatalf("ledgerd: %v", err)
	}
	serveIn("ledgerd", ld.Serve, ld.Close)
	simAddr := serveTLS(t, "simulator", pki, simulator.New(simulator.Config{Logger: discard}))
	upAddr := serveTLS(t, "upstream", pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"ch_1","status":"succeeded","amount":1000}`)
	}))
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routes, []byte(`routes:
  - name: load
    host: `+upAddr+`
    paths: ["/v1/charges"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
`), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	gwCert, err := pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	if err != nil {
		t.Fatalf("%v", err)
	}
	pool := &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}
	gwDB := pg.NewDatabase(t, "gateway", paypg.MigrateURL)
	var gw *gatewayd.Instance
	as("gateway", func() {
		gw, err = gatewayd.Start(ctx, gatewayd.Config{PostgresURL: gwDB, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			VaultAddr: vd.Server.GRPCAddr(), VaultTLS: pki.ClientTLS(gwCert), RiskAddr: rk.Server.GRPCAddr(), RiskToken: "load-risk",
			LedgerAddr: ld.Server.GRPCAddr(), LedgerToken: "load-ledger", SimulatorURL: "https://" + simAddr, SimulatorTLS: pool,
			RoutesFile: routes, UpstreamTLS: pool, Logger: discard})
	})
	if err != nil {
		t.Fatalf("gatewayd: %v", err)
	}
	serveIn("gateway", gw.Serve, gw.Close)

	// The load client speaks HTTP/1.1 with keep-alive, to the gateway and
	// (over TLS) directly to the upstream alike.
	clientTLS := pool.Clone()
	clientTLS.NextProtos = []string{"http/1.1"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute, TLSClientConfig: clientTLS}, Timeout: 15 * time.Second}
	post := func(url, body string, hdr map[string]string) ([]byte, error) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return b, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
		}
		return b, nil
	}
	// A pool of tokens, distinct cards enough that the default rules'
	// card velocity never declines a payment of the run (cardPool).
	nTokens := cardPool(warmup + dur)
	fmt.Printf("tokenizing %d cards …\n", nTokens)
	tokens := make([]string, nTokens)
	pans := make([]string, nTokens)
	year := time.Now().Year() + 3
	var (
		nextCard atomic.Int64
		tokWG    sync.WaitGroup
		tokErr   atomic.Pointer[error]
	)
	for range 16 {
		tokWG.Add(1)
		go func() {
			defer tokWG.Done()
			for i := int(nextCard.Add(1) - 1); i < nTokens && tokErr.Load() == nil; i = int(nextCard.Add(1) - 1) {
				pan := randomVisa()
				b, err := post("http://"+vd.Server.HTTPAddr()+"/v1/tokens", fmt.Sprintf(`{"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`, pan, year), map[string]string{"Authorization": "Bearer " + keys.SecretKey})
				var r struct{ Token string }
				if err == nil {
					err = json.Unmarshal(b, &r)
				}
				if err == nil && r.Token == "" {
					err = fmt.Errorf("no token in the answer")
				}
				if err != nil {
					tokErr.CompareAndSwap(nil, &err)
					return
				}
				tokens[i], pans[i] = r.Token, pan
			}
		}()
	}
	tokWG.Wait()
	if err := tokErr.Load(); err != nil {
		t.Fatalf("tokenize: %v", *err)
	}
	var next atomic.Int64
	pick := func() int { return int(next.Add(1) % int64(nTokens)) }
	authz := map[string]string{"Authorization": "Bearer " + keys.SecretKey}

	probe := newCostProbe(t, pg.URL("postgres"), map[string]string{vaultDB: "vaultd", ledgerDB: "ledgerd", gwDB: "gateway"},
		map[string]string{"gateway": gw.Server.HTTPAddr(), "vaultd": vd.Server.HTTPAddr(), "riskd": rk.Server.HTTPAddr(), "ledgerd": ld.Server.HTTPAddr()}, rd.URL)
	probe.rankStatements(pg)
	fmt.Printf("%d clients; %s measured per phase after %s warm-up; everything in this one process on %d cores\n\n", conc, dur, warmup, numCPU())
	var rows []result
	if suite == "forward" || suite == "gateway" {
		fwdHdr := map[string]string{"Authorization": authz["Authorization"], "Obol-Destination": "https://" + upAddr + "/v1/charges"}
		forward := func() error {
			_, err := post("http://"+gw.Server.HTTPAddr()+"/v1/forward", `{"amount":1000,"currency":"USD","card":{"number":"`+tokens[pick()]+`"}}`, fwdHdr)
			return err
		}
		direct := func() error {
			_, err := post("https://"+upAddr+"/v1/charges", `{"amount":1000,"currency":"USD","card":{"number":"`+pans[pick()]+`"}}`, nil)
			return err
		}
		if err := forward(); err != nil {
			t.Fatalf("forward check: %v", err)
		}
		d := run("direct to upstream (HTTPS, PAN)", direct, conc, warmup, dur, nil)
		fp := ""
		if suite == "forward" {
			fp = cpuprofile
		}
		f, _, _ := measure(t, "via /v1/forward (1 revealed field)", forward, conc, warmup, dur, fp, probe)
		rows = append(rows, d, f)
		defer fmt.Printf("forward: added latency p50 %s, p99 %s; throughput %.0f%% of direct\n",
			(f.p50 - d.p50).Round(10*time.Microsecond), (f.p99 - d.p99).Round(10*time.Microsecond), 100*f.rps/d.rps)
	}
	if suite == "payments" || suite == "gateway" {
		base := "http://" + gw.Server.HTTPAddr() + "/v1/payments"
		var declined atomic.Int64
		pay := func() error {
			b, err := post(base, `{"token":"`+tokens[pick()]+`","amount":2500,"currency":"USD","capture":false}`, authz)
			if err != nil {
				return err
			}
			var p struct{ ID, Status string }
			if err := json.Unmarshal(b, &p); err != nil || p.Status != "authorized" {
				declined.Add(1)
				return fmt.Errorf("authorize: %s", bytes.TrimSpace(b))
			}
			_, err = post(base+"/"+p.ID+"/capture", `{}`, authz)
			return err
		}
		if err := pay(); err != nil {
			t.Fatalf("payment check: %v", err)
		}
		pp := ""
		if suite != "forward" {
			pp = cpuprofile
		}
		c0 := pgCounters(t, pg.URL("postgres"), gwDB)
		r, _, _ := measure(t, "payments (authorize + capture)", pay, conc, warmup, dur, pp, probe)
		c1 := pgCounters(t, pg.URL("postgres"), gwDB)
		rows = append(rows, r)
		if n := float64(c1.payments - c0.payments); n > 0 {
			defer fmt.Printf("payments: per payment (warm-up and tail included) %.1f PostgreSQL transactions (reads included), %.1f rows inserted, %.1f rows updated\n",
				float64(c1.commits-c0.commits)/n, float64(c1.inserted-c0.inserted)/n, float64(c1.updated-c0.updated)/n)
		}
		defer func() {
			fmt.Printf("payments: %d not authorized (risk or acquirer) during the run\n", declined.Load())
			if declined.Load() > 0 {
				fmt.Printf("WARNING: %d payments were not authorized (a risk rule, e.g. card velocity above %d payments/s, or the acquirer): the payments figures are not of authorize + capture alone\n", declined.Load(), cardPoolRate)
			}
		}()
	}
	fmt.Printf("\n%-38s %10s %9s %9s %8s\n", "", "req/s", "p50", "p99", "errors")
	for _, r := range rows {
		fmt.Printf("%-38s %10.0f %9s %9s %8d\n", r.name, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errors)
	}
	if cpuprofile != "" {
		fmt.Printf("CPU profile: %s (go tool pprof -top %s)\n", cpuprofile, cpuprofile)
	}
}

func numCPU() int { return runtime.NumCPU() }

type pgStats struct{ commits, inserted, updated, payments int64 }

// pgCounters reads the cluster's transaction and row counters, and the
// gateway's payment count.
func pgCounters(t *tb, url, gatewayURL string) pgStats {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer conn.Close(ctx)
	var s pgStats
	if err := conn.QueryRow(ctx, `SELECT sum(xact_commit), sum(tup_inserted), sum(tup_updated) FROM pg_stat_database`).Scan(&s.commits, &s.inserted, &s.updated); err != nil {
		t.Fatalf("%v", err)
	}
	gw, err := pgx.Connect(ctx, gatewayURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer gw.Close(ctx)
	if err := gw.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&s.payments); err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

// cardPoolRate is the payment rate up to which cardPool's cards keep the
// default rules' card velocity quiet: above issue 16's 1,500/s target.
const cardPoolRate = 2500

// cardPool is how many distinct cards a run of length d needs so that the
// default rules' card velocity (card.count_1m > 3, card.count_1h > 10, as
// riskd estimates them: this minute's bucket plus a share of the last one)
// never fires at cardPoolRate payments a second, the cards used in turn:
//   - rate × run / 3 cards: no card is used more than 3 times in the run;
//   - at most rate × 30 s: a card comes round every 30 s, which puts at
//     most 2 uses in a minute's bucket and gives an estimate of at most 3;
//   - rate × run / 10 if more: no card is used more than 10 times in the run.
//
// Never fewer than 2,000.
func cardPool(d time.Duration) int {
	d += 5 * time.Second // the check payment, the start and end of phases
	perRun := func(uses float64) int { return int(math.Ceil(cardPoolRate * d.Seconds() / uses)) }
	return max(2000, min(perRun(3), cardPoolRate*30), perRun(10))
}
