package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// fault is what a drill does to the deployment while one phase of the
// load runs: it starts once `at` of the phase's requests have been sent.
type fault struct {
	phase string  // tokenize, authorize, capture or refund
	at    float64 // fraction of the phase's first attempts sent
	what  string
	// run breaks something and repairs it; phaseDone closes when the
	// phase's clients have all finished (an outage that the load does
	// not feel ends then).
	run func(s *stack, l *load, phaseDone <-chan struct{}) error
}

type drill struct {
	name   string
	opts   stackOptions
	faults []fault
	// lb: the clients reach the services through a load balancer (the
	// multi-node topology), so a connection failure or a proxy's own
	// error is a client error too: only 503s with an error code pass.
	lb bool
	// setup prepares the deployment before the load (nil: nothing).
	setup func(s *stack) error
	// check adds the drill's own invariants after the census.
	check func(s *stack, c *census, flows []flow) []string
}

// outageFailures is how many failed attempts the merchants see before a
// stopped dependency is started again.
const outageFailures = 24

// sigkill kills a daemon and starts it again on the same ports at once.
func sigkill(phase string, at float64, which string) fault {
	return fault{phase: phase, at: at, what: fmt.Sprintf("%s SIGKILL at %.0f%% of the %s requests, restarted at once", which, 100*at, phase),
		run: func(s *stack, _ *load, _ <-chan struct{}) error {
			p := s.proc(which)
			p.kill()
			return p.start()
		}}
}

// outage stops something at `at` of a phase and starts it again once the
// merchants have seen outageFailures failed attempts (or the phase ends).
func outage(phase string, at float64, which string, stop, start func(s *stack) error) fault {
	return fault{phase: phase, at: at, what: fmt.Sprintf("%s stopped at %.0f%% of the %s requests, started again after %d failed attempts", which, 100*at, phase, outageFailures),
		run: func(s *stack, l *load, phaseDone <-chan struct{}) error {
			if err := stop(s); err != nil {
				return err
			}
			select {
			case <-l.afterFailures(outageFailures):
			case <-phaseDone:
			}
			return start(s)
		}}
}

func (s *stack) proc(name string) *proc {
	for _, p := range s.procs() {
		if p.name == name {
			return p
		}
	}
	panic("no daemon " + name)
}

func daemonOutage(phase string, at float64, which string) fault {
	return outage(phase, at, which+" (SIGTERM)", func(s *stack) error { s.proc(which).stop(); return nil }, func(s *stack) error { return s.proc(which).start() })
}

var drills = []drill{
	{name: "authorize", faults: []fault{sigkill("authorize", 0.25, "gatewayd"), sigkill("authorize", 0.5, "gatewayd"), sigkill("authorize", 0.75, "gatewayd")}},
	{name: "capture", faults: []fault{sigkill("capture", 0.25, "gatewayd"), sigkill("capture", 0.5, "gatewayd"), sigkill("capture", 0.75, "gatewayd")}},
	{name: "refund", faults: []fault{sigkill("refund", 0.25, "gatewayd"), sigkill("refund", 0.5, "gatewayd"), sigkill("refund", 0.75, "gatewayd")}},
	{name: "vaultd-kill", faults: []fault{sigkill("authorize", 0.3, "vaultd"), sigkill("authorize", 0.65, "vaultd")}},
	{name: "vaultd-stop", faults: []fault{daemonOutage("authorize", 0.4, "vaultd")}},
	{name: "ledgerd-kill", faults: []fault{sigkill("authorize", 0.5, "ledgerd"), sigkill("capture", 0.5, "ledgerd"), sigkill("refund", 0.5, "ledgerd")}},
	// An outage across two phases: the captures and the first refunds are
	// queued in the gateway's outbox, and the ledger must take them in
	// order when it is back (a refund that reaches the ledger before its
	// payment's capture is refused with payment_not_captured; that refusal
	// is not final while the capture still waits in the outbox).
	{name: "ledgerd-stop", faults: []fault{
		{phase: "capture", at: 0.5, what: "ledgerd stopped (SIGTERM) at 50% of the capture requests", run: func(s *stack, _ *load, _ <-chan struct{}) error {
			s.proc("ledgerd").stop()
			return nil
		}},
		{phase: "refund", at: 0.5, what: "ledgerd started again at 50% of the refund requests", run: func(s *stack, _ *load, _ <-chan struct{}) error {
			return s.proc("ledgerd").start()
		}},
	}},
	{name: "redis-stop", opts: stackOptions{ownRedis: true}, faults: []fault{outage("authorize", 0.4, "Redis",
		func(s *stack) error { return runFault(func() { s.redis.Stop(errTB{}) }) },
		func(s *stack) error { return runFault(func() { s.redis.Start(errTB{}) }) })}},
	{name: "postgres-stop", opts: stackOptions{ownPostgres: true}, faults: []fault{outage("capture", 0.4, "PostgreSQL",
		func(s *stack) error { return runFault(func() { s.pg.Stop(errTB{}) }) },
		func(s *stack) error { return runFault(func() { s.pg.Start(errTB{}) }) })}},
}

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "%s must be an integer", key)
	return n
}

// TestDrill runs every crash-and-outage drill: see the package doc and the
// README's "Crash and outage drills".
func TestDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("crash drills: need HashiCorp Vault, PostgreSQL and Redis, and build the daemons")
	}
	n := envInt(t, "OBOL_DRILL_PAYMENTS", 100)
	phaseTimeout := time.Duration(envInt(t, "OBOL_DRILL_PHASE_SECONDS", 45)) * time.Second
	for _, d := range drills {
		t.Run(d.name, func(t *testing.T) {
			s := startStack(t, d.name, d.opts)
			runDrill(t, d, s, n, phaseTimeout)
		})
	}
}

// skipDrill is a fault's error when the deployment cannot run it (e.g. no
// Redis Cluster to kill a primary of): the drill stops and is skipped with
// the reason.
type skipDrill struct{ reason string }

func (e skipDrill) Error() string { return e.reason }

// faultRun is one fault as it ran.
type faultRun struct {
	line string
	at   time.Time
}

// runDrill runs the load on s with d's faults, counts, prints the table
// and checks the invariants. The load is the merchant's whole flow: every
// card tokenized at vaultd, then authorized, captured and partly refunded
// at the gateway, each write with its own Idempotency-Key.
func runDrill(t *testing.T, d drill, s *stack, n int, phaseTimeout time.Duration) {
	// What earlier drills left on a shared deployment is not counted.
	s.before = nil
	before := s.count(context.Background(), false)
	for _, err := range []error{before.acqErr, before.gwErr, before.ledErr, before.vaultErr} {
		require.NoError(t, err, "count what the deployment holds before the drill")
	}
	s.before = before
	leaks := testenv.NewLeakScanner()
	flows := make([]flow, n)
	cards := make([]card, n)
	year := time.Now().Year() + 3
	for i := range flows {
		cards[i] = card{pan: randomVisa(t), cvc: fmt.Sprintf("%03d", i%1000)}
		leaks.AddCard(cards[i].pan, cards[i].cvc)
		amount := int64(1000 + 10*i)
		flows[i] = flow{key: fmt.Sprintf("drill-%s-%s-%03d", d.name, s.run, i), amount: amount, refund: amount / 4}
	}
	l := newLoad(s.gwURL, s.sk)
	s.takeNotes()
	if d.setup != nil {
		require.NoError(t, d.setup(s), "drill %s: setup", d.name)
	}
	// A fault that cannot run on this deployment (skipDrill) skips the
	// drill, once its load has finished and settled: a request cut short
	// would still land after the next drill's count of what was there.
	var skip error
	var faults []faultRun
	var timings []string
	var faultMu sync.Mutex
	began := time.Now()
	for op, name := range opNames {
		reqs := make([]*request, n)
		for i, f := range flows {
			switch {
			case op == 0:
				body := fmt.Sprintf(`{"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":%q}}`, cards[i].pan, year, cards[i].cvc)
				reqs[i] = &request{op: name, base: s.vaultURL, path: "/v1/tokens", body: body, key: f.key + "-tokenize"}
			case f.ans[op-1].label != want[op-1] || (op == 1 && f.token == "") || (op > 1 && f.paymentID == ""):
				f.ans[op] = answer{label: "not sent (" + opNames[op-1] + " did not succeed)"}
				flows[i] = f
			case op == 1:
				body, _ := json.Marshal(map[string]any{"token": f.token, "amount": f.amount, "currency": "USD", "capture": false,
					"metadata": map[string]string{"drill_key": f.key}})
				reqs[i] = &request{op: name, path: "/v1/payments", body: string(body), key: f.key + "-authorize"}
			case op == 2:
				reqs[i] = &request{op: name, path: "/v1/payments/" + f.paymentID + "/capture", body: `{}`, key: f.key + "-capture"}
			default:
				reqs[i] = &request{op: name, path: "/v1/payments/" + f.paymentID + "/refunds", body: fmt.Sprintf(`{"amount":%d,"reason":"drill"}`, f.refund), key: f.key + "-refund"}
			}
		}
		sent := 0
		for _, r := range reqs {
			if r != nil {
				sent++
			}
		}
		l.newPhase()
		phaseDone := make(chan struct{})
		var fwg sync.WaitGroup
		for _, f := range d.faults {
			if f.phase != name {
				continue
			}
			trigger := l.afterSent(int64(f.at * float64(sent)))
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				select {
				case <-trigger:
				case <-phaseDone:
					faultMu.Lock()
					faults = append(faults, faultRun{line: "NOT RUN (the phase ended first): " + f.what})
					faultMu.Unlock()
					return
				}
				start := time.Now()
				err := f.run(s, l, phaseDone)
				line := fmt.Sprintf("%s (took %s)", f.what, time.Since(start).Round(time.Millisecond))
				faultMu.Lock()
				var sd skipDrill
				switch {
				case errors.As(err, &sd):
					skip = err
				case err != nil:
					line += ": REPAIR FAILED: " + err.Error()
				}
				faults = append(faults, faultRun{line: line, at: start})
				faultMu.Unlock()
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
		phaseBegan := time.Now()
		ans := l.phase(ctx, reqs)
		cancel()
		close(phaseDone)
		fwg.Wait()
		timings = append(timings, fmt.Sprintf("%s %s", name, time.Since(phaseBegan).Round(100*time.Millisecond)))
		for i, r := range reqs {
			if r == nil {
				continue
			}
			flows[i].ans[op] = ans[i]
			if ans[i].status != 200 {
				continue
			}
			var p struct{ ID, Token string }
			_ = json.Unmarshal(ans[i].body, &p)
			switch op {
			case 0:
				flows[i].token = p.Token
			case 1:
				flows[i].paymentID = p.ID
			}
		}
	}
	loadEnd := time.Now()

	// The time to recover from each fault, from the clients' timestamps.
	sort.Slice(faults, func(i, j int) bool { return faults[i].at.Before(faults[j].at) })
	var faultLines, recoveries []string
	var v []string
	for i, f := range faults {
		faultLines = append(faultLines, f.line)
		if f.at.IsZero() {
			continue
		}
		until := loadEnd
		if i+1 < len(faults) && !faults[i+1].at.IsZero() {
			until = faults[i+1].at
		}
		r := l.recovery(f.at, until)
		recoveries = append(recoveries, fmt.Sprintf("fault %d at +%s: %s", i+1, f.at.Sub(began).Round(100*time.Millisecond), r))
		if !r.recovered {
			v = append(v, fmt.Sprintf("fault %d: the clients never recovered: %s", i+1, r))
		}
	}
	for _, e := range l.clientErrors(!d.lb) {
		v = append(v, "a client saw an answer other than a 503 with an error code: "+e)
	}

	// The sweeper delivers the outbox and resolves abandoned payments.
	settleBegan := time.Now()
	settleErr := testenv.WaitFor(s.settle, func() error {
		left, err := s.leftovers(context.Background())
		if err == nil && !left.settled() {
			err = errors.New(left.String())
		}
		return err
	})
	timings = append(timings, fmt.Sprintf("settling %s", time.Since(settleBegan).Round(100*time.Millisecond)))
	if skip != nil {
		t.Skipf("drill %s: %v (its load ran without the fault)", d.name, skip)
	}
	c := s.count(context.Background(), true)
	v = append(v, c.violations(flows)...)
	if settleErr != nil && c.left.zero() {
		v = append(v, "not settled within the sweeper's interval: "+settleErr.Error())
	}
	if d.check != nil {
		v = append(v, d.check(s, c, flows)...)
	}
	for _, n := range s.takeNotes() {
		faultLines = append(faultLines, "  "+n)
	}
	table := c.table(d.name, l, flows, faultLines, timings, recoveries, v)
	t.Log(table)
	if path := os.Getenv("OBOL_DRILL_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = f.WriteString(table)
			_ = f.Close()
		}
	}

	// No card number in any daemon's output, however encoded.
	outputs := s.outputs()
	if s.storedFn != nil {
		st, err := s.storedFn(t)
		require.NoError(t, err, "read what the deployment stores, for the leak scan")
		for name, b := range st {
			outputs[name] = b
		}
	}
	names := make([]string, 0, len(outputs))
	for name := range outputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		leaks.Scan(name, outputs[name])
	}
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "card data in a daemon's output")
	if len(v) > 0 {
		for _, name := range names {
			if strings.HasPrefix(name, "database ") || strings.HasPrefix(name, "redis") {
				continue
			}
			t.Logf("--- %s output (last lines):\n%s", name, tail(string(outputs[name]), 12))
		}
	}
	assert.Zero(t, len(v), "violations of the money invariants (listed in the table above)")
}
