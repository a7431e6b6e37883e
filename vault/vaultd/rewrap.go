package vaultd

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/vault/keys/rotation"
	"github.com/obolpay/obol/vault/service"
)

// rewrapper runs the rewrap job in the background, one run at a time; a
// trigger during a run schedules exactly one more run.
type rewrapper struct {
	ks       rotation.KeyService
	st       rotation.DEKStore
	log      *slog.Logger
	enabled  bool
	progress *rotation.Progress

	mu      sync.Mutex
	running bool
	again   bool
}

func newRewrapper(ks rotation.KeyService, st rotation.DEKStore, log *slog.Logger, enabled bool) *rewrapper {
	return &rewrapper{ks: ks, st: st, log: log, enabled: enabled, progress: &rotation.Progress{}}
}

func (r *rewrapper) trigger(ctx context.Context) {
	if !r.enabled {
		return
	}
	r.mu.Lock()
	if r.running {
		r.again = true
		r.mu.Unlock()
		return
	}
	r.running = true
	r.mu.Unlock()
	go func() {
		for {
			res, err := rotation.Rewrap(ctx, r.ks, r.st, 100, r.progress, nil)
			switch {
			case err != nil && ctx.Err() == nil:
				r.log.Error("rewrap failed; it resumes on the next rotation or restart, or run `obol keys rewrap`", "err", err, "rewrapped", res.Rewrapped)
			case res.Rewrapped > 0:
				r.log.Info("rewrap done", "kek_version", res.TargetVersion, "rewrapped", res.Rewrapped, "skipped", res.Skipped, "elapsed", res.Elapsed.String())
			}
			r.mu.Lock()
			if !r.again || ctx.Err() != nil {
				r.running = false
				r.mu.Unlock()
				return
			}
			r.again = false
			r.mu.Unlock()
		}
	}()
}

func (r *rewrapper) collectors(svc *service.Service) []prometheus.Collector {
	p := r.progress
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_rewrapped_deks_total", Help: "Wrapped data keys rewrapped to the latest KEK version."}, func() float64 { return float64(p.Rewrapped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_rewrap_runs_total", Help: "Rewrap job runs."}, func() float64 { return float64(p.Runs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_kek_latest_version", Help: "Latest KEK version seen in Vault."}, func() float64 { return float64(svc.KEKVersion()) }),
	}
}
