// Package engine is the risk engine: it enriches a PAN-free payment from the
// BIN and IP tables, computes velocity features (the feature store), evaluates
// the active CEL rule set, and records the decision for backtests. Rule
// sets are versioned and hot-reloaded (file and admin API); block- and
// allowlists are served from an in-memory snapshot. When the feature store
// is unavailable the merchant's fallback action applies, clearly marked:
// never a crash, never a silent allow. Outside PCI scope.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obolpay/obol/internal/periodic"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/refdata"
	"github.com/obolpay/obol/risk/rules"
)

// Config wires an engine.
type Config struct {
	Features features.Store
	State    State
	BINs     *refdata.BINTable
	IPs      *refdata.IPTable
	// Fallback maps merchant id to the action used when features are
	// unavailable; DefaultFallback applies otherwise (default "review").
	Fallback        map[string]string
	DefaultFallback string
	// RulesFile, when set, is watched and loaded on change.
	RulesFile string
	Now       func() time.Time
	Logger    *slog.Logger
}

// Stats count evaluations for metrics.
type Stats struct {
	Evaluations, DryRuns, Fallbacks, RuleErrors atomic.Int64
	// RejectedReloads counts rule files rejected by the watcher.
	RejectedReloads atomic.Int64
	// DroppedRecords counts decisions not recorded for backtests because
	// the recording queue was full (the decisions themselves were served).
	DroppedRecords atomic.Int64
}

// Engine evaluates payments.
type Engine struct {
	cfg    Config
	env    *rules.Env
	active atomic.Pointer[rules.Set]
	lists  atomic.Pointer[map[string]map[string]bool]
	// listGen orders list reads; listMu/listStored keep an older read from
	// replacing a newer snapshot (a background refresh racing an API write).
	listGen    atomic.Int64
	listMu     sync.Mutex
	listStored int64
	log        *slog.Logger
	putMu      sync.Mutex
	// recq feeds the background decision recorder (see recordLoop).
	recq chan recordItem
	file struct {
		mod  time.Time
		size int64
	}
	Stats Stats
}

// State is the engine's rule-set and list state (what the RPC layer reads
// and edits through).
func (e *Engine) State() State { return e.cfg.State }

type listSnapshot struct{ e *Engine }

func (l listSnapshot) Contains(list, v string) bool {
	m := l.e.lists.Load()
	return m != nil && (*m)[list][v]
}

// New builds an engine and loads the rule set: the rules file when given
// (a bad file fails here, with located errors), else the stored active set,
// else the shipped default rules.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultFallback == "" {
		cfg.DefaultFallback = rules.Review
	}
	if cfg.BINs == nil {
		cfg.BINs = refdata.SampleBINs()
	}
	if cfg.IPs == nil {
		cfg.IPs = refdata.SampleIPs()
	}
	if a := cfg.DefaultFallback; a != rules.Review && a != rules.Block && a != rules.Challenge && a != rules.Allow {
		return nil, fmt.Errorf("default fallback action %q: must be allow, review, challenge or block", a)
	}
	for m, a := range cfg.Fallback {
		if a != rules.Review && a != rules.Block && a != rules.Challenge && a != rules.Allow {
			return nil, fmt.Errorf("fallback action %q for merchant %s: must be allow, review, challenge or block", a, m)
		}
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, recq: make(chan recordItem, 8192)}
	env, err := rules.NewEnv(listSnapshot{e})
	if err != nil {
		return nil, err
	}
	e.env = env
	empty := map[string]map[string]bool{}
	e.lists.Store(&empty)
	if err := e.RefreshLists(ctx); err != nil {
		return nil, fmt.Errorf("risk lists: %w", err)
	}
	switch {
	case cfg.RulesFile != "":
		if _, err := e.ReloadFile(ctx); err != nil {
			return nil, err
		}
	default:
		rec, err := cfg.State.ActiveRuleSet(ctx)
		switch {
		case err == nil:
			set, cerr := e.env.Compile([]byte(rec.YAML))
			if cerr != nil {
				return nil, fmt.Errorf("stored rule set %s: %w", rec.Version, cerr)
			}
			e.active.Store(set)
		case errors.Is(err, ErrNotFound):
			if _, err := e.PutRuleSet(ctx, rules.DefaultYAML(), "default"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("risk state: %w", err)
		}
	}
	return e, nil
}

// Active is the active rule set.
func (e *Engine) Active() *rules.Set { return e.active.Load() }

// PutRuleSet compiles a rule set and, if it is valid, records it as a new
// version and makes it active. A bad set changes nothing.
func (e *Engine) PutRuleSet(ctx context.Context, yaml []byte, source string) (*rules.Set, error) {
	set, err := e.env.Compile(yaml)
	if err != nil {
		return nil, err
	}
	e.putMu.Lock()
	defer e.putMu.Unlock()
	if cur := e.active.Load(); cur != nil && cur.Version == set.Version {
		return cur, nil
	}
	if err := e.cfg.State.PutRuleSet(ctx, RuleSetRecord{Version: set.Version, YAML: string(yaml), Source: source, Rules: len(set.Rules), CreatedAt: e.cfg.Now().UTC()}); err != nil {
		return nil, fmt.Errorf("store rule set: %w", err)
	}
	e.active.Store(set)
	e.log.Info("risk rule set active", "version", set.Version, "rules", len(set.Rules), "source", source)
	return set, nil
}

// ReloadFile loads the rules file if it changed; a bad file is rejected whole
// and the active set stays. It reports whether a new set became active.
func (e *Engine) ReloadFile(ctx context.Context) (bool, error) {
	st, err := os.Stat(e.cfg.RulesFile)
	if err != nil {
		return false, fmt.Errorf("rules file: %w", err)
	}
	if st.ModTime().Equal(e.file.mod) && st.Size() == e.file.size && e.active.Load() != nil {
		return false, nil
	}
	b, err := os.ReadFile(e.cfg.RulesFile)
	if err != nil {
		return false, fmt.Errorf("rules file: %w", err)
	}
	before := e.active.Load()
	set, err := e.PutRuleSet(ctx, b, "file:"+e.cfg.RulesFile)
	if err != nil {
		return false, fmt.Errorf("rules file %s: %w", e.cfg.RulesFile, err)
	}
	e.file.mod, e.file.size = st.ModTime(), st.Size()
	return before == nil || before.Version != set.Version, nil
}

// SyncActive adopts a set another replica made active through the API. It
// holds putMu from the read to the store, so a read that began before this
// replica's own PutRuleSet cannot make the older set active again after it.
func (e *Engine) SyncActive(ctx context.Context) error {
	e.putMu.Lock()
	defer e.putMu.Unlock()
	rec, err := e.cfg.State.ActiveRuleSet(ctx)
	if err != nil {
		return err
	}
	if cur := e.active.Load(); cur != nil && cur.Version == rec.Version {
		return nil
	}
	set, err := e.env.Compile([]byte(rec.YAML))
	if err != nil {
		return fmt.Errorf("stored rule set %s: %w", rec.Version, err)
	}
	e.active.Store(set)
	return nil
}

// RefreshLists reloads the list snapshot from the state. A read that began
// before another one never replaces that one's (newer) snapshot.
func (e *Engine) RefreshLists(ctx context.Context) error {
	gen := e.listGen.Add(1)
	all, err := e.cfg.State.Lists(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]map[string]bool, len(all))
	for n, vs := range all {
		set := make(map[string]bool, len(vs))
		for _, v := range vs {
			set[v] = true
		}
		m[n] = set
	}
	e.listMu.Lock()
	defer e.listMu.Unlock()
	if gen > e.listStored {
		e.listStored = gen
		e.lists.Store(&m)
	}
	return nil
}

// Watch keeps rules and lists current until ctx ends: the rules file (when
// configured), the active version in the shared state, and list snapshots;
// it also runs the background decision recorder.
func (e *Engine) Watch(ctx context.Context, every time.Duration) {
	go e.recordLoop(ctx)
	periodic.Run(ctx, every, func(ctx context.Context) {
		if e.cfg.RulesFile != "" {
			if _, err := e.ReloadFile(ctx); err != nil {
				e.Stats.RejectedReloads.Add(1)
				e.log.Error("rules file rejected; the previous rule set stays active", "err", err)
			}
		} else if err := e.SyncActive(ctx); err != nil && !errors.Is(err, ErrNotFound) {
			e.log.Warn("could not sync the active rule set", "err", err)
		}
		if err := e.RefreshLists(ctx); err != nil {
			e.log.Warn("could not refresh risk lists; using the previous snapshot", "err", err)
		}
	})
}

// Input builds the rule input: the payment enriched from the BIN and IP
// tables (features are added by Evaluate).
func (e *Engine) Input(p *riskv1.Payment) *riskv1.RuleInput {
	rp := &riskv1.RulePayment{
		MerchantId: p.GetMerchantId(), Amount: p.GetAmount(), Currency: strings.ToUpper(p.GetCurrency()),
		Bin: p.GetBin(), Brand: p.GetBrand(), Fingerprint: p.GetFingerprint(), Ip: p.GetCustomerIp(),
		BillingCountry: strings.ToUpper(p.GetBillingCountry()), EmailHash: p.GetEmailHash(), DeviceId: p.GetDeviceId(),
		CvcCheck: p.GetCvcCheck(), AvsCheck: p.GetAvsCheck(),
	}
	if b, ok := e.cfg.BINs.Lookup(p.GetBin()); ok {
		rp.CardType, rp.CardCountry = b.Type, b.Country
		if rp.Brand == "" {
			rp.Brand = b.Brand
		}
	}
	rp.IpCountry = e.cfg.IPs.Country(p.GetCustomerIp())
	return &riskv1.RuleInput{Payment: rp}
}

func decisionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "rdec_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// Evaluate scores a payment. Without dry, the payment is counted in the
// velocity features and the decision is recorded for backtests.
func (e *Engine) Evaluate(ctx context.Context, p *riskv1.Payment, dry bool) *riskv1.Decision {
	if dry {
		e.Stats.DryRuns.Add(1)
	} else {
		e.Stats.Evaluations.Add(1)
	}
	in := e.Input(p)
	set := e.active.Load()
	d := &riskv1.Decision{DecisionId: decisionID(), RuleSetVersion: set.Version, DryRun: dry}
	f, err := e.cfg.Features.Observe(ctx, features.Observation{
		Merchant: p.GetMerchantId(), Fingerprint: p.GetFingerprint(), IP: p.GetCustomerIp(), EmailHash: p.GetEmailHash(),
		Device: p.GetDeviceId(), Amount: p.GetAmount(), Now: e.cfg.Now(), PaymentID: p.GetPaymentId(),
	}, !dry)
	if err != nil {
		e.Stats.Fallbacks.Add(1)
		action := e.cfg.DefaultFallback
		if a, ok := e.cfg.Fallback[p.GetMerchantId()]; ok {
			action = a
		}
		e.log.Error("velocity store unavailable: applying the fallback action", "merchant_id", p.GetMerchantId(), "action", action, "err", err)
		d.Action, d.Fallback, d.FallbackReason, d.Input = action, true, "velocity store unavailable", in
		return d
	}
	in.Card, in.Merchant, in.Ip, in.Email, in.Device, in.CardAgeSeconds = f.Card, f.Merchant, f.IP, f.Email, f.Device, f.CardAgeSeconds
	out := set.Evaluate(in)
	e.Stats.RuleErrors.Add(int64(out.Errors))
	d.Action, d.Score, d.Input = out.Action, int32(out.Score), in
	for _, m := range out.Matched {
		d.Rules = append(d.Rules, &riskv1.MatchedRule{Name: m.Rule.Name, Action: m.Rule.Action, Priority: int32(m.Rule.Priority), Mode: m.Rule.Mode, Reason: m.Rule.Description, Score: int32(m.Rule.Score)})
	}
	if !dry {
		select {
		case e.recq <- recordItem{d: d}:
		default:
			e.Stats.DroppedRecords.Add(1)
		}
	}
	return d
}

type recordItem struct {
	d     *riskv1.Decision
	flush chan struct{} // a flush request: closed once everything before it is written
}

// recordLoop writes recorded decisions in batches (one pipeline each), off
// the request path, until ctx ends.
func (e *Engine) recordLoop(ctx context.Context) {
	batch := make([]*riskv1.Decision, 0, 256)
	for {
		var first recordItem
		select {
		case <-ctx.Done():
			return
		case first = <-e.recq:
		}
		var flushes []chan struct{}
		add := func(it recordItem) {
			if it.flush != nil {
				flushes = append(flushes, it.flush)
			} else {
				batch = append(batch, it.d)
			}
		}
		add(first)
	fill:
		for len(batch) < cap(batch) {
			select {
			case it := <-e.recq:
				add(it)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			if err := e.cfg.State.RecordDecisions(ctx, batch); err != nil && ctx.Err() == nil {
				e.log.Warn("could not record decisions for backtests", "err", err, "count", len(batch))
			}
		}
		for _, f := range flushes {
			close(f)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// flushRecords waits until decisions queued so far are written (if the
// recorder is running).
func (e *Engine) flushRecords(ctx context.Context) {
	f := make(chan struct{})
	select {
	case e.recq <- recordItem{flush: f}:
	case <-ctx.Done():
		return
	}
	select {
	case <-f:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
}

// Backtest replays the most recent recorded decisions through a candidate
// rule set (without touching counters) and counts changed outcomes.
func (e *Engine) Backtest(ctx context.Context, yaml []byte, limit int) (*riskv1.BacktestResponse, error) {
	set, err := e.env.Compile(yaml)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	e.flushRecords(ctx)
	ds, err := e.cfg.State.RecentDecisions(ctx, limit)
	if err != nil {
		return nil, err
	}
	resp := &riskv1.BacktestResponse{CandidateVersion: set.Version}
	changes := map[[2]string]int64{}
	for _, d := range ds {
		if d.GetFallback() || d.GetInput() == nil {
			continue
		}
		resp.Replayed++
		out := set.Evaluate(d.GetInput())
		if out.Action != d.GetAction() {
			resp.Changed++
			changes[[2]string{d.GetAction(), out.Action}]++
		}
	}
	for k, n := range changes {
		resp.Changes = append(resp.Changes, &riskv1.OutcomeChange{From: k[0], To: k[1], Count: n})
	}
	sortChanges(resp.Changes)
	return resp, nil
}

func sortChanges(cs []*riskv1.OutcomeChange) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && (cs[j].Count > cs[j-1].Count || (cs[j].Count == cs[j-1].Count && cs[j].From+cs[j].To < cs[j-1].From+cs[j-1].To)); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}
