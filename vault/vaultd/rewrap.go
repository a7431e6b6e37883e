package vaultd

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/internal/periodic"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/rotation"
	"github.com/obolpay/obol/vault/keys/transit"
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
	record   func(context.Context, audit.Event) error
	// refingerprint rewrites fingerprints after a secret rotation (nil: off).
	refingerprint func(ctx context.Context) (RefingerprintResult, error)
	// reencrypt re-seals old cards and destroys unused DEKs (nil: off), at
	// most once per reencryptEvery.
	reencrypt      func(ctx context.Context) (ReencryptResult, error)
	reencryptEvery time.Duration
	lastReencrypt  time.Time

	mu      sync.Mutex
	running bool
	again   bool
}

func newRewrapper(ks rotation.KeyService, st rotation.DEKStore, log *slog.Logger, enabled bool, rec func(context.Context, audit.Event) error) *rewrapper {
	return &rewrapper{ks: ks, st: st, log: log, enabled: enabled, progress: &rotation.Progress{}, record: rec}
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
				if err := r.record(ctx, audit.Event{Actor: "vaultd", Action: audit.ActionRewrap, KEKVersion: res.TargetVersion, Detail: fmt.Sprintf("rewrapped=%d skipped=%d", res.Rewrapped, res.Skipped)}); err != nil {
					r.log.Error("audit: could not record the rewrap", "err", err)
				}
			}
			if r.refingerprint != nil && ctx.Err() == nil {
				fr, err := r.refingerprint(ctx)
				switch {
				case err != nil && ctx.Err() == nil:
					r.log.Error("refingerprint failed; it resumes on the next poll, or run `obol keys refingerprint`", "err", err)
				case fr.Rewritten > 0:
					r.log.Info("refingerprint done", "version", fr.Version, "rewritten", fr.Rewritten)
					if err := r.record(ctx, audit.Event{Actor: "vaultd", Action: audit.ActionRefingerprint, Detail: fmt.Sprintf("version=%d rewritten=%d skipped=%d", fr.Version, fr.Rewritten, fr.Skipped)}); err != nil {
						r.log.Error("audit: could not record the refingerprint", "err", err)
					}
				}
			}
			if r.reencrypt != nil && ctx.Err() == nil && time.Since(r.lastReencrypt) >= r.reencryptEvery {
				r.lastReencrypt = time.Now()
				rr, err := r.reencrypt(ctx)
				switch {
				case err != nil && ctx.Err() == nil:
					r.log.Error("re-encryption failed; it resumes on its next run, or run `obol keys reencrypt`", "err", err)
				case rr.Reencrypted > 0 || rr.Destroyed > 0:
					r.log.Info("re-encryption done", "reencrypted", rr.Reencrypted, "destroyed_deks", rr.Destroyed)
					if err := r.record(ctx, audit.Event{Actor: "vaultd", Action: audit.ActionReencrypt, Detail: fmt.Sprintf("reencrypted=%d skipped=%d destroyed_deks=%d", rr.Reencrypted, rr.Skipped, rr.Destroyed)}); err != nil {
						r.log.Error("audit: could not record the re-encryption", "err", err)
					}
				}
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

// anchorLoop writes the audit chain's head to Vault whenever it moves, so
// that rewriting history in PostgreSQL is detectable (obol audit verify).
func anchorLoop(ctx context.Context, st interface {
	AuditHead(ctx context.Context) (audit.Event, error)
}, w interface {
	WriteAuditAnchor(ctx context.Context, a transit.AuditAnchor) error
}, every time.Duration, log *slog.Logger) {
	var anchored int64
	periodic.Run(ctx, every, func(ctx context.Context) {
		head, err := st.AuditHead(ctx)
		if err != nil || head.Seq == anchored {
			return
		}
		a := transit.AuditAnchor{Seq: head.Seq, Hash: hex.EncodeToString(head.Hash), At: time.Now().UTC().Format(time.RFC3339)}
		if err := w.WriteAuditAnchor(ctx, a); err != nil {
			if ctx.Err() == nil {
				log.Error("audit: could not write the anchor to Vault", "err", err, "seq", head.Seq)
			}
			return
		}
		anchored = head.Seq
	})
}
