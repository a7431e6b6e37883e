// Package reencrypt is the re-encryption job (`obol keys reencrypt`, and
// vaultd's background run): it re-seals cards stored under old data keys
// with a current one, then destroys the wrapped form of data keys that
// protect nothing any more (crypto-erase). Resumable: the data is the
// progress. Plaintext exists only in memory, one card at a time. PCI zone.
package reencrypt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/vault/audit"

	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store"
)

// Result counts a run.
type Result struct {
	Reencrypted int
	Skipped     int // changed or deleted meanwhile
	Destroyed   int64
	Elapsed     time.Duration
}

// DestroyMargin is how long after its creation a DEK may still protect a
// CVC: it seals for at most its max age, and a CVC lives at most 24h.
func DestroyMargin(dekMaxAge time.Duration) time.Duration {
	if dekMaxAge <= 0 {
		dekMaxAge = time.Hour
	}
	return dekMaxAge + service.MaxCVCTTL
}

// Options configure a run.
type Options struct {
	// OlderThan selects cards under DEKs created longer ago than this.
	OlderThan time.Duration
	// Destroy deletes DEKs that no token uses any more, once they are older
	// than DestroyMargin too (a running vaultd may still seal under a
	// younger DEK, and a CVC may still reference it).
	Destroy bool
	// DEKMaxAge is vaultd's DEK max age (default 1h), for the margin.
	DEKMaxAge time.Duration
	Batch     int
	Now       func() time.Time
}

// Run re-seals every card stored under an old DEK with the envelope's
// current DEK (compare-and-set per token, so it is safe next to live traffic
// and resumable: the data is the progress), then optionally deletes the
// wrapped form of old DEKs that no token uses any more, which crypto-erases
// anything they protected. env must be a fresh envelope, so that its current
// DEK is newer than the cutoff. Plaintext exists only in memory, per card.
func Run(ctx context.Context, env *envelope.Envelope, st store.Store, opts Options, report func(Result)) (Result, error) {
	if opts.OlderThan <= 0 {
		return Result{}, errors.New("reencrypt: OlderThan must be positive")
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	cutoff := now.Add(-opts.OlderThan)
	var destroyBefore time.Time
	if opts.Destroy {
		destroyBefore = now.Add(-DestroyMargin(opts.DEKMaxAge))
		if cutoff.Before(destroyBefore) {
			destroyBefore = cutoff
		}
	}
	start := time.Now()
	var res Result
	after := ""
	for {
		recs, err := st.TokensUnderOldDEKs(ctx, cutoff, after, batch)
		if err != nil {
			return res, fmt.Errorf("reencrypt: list: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			aad := envelope.AAD{Purpose: "card", Merchant: r.MerchantID, Token: r.Token}
			plain, err := env.Open(ctx, r.DEKID, aad, r.Ciphertext)
			if err != nil {
				return res, fmt.Errorf("reencrypt: open %s: %w", r.Token, err)
			}
			dekID, ct, err := env.Seal(ctx, aad, plain)
			clear(plain)
			if err != nil {
				return res, fmt.Errorf("reencrypt: seal %s: %w", r.Token, err)
			}
			switch err := st.ReplaceCiphertext(ctx, r.Token, r.DEKID, dekID, ct); {
			case err == nil:
				res.Reencrypted++
			case errors.Is(err, store.ErrNotFound):
				res.Skipped++
			default:
				return res, fmt.Errorf("reencrypt: store %s: %w", r.Token, err)
			}
		}
		after = recs[len(recs)-1].Token
		res.Elapsed = time.Since(start)
		if report != nil {
			report(res)
		}
	}
	if !destroyBefore.IsZero() {
		n, err := st.DestroyDEKs(ctx, destroyBefore)
		if err != nil {
			return res, fmt.Errorf("reencrypt: destroy DEKs: %w", err)
		}
		res.Destroyed = n
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Job is the job as vaultd runs it (OBOL_REENCRYPT_OLDER_THAN): after a
// rewrap, at most once per every. Its Run is not safe for concurrent calls
// (rewrap.Auto runs its jobs one at a time).
func Job(env *envelope.Envelope, st store.Store, opts Options, every time.Duration) rewrap.Job {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	var last time.Time
	return rewrap.Job{Name: "re-encryption", Hint: "it resumes on its next run, or run `obol keys reencrypt`", Run: func(ctx context.Context) (audit.Event, []any, error) {
		if !last.IsZero() && now().Sub(last) < every {
			return audit.Event{}, nil, nil
		}
		last = now()
		res, err := Run(ctx, env, st, opts, nil)
		attrs := []any{"reencrypted", res.Reencrypted, "destroyed_deks", res.Destroyed}
		if err != nil || (res.Reencrypted == 0 && res.Destroyed == 0) {
			return audit.Event{}, attrs, err
		}
		return audit.Event{Action: audit.ActionReencrypt, Detail: fmt.Sprintf("reencrypted=%d skipped=%d destroyed_deks=%d", res.Reencrypted, res.Skipped, res.Destroyed)}, attrs, nil
	}}
}
