// Package rewrap rewraps stored data keys after the KEK rotates: every
// wrapped DEK under an older KEK version is sent through Vault's batched
// transit/rewrap and written back with compare-and-set. Cost is O(#DEKs),
// not O(#cards); the card ciphertexts are untouched. The job is resumable:
// its progress is the data itself (each DEK's KEK version), so after a crash
// it simply runs again. It never sees a PAN or a plaintext key.
package rewrap

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store"
)

// KeyService rewraps in batches and knows the latest KEK version.
type KeyService interface {
	LatestVersion(ctx context.Context) (int, error)
	RewrapBatch(ctx context.Context, wrapped []string) ([]string, error)
}

var _ KeyService = (*transit.Client)(nil)

// DEKStore is the part of the vault store the job uses.
type DEKStore interface {
	DEKsBelowVersion(ctx context.Context, version int, after string, limit int) ([]envelope.DEKRecord, error)
	RewrapDEK(ctx context.Context, id, oldWrapped, newWrapped string, newVersion int) error
	KeyStats(ctx context.Context) ([]store.KeyStat, error)
}

// Progress counts the job's work; safe to read while it runs (metrics).
type Progress struct {
	Rewrapped atomic.Int64 // DEKs rewrapped by this process
	Skipped   atomic.Int64 // DEKs changed by someone else meanwhile
	Runs      atomic.Int64
}

// Result is one run's outcome.
type Result struct {
	TargetVersion int
	Rewrapped     int
	Skipped       int
	Elapsed       time.Duration
}

// Run rewraps every DEK below the KEK's latest version, batchSize at a
// time (default 100), calling report after each batch when not nil.
func Run(ctx context.Context, ks KeyService, st DEKStore, batchSize int, p *Progress, report func(Result)) (Result, error) {
	if batchSize <= 0 {
		batchSize = 100
	}
	if p == nil {
		p = &Progress{}
	}
	start := time.Now()
	latest, err := ks.LatestVersion(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("rewrap: latest KEK version: %w", err)
	}
	p.Runs.Add(1)
	res := Result{TargetVersion: latest}
	// Passes repeat until one finds nothing: a DEK generated under the old
	// version while a pass ran (a data key in flight during the rotation)
	// may land behind the pass's cursor.
	for pass := 0; ; pass++ {
		n, err := rewrapPass(ctx, ks, st, latest, batchSize, p, &res, start, report)
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func rewrapPass(ctx context.Context, ks KeyService, st DEKStore, latest, batchSize int, p *Progress, res *Result, start time.Time, report func(Result)) (int, error) {
	seen := 0
	after := ""
	for {
		deks, err := st.DEKsBelowVersion(ctx, latest, after, batchSize)
		if err != nil {
			return seen, fmt.Errorf("rewrap: list DEKs: %w", err)
		}
		if len(deks) == 0 {
			return seen, nil
		}
		seen += len(deks)
		old := make([]string, len(deks))
		for i, d := range deks {
			old[i] = d.Wrapped
		}
		fresh, err := ks.RewrapBatch(ctx, old)
		if err != nil {
			return seen, fmt.Errorf("rewrap: %w", err)
		}
		for i, d := range deks {
			v := transit.WrappedVersion(fresh[i])
			if v == 0 {
				v = latest
			}
			switch err := st.RewrapDEK(ctx, d.ID, d.Wrapped, fresh[i], v); {
			case err == nil:
				res.Rewrapped++
				p.Rewrapped.Add(1)
			case errors.Is(err, store.ErrNotFound):
				res.Skipped++ // rewrapped concurrently by another job
				p.Skipped.Add(1)
			default:
				return seen, fmt.Errorf("rewrap: store DEK %s: %w", d.ID, err)
			}
		}
		after = deks[len(deks)-1].ID
		res.Elapsed = time.Since(start)
		if report != nil {
			report(*res)
		}
	}
}
