package rewrap

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/vault/audit"
)

// Job is a key job as Auto runs it: Run does one pass and returns the
// audit event of what it did (Action "" when it did nothing) and the log
// attributes of its result. A failure is logged with Hint (how to run the
// job by hand) and resumes on the next pass.
type Job struct {
	Name, Hint string
	Run        func(ctx context.Context) (audit.Event, []any, error)
}

// Auto runs the rewrap job in the background after each KEK rotation
// (vaultd), one run at a time: a trigger during a run schedules exactly
// one more. After each run it runs Then, in order (the refingerprint and
// re-encryption jobs), unless ctx ended. Every job's outcome is logged, and
// what it did is recorded in the audit trail.
type Auto struct {
	// Then are the jobs that follow each rewrap run.
	Then []Job

	ks       KeyService
	st       DEKStore
	log      *slog.Logger
	enabled  bool
	progress *Progress
	record   func(context.Context, audit.Event) error

	mu      sync.Mutex
	running bool
	again   bool
}

// NewAuto returns a background rewrapper; when enabled is false, Trigger
// does nothing (then run `obol keys rewrap`). record writes the audit
// event of a run that rewrapped something.
func NewAuto(ks KeyService, st DEKStore, log *slog.Logger, enabled bool, record func(context.Context, audit.Event) error) *Auto {
	return &Auto{ks: ks, st: st, log: log, enabled: enabled, progress: &Progress{}, record: record}
}

// Progress counts the background job's work.
func (a *Auto) Progress() *Progress { return a.progress }

// Trigger starts a run, or schedules one more after the current run.
func (a *Auto) Trigger(ctx context.Context) {
	if !a.enabled {
		return
	}
	a.mu.Lock()
	if a.running {
		a.again = true
		a.mu.Unlock()
		return
	}
	a.running = true
	a.mu.Unlock()
	go func() {
		for {
			a.run(ctx, a.rewrap())
			for _, then := range a.Then {
				if ctx.Err() == nil {
					a.run(ctx, then)
				}
			}
			a.mu.Lock()
			if !a.again || ctx.Err() != nil {
				a.running = false
				a.mu.Unlock()
				return
			}
			a.again = false
			a.mu.Unlock()
		}
	}()
}

// rewrap is the rewrap job itself.
func (a *Auto) rewrap() Job {
	return Job{Name: "rewrap", Hint: "it resumes on the next rotation or restart, or run `obol keys rewrap`", Run: func(ctx context.Context) (audit.Event, []any, error) {
		res, err := Run(ctx, a.ks, a.st, 100, a.progress, nil)
		attrs := []any{"kek_version", res.TargetVersion, "rewrapped", res.Rewrapped, "skipped", res.Skipped, "elapsed", res.Elapsed.String()}
		if err != nil || res.Rewrapped == 0 {
			return audit.Event{}, attrs, err
		}
		return audit.Event{Action: audit.ActionRewrap, KEKVersion: res.TargetVersion, Detail: fmt.Sprintf("rewrapped=%d skipped=%d", res.Rewrapped, res.Skipped)}, attrs, nil
	}}
}

// run runs one pass of j, logs its outcome and records what it did.
func (a *Auto) run(ctx context.Context, j Job) {
	ev, attrs, err := j.Run(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.Error(j.Name+" failed; "+j.Hint, append(attrs, "err", err)...)
	case err == nil && ev.Action != "":
		a.log.Info(j.Name+" done", attrs...)
		ev.Actor = "vaultd"
		if err := a.record(ctx, ev); err != nil {
			a.log.Error("audit: could not record the "+j.Name, "err", err)
		}
	}
}

// Collectors are the job's metrics; kekVersion is the latest KEK version
// the vault has seen.
func (a *Auto) Collectors(kekVersion func() int) []prometheus.Collector {
	p := a.progress
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_rewrapped_deks_total", Help: "Wrapped data keys rewrapped to the latest KEK version."}, func() float64 { return float64(p.Rewrapped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_rewrap_runs_total", Help: "Rewrap job runs."}, func() float64 { return float64(p.Runs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_kek_latest_version", Help: "Latest KEK version seen in Vault."}, func() float64 { return float64(kekVersion()) }),
	}
}
