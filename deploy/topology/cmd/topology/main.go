// Command topology starts Obol's reference production layout on this
// machine (see deploy/topology/README.md) and keeps it running until
// Ctrl-C, printing every address and credential a client or an operator
// needs:
//
//	go run ./deploy/topology/cmd/topology up --dir /tmp/topo
//
// Everything it starts is stopped on exit; the directory keeps the logs.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/deploy/topology"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "up" {
		fmt.Fprintln(os.Stderr, "usage: topology up [--dir DIR] [--race]")
		os.Exit(2)
	}
	fs := pflag.NewFlagSet("topology up", pflag.ContinueOnError)
	dir := fs.String("dir", "", "directory for binaries, certificates, data and logs (required; created if missing)")
	race := fs.Bool("race", false, "build the daemons with -race")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "topology up: --dir is required and takes no arguments")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "topology up:", err)
		os.Exit(1)
	}
	tb := &cliTB{dir: *dir}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "topology: stopping everything")
		tb.cleanup()
		os.Exit(0)
	}()
	t := topology.Start(tb, topology.Options{Dir: *dir, Race: *race})
	print(t)
	select {}
}

func print(t *topology.Topology) {
	m := map[string]any{
		"gateway_url": t.GatewayURL, "gateway_grpc": t.GatewayGRPCAddr, "vaultd_url": t.VaultdURL, "vaultd_grpc": t.VaultdGRPCAddr,
		"simulator_url": t.SimulatorURL, "risk_grpc": t.RiskAddr, "ledger_grpc": t.LedgerAddr, "events_grpc": t.EventsAddr,
		"vault_addr": t.VaultAddr, "vault_token": t.VaultToken, "vault_bin": t.VaultBin, "transit_key": t.TransitKey,
		"postgres_urls": t.PostgresURLs, "redis_url": t.RedisURL, "redis_nodes": t.Redis().Addrs(), "risk_key_prefix": t.RiskKeyPrefix,
		"merchant_id": t.MerchantID, "secret_key": t.SecretKey, "publishable_key": t.PublishableKey,
		"ca_cert": t.CACert, "gateway_cert": t.GatewayCert, "gateway_key": t.GatewayKey,
		"ledger_token": t.LedgerToken, "risk_token": t.RiskToken, "events_token": t.EventsToken, "bin": t.Bin,
	}
	procs := map[string]string{}
	for _, p := range t.Processes() {
		a := p.Addr
		if p.GRPCAddr != "" {
			a += " grpc " + p.GRPCAddr
		}
		procs[p.Name] = fmt.Sprintf("pid %d %s", p.Pid(), a)
	}
	m["processes"] = procs
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(m)
	names := make([]string, 0, len(procs))
	for n := range procs {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "topology: %d processes up; logs in %s/logs; Ctrl-C stops everything\n", len(names), t.Dir)
}

// cliTB is the testenv.TB the topology runs on outside a test: cleanups
// run on exit (Ctrl-C or a failure).
type cliTB struct {
	dir  string
	mu   sync.Mutex
	fns  []func()
	n    int
	once sync.Once
}

func (*cliTB) Helper()                      {}
func (*cliTB) Logf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (c *cliTB) Cleanup(f func())           { c.mu.Lock(); c.fns = append(c.fns, f); c.mu.Unlock() }
func (c *cliTB) Fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	c.cleanup()
	os.Exit(1)
}

func (c *cliTB) TempDir() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	d := fmt.Sprintf("%s/tmp%d", c.dir, c.n)
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	return d
}

func (c *cliTB) cleanup() {
	c.once.Do(func() {
		c.mu.Lock()
		fns := c.fns
		c.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}
