// Command obol-load is Obol's load tool. It starts the real stack the way the
// integration tests do (HashiCorp Vault, a throwaway PostgreSQL cluster with
// fsync and synchronous_commit on, Redis), runs vaultd against it, and drives
// durable POST /v1/tokens with N concurrent clients; then, in the same run,
// it drives Vault transit's own encrypt endpoint at the same concurrency as
// the baseline. It prints req/s, p50 and p99 for both and their ratio.
// Traffic goes to loopback only, and every phase is bounded in time.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/vaultd"
)

// tb lets the test harness run outside `go test`.
type tb struct {
	dir      string
	cleanups []func()
}

func (t *tb) Helper()                         {}
func (t *tb) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *tb) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "obol-load: "+format+"\n", args...)
	t.cleanup()
	os.Exit(1)
}
func (t *tb) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "t")
	if err != nil {
		panic(err)
	}
	return d
}
func (t *tb) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
	testenv.Shutdown()
	os.RemoveAll(t.dir)
}

// parse reads the flags (see config.Load).
func parse(args []string) (config.Load, error) {
	var c config.Load
	err := cli.Parse(pflag.NewFlagSet("obol-load", pflag.ContinueOnError), &c, args)
	switch {
	case err != nil:
	case c.Rate < 0 || c.Rate > maxRate:
		err = fmt.Errorf("%w: --rate: %d is out of range; want operations per second, 0 to %d", cli.ErrBadFlag, c.Rate, maxRate)
	case c.Rate > 0 && c.Suite != "risk" && c.Suite != "floor":
		// The other suites compare a closed loop against a baseline or
		// a floor (ratios, 1-client latencies, ceilings).
		err = fmt.Errorf("%w: --rate: an open loop is measured with --suite risk or floor only, not %s", cli.ErrBadFlag, c.Suite)
	}
	return c, err
}

// maxRate bounds --rate: an arrival every microsecond.
const maxRate = 1_000_000

// arrivalRate is --rate: above 0, runMarked drives an open loop at that
// many operations per second.
var arrivalRate int

func main() {
	c, err := parse(os.Args[1:])
	if err != nil {
		cli.Exit("obol-load", err) // status 0 after -h
		return
	}
	arrivalRate = c.Rate
	// Every service runs in this process: the Go runtime's GC settings
	// move every figure (a higher GOGC trades memory for CPU).
	fmt.Println(gcSettings())
	switch c.Suite {
	case "risk":
		runRisk(c.Duration, c.Warmup, c.Concurrency, c.CPUProfile)
		return
	case "floor":
		runFloor(c.Duration, c.Warmup, c.Concurrency, c.Rate)
		return
	case "forward", "payments", "gateway":
		runGateway(c.Suite, c.Duration, c.Warmup, c.Concurrency, c.CPUProfile)
		return
	case "vault":
	}
	dir, err := os.MkdirTemp("", "obol-load-")
	if err != nil {
		panic(err)
	}
	t := &tb{dir: dir}
	defer t.cleanup()

	rs := startReal(t)
	v, pg, rd, tc, srvTLS := rs.vault, rs.pg, rs.redis, rs.transit, rs.serverTLS
	db := pg.NewDatabase(t, "vault", postgres.MigrateURL)
	var in *vaultd.Instance
	as("vaultd", func() {
		in, err = vaultd.Start(context.Background(), vaultd.Config{
			Vault: tc, PostgresURL: db, RedisURL: rd.URL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", TLS: srvTLS,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		})
	})
	if err != nil {
		t.Fatalf("vaultd: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	as("vaultd", func() { go func() { done <- in.Serve(ctx) }() })
	t.Cleanup(func() { cancel(); <-done; in.Close() })
	keys, err := merchants.Create(context.Background(), in.Store, "load", nil, "test")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var pgSync string
	if err := pgSyncSetting(db, &pgSync); err != nil {
		t.Fatalf("read postgres settings: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}, Timeout: 10 * time.Second}

	tokenURL := "http://" + in.Server.HTTPAddr() + "/v1/tokens"
	year := time.Now().Year() + 3
	tokenize := func() error {
		body := fmt.Sprintf(`{"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`, randomVisa(), year)
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+keys.SecretKey)
		req.Header.Set("Content-Type", "application/json")
		return do(client, req)
	}
	encURL := v.Addr + "/v1/transit/encrypt/obol-kek"
	encrypt := func() error {
		var b [32]byte
		_, _ = rand.Read(b[:])
		body, _ := json.Marshal(map[string]string{"plaintext": base64.StdEncoding.EncodeToString(b[:])})
		req, _ := http.NewRequest(http.MethodPost, encURL, bytes.NewReader(body))
		req.Header.Set("X-Vault-Token", v.Token)
		return do(client, req)
	}

	fmt.Printf("postgres synchronous_commit=%s; %d clients; %s measured per phase after %s warm-up\n\n", pgSync, c.Concurrency, c.Duration, c.Warmup)
	probe := newCostProbe(t, pg.URL("postgres"), map[string]string{db: "vaultd"}, map[string]string{"vaultd": in.Server.HTTPAddr()}, rd.URL)
	probe.rankStatements(pg)
	obol, _, _ := measure(t, "obol tokenize (REST, durable)", tokenize, c.Concurrency, c.Warmup, c.Duration, c.CPUProfile, probe)
	// The baseline's cost model too: what one encrypt costs Vault and the
	// load client, against what a tokenize costs.
	base, _, _ := measure(t, "vault transit encrypt (baseline)", encrypt, c.Concurrency, c.Warmup, c.Duration, "", probe)
	rows, _ := in.Store.CountTokens(context.Background())
	fmt.Printf("\n%-34s %10s %9s %9s %8s\n", "", "req/s", "p50", "p99", "errors")
	for _, r := range []result{obol, base} {
		fmt.Printf("%-34s %10.0f %9s %9s %8d\n", r.name, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errors)
	}
	fmt.Printf("\nratio obol/baseline req/s: %.2f×   tokens stored: %d   DEKs generated: %d\n", obol.rps/base.rps, rows, in.Envelope.Stats.DEKsGenerated.Load())
	if tt := &in.Service.TokenizeTimes; tt.Calls.Load() > 0 {
		// Wall time, warm-up included; a closed loop's mean latency is
		// clients / throughput.
		per := func(a *atomic.Int64) time.Duration {
			return time.Duration(a.Load() / tt.Calls.Load()).Round(time.Microsecond)
		}
		fmt.Printf("tokenize wall time per call (warm-up included): client mean %s (%d clients / req/s); in the handler %s: CVC put %s, token row (group commit) %s, the rest %s\n",
			(time.Duration(float64(c.Concurrency) / obol.rps * float64(time.Second))).Round(time.Microsecond), c.Concurrency,
			per(&tt.Total), per(&tt.CVC), per(&tt.Store), per(&tt.Total)-per(&tt.CVC)-per(&tt.Store))
	}
	if c.CPUProfile != "" {
		fmt.Printf("CPU profile of the tokenize phase: %s (go tool pprof -top %s)\n", c.CPUProfile, c.CPUProfile)
	}
}

// realStack is what the load suites run on: HashiCorp Vault with transit
// set up, a PostgreSQL cluster (fsync and synchronous_commit on), Redis,
// and a dev PKI with vaultd's server TLS.
type realStack struct {
	vault     *testenv.Vault
	pg        *testenv.Postgres
	redis     *testenv.Redis
	transit   transit.Config
	pki       *devpki.PKI
	serverTLS *tls.Config
}

func startReal(t *tb) realStack {
	fmt.Println("starting HashiCorp Vault, PostgreSQL (fsync=on, synchronous_commit=on) and Redis …")
	// pg_stat_statements (when this PostgreSQL has it) ranks the
	// statements of each measured window in the cost model.
	rs := realStack{vault: testenv.StartVault(t), pg: testenv.StartPostgresWith(t, testenv.PostgresOptions{StatStatements: true}), redis: testenv.StartRedis(t)}
	rs.transit = transit.Config{Address: rs.vault.Addr, Token: rs.vault.Token, KeyName: "obol-kek"}
	admin, err := transit.New(rs.transit)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := admin.Setup(context.Background(), transit.SetupOptions{}); err != nil {
		t.Fatalf("vault setup: %v", err)
	}
	if rs.pki, err = devpki.Ensure(t.TempDir()); err != nil {
		t.Fatalf("%v", err)
	}
	if rs.serverTLS, err = rs.pki.ServerTLS(); err != nil {
		t.Fatalf("%v", err)
	}
	return rs
}

// pgSyncSetting reads the durability settings from the server itself.
func pgSyncSetting(url string, out *string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var sc, fs string
	if err := conn.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&sc, &fs); err != nil {
		return err
	}
	*out = sc + " fsync=" + fs
	return nil
}

func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 204 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

type result struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	errors   int64
	ops      int64 // operations that ended in the measured window, errors included (what the cost models divide by)
	// measured is how many latencies count: the operations that started
	// (were due) in the window and succeeded, wherever they ended.
	measured int64
	// missed counts the open loop's arrivals that found a second's worth
	// queued already and were not sent: the offered rate was not held.
	missed int64
	// lateP99 and lateMax: how late the open loop queued its arrivals.
	lateP99, lateMax time.Duration
}

// run drives op from conc goroutines: a warm-up, then a measured window.
func run(name string, op func() error, conc int, warmup, dur time.Duration, prof *os.File) result {
	return runMarked(name, op, conc, warmup, dur, prof, nil)
}

// runMarked is run, calling mark (when set) right before and right after
// the measured window, for cost models.
func runMarked(name string, op func() error, conc int, warmup, dur time.Duration, prof *os.File, mark func()) result {
	return runAt(name, op, conc, warmup, dur, prof, mark, arrivalRate, 1)
}

// window is the measured window, on the monotonic clock (offsets from
// base). An operation's latency counts when it started in [from, to) (for
// the open loop, when it was due, plus at most graceLate of the tool's
// lateness: its stamp), wherever it ended; throughput and cost count the
// operations that ended in it, as the CPU snapshots taken at its ends do.
type window struct {
	base     time.Time
	from, to atomic.Int64 // offset from base + 1; 0: not begun / not ended
}

func newWindow() *window { return &window{base: time.Now()} }

func (w *window) off(t time.Time) int64 { return int64(t.Sub(w.base)) + 1 }
func (w *window) begin(t time.Time)     { w.from.Store(w.off(t)) }
func (w *window) end(t time.Time)       { w.to.Store(w.off(t)) }
func (w *window) in(t time.Time) bool {
	from, to, n := w.from.Load(), w.to.Load(), w.off(t)
	return from != 0 && n >= from && (to == 0 || n < to)
}

// drainLimit bounds how long an open loop's clients go on, after the
// window, with the arrivals that were due in it and still queued.
const drainLimit = 5 * time.Second

// runAt is runMarked at a given rate: 0 for a closed loop, else an open
// loop of rate units a second, one operation counting per units (a batch
// of rows; see pacer). Latencies are those of the operations that started
// (were due) in the window, wherever they ended: once the window ends, the
// open loop's clients go on with the arrivals due in it (up to
// drainLimit), and those still queued then count as missed, so the
// slowest operations of a rate not held are not left out. Throughput and
// ops (what the cost models divide by) count the operations that ended in
// the window.
func runAt(name string, op func() error, conc int, warmup, dur time.Duration, prof *os.File, mark func(), rate, per int) result {
	per = max(1, per)
	win := newWindow()
	var errs, missed, ended, endedErrs atomic.Int64
	stop := make(chan struct{})     // the clients stop
	draining := make(chan struct{}) // the pacer stopped: take what is queued and due in the window, then stop
	lat := make([][]time.Duration, conc)
	var wg, pwg sync.WaitGroup
	// due hands the open loop's arrivals to the clients, each with the
	// time its latency counts from (see pacer); nil for a closed loop.
	var due chan time.Time
	var pc *pacer
	pstop := make(chan struct{})
	if rate > 0 {
		ops := max(1, rate/per)
		if per > 1 {
			fmt.Printf("running %s at %d units/s, %d per operation (open loop, up to %d in flight) …\n", name, rate, per, conc)
		} else {
			fmt.Printf("running %s at %d operations/s (open loop, up to %d in flight) …\n", name, rate, conc)
		}
		due = make(chan time.Time, ops)
		pc = &pacer{due: due, rate: int64(rate), per: int64(per), began: time.Now(), missed: &missed, win: win}
		pwg.Add(1)
		as("load client", func() { go func() { defer pwg.Done(); pc.run(pstop) }() })
	} else {
		fmt.Printf("running %s …\n", name)
	}
	for i := 0; i < conc; i++ {
		wg.Add(1)
		as("load client", func() {
			go func(i int) {
				defer wg.Done()
				for {
					var start time.Time
					select {
					case <-stop:
						return
					default:
					}
					if due != nil {
						select {
						case <-stop:
							return
						case start = <-due:
						case <-draining:
							select {
							case start = <-due:
							default:
								return
							}
							if !win.in(start) {
								return // due after the window (queued in order: so is the rest)
							}
						}
					} else {
						start = time.Now()
					}
					err := op()
					if win.in(time.Now()) {
						ended.Add(1)
						if err != nil {
							endedErrs.Add(1)
						}
					}
					if win.in(start) {
						if err != nil {
							errs.Add(1)
						} else {
							lat[i] = append(lat[i], time.Since(start))
						}
					}
				}
			}(i)
		})
	}
	time.Sleep(warmup)
	if prof != nil {
		_ = pprof.StartCPUProfile(prof)
	}
	if mark != nil {
		mark()
	}
	began := time.Now()
	win.begin(began)
	time.Sleep(dur)
	stopped := time.Now()
	win.end(stopped)
	close(pstop)
	elapsed := stopped.Sub(began)
	if mark != nil {
		mark()
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	pwg.Wait()
	if due != nil {
		close(draining)
		limit := time.AfterFunc(drainLimit, func() { close(stop) })
		wg.Wait()
		if limit.Stop() {
			close(stop)
		}
		missed.Add(leftInWindow(due, win))
	} else {
		close(stop)
		wg.Wait()
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{name: name, errors: errs.Load(), rps: float64(ended.Load()-endedErrs.Load()) / elapsed.Seconds(), ops: ended.Load(),
		measured: int64(len(all)), missed: missed.Load()}
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
	}
	if pc != nil {
		late := pc.late
		sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
		if len(late) > 0 {
			r.lateP99, r.lateMax = late[len(late)*99/100], late[len(late)-1]
		}
		fmt.Printf("%s: the tool queued its arrivals late by p99 %s, at most %s (up to %s of it not counted in the latencies)\n", name, r.lateP99.Round(time.Microsecond), r.lateMax.Round(time.Microsecond), graceLate)
	}
	if r.missed > 0 {
		fmt.Printf("WARNING: %s: %d arrivals not sent (a second's worth was queued already, or still queued %s after the window) and not in the latencies: the system did not hold the rate\n",
			name, r.missed, drainLimit)
	}
	return r
}

// leftInWindow counts the arrivals still queued on due that were due in
// the window (the clients have stopped).
func leftInWindow(due chan time.Time, w *window) int64 {
	var n int64
	for {
		select {
		case at := <-due:
			if w.in(at) {
				n++
			}
		default:
			return n
		}
	}
}

// graceLate is how late an arrival may be queued without its lateness
// counting (see pacer).
const graceLate = time.Millisecond

// pacer queues rate arrivals per second on due, evenly spaced (as wrk2
// does): a slow answer delays no later arrival, so the latencies count the
// time an operation waited for a free client (no coordinated omission). An
// arrival that finds due full is counted in missed (when it was due in the
// measured window) and
// dropped.
//
// Each arrival is stamped with the time it was due. The ticker fires every
// 200 µs while the process is busy, but an idle Go process sleeps in the
// poller with a millisecond's resolution, so an arrival can be queued up to
// about a millisecond late; that lateness is the tool's, so up to graceLate
// of it is forgiven (the stamp is the time it was queued). Beyond that the
// stamp stays graceLate after the time it was due: a stall of the whole
// process (the CPU saturated, a GC pause) delays the arrivals, and that
// delay counts in their latency. late records how late each arrival was
// queued, so the tool's own lag is printed too.
type pacer struct {
	due chan<- time.Time
	// rate units a second, per units an arrival (0: 1).
	rate, per int64
	began     time.Time
	sent      int64
	missed    *atomic.Int64
	// win decides which arrivals' lateness and misses count: those due in
	// the measured window.
	win  *window
	late []time.Duration // of the arrivals due in the window
}

// at is when arrival i is due: arrivals carry per units each, rate
// units a second.
func (p *pacer) at(i int64) time.Time {
	return p.began.Add(time.Duration(i * max(1, p.per) * int64(time.Second) / p.rate))
}

// queue queues every arrival due at or before now.
func (p *pacer) queue(now time.Time) {
	for ; !p.at(p.sent).After(now); p.sent++ {
		at := p.at(p.sent)
		lateBy := now.Sub(at)
		stamp := at.Add(min(lateBy, graceLate))
		measuring := p.win.in(at)
		if measuring {
			p.late = append(p.late, lateBy)
		}
		select {
		case p.due <- stamp:
		default:
			if measuring {
				p.missed.Add(1)
			}
		}
	}
}

// run queues arrivals every 200 µs until stop.
func (p *pacer) run(stop <-chan struct{}) {
	t := time.NewTicker(200 * time.Microsecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.queue(time.Now())
		}
	}
}

// randomVisa returns a random Luhn-valid 16-digit Visa test-range number, so
// that fingerprints and rows differ as with real traffic.
func randomVisa() string {
	d := make([]byte, 16)
	d[0] = 4
	for i := 1; i < 15; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(10))
		d[i] = byte(n.Int64())
	}
	sum := 0
	for i := 14; i >= 0; i-- {
		v := int(d[i])
		if (14-i)%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	d[15] = byte((10 - sum%10) % 10)
	for i := range d {
		d[i] += '0'
	}
	return string(d)
}

// gcSettings says what the Go runtime's GC runs with (as the runtime read
// GOGC and GOMEMLIMIT, not as they were written).
func gcSettings() string {
	pct := debug.SetGCPercent(-1)
	debug.SetGCPercent(pct)
	gogc := "off"
	if pct >= 0 {
		gogc = strconv.Itoa(pct)
	}
	limit := "none"
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limit = fmt.Sprintf("%d MiB", l>>20)
	}
	return fmt.Sprintf("Go runtime: GC percent %s, memory limit %s, %s", gogc, limit, runtime.Version())
}
