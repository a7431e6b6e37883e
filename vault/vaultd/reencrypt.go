package vaultd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store"
)

// ReencryptResult counts a re-encryption run.
type ReencryptResult struct {
	Reencrypted int
	Skipped     int // changed or deleted meanwhile
	Destroyed   int64
	Elapsed     time.Duration
}

// DEKDestroyMargin is how long after its creation a DEK may still protect a
// CVC: it seals for at most its max age, and a CVC lives at most 24h.
func DEKDestroyMargin(dekMaxAge time.Duration) time.Duration {
	if dekMaxAge <= 0 {
		dekMaxAge = time.Hour
	}
	return dekMaxAge + service.MaxCVCTTL
}

// ReencryptOptions configure a run.
type ReencryptOptions struct {
	// OlderThan selects cards under DEKs created longer ago than this.
	OlderThan time.Duration
	// Destroy deletes DEKs that no token uses any more, once they are older
	// than DEKDestroyMargin too (a running vaultd may still seal under a
	// younger DEK, and a CVC may still reference it).
	Destroy bool
	// DEKMaxAge is vaultd's DEK max age (default 1h), for the margin.
	DEKMaxAge time.Duration
	Batch     int
	Now       func() time.Time
}

// Reencrypt re-seals every card stored under an old DEK with the envelope's
// current DEK (compare-and-set per token, so it is safe next to live traffic
// and resumable: the data is the progress), then optionally deletes the
// wrapped form of old DEKs that no token uses any more, which crypto-erases
// anything they protected. env must be a fresh envelope, so that its current
// DEK is newer than the cutoff. Plaintext exists only in memory, per card.
func Reencrypt(ctx context.Context, env *envelope.Envelope, st store.Store, opts ReencryptOptions, report func(ReencryptResult)) (ReencryptResult, error) {
	if opts.OlderThan <= 0 {
		return ReencryptResult{}, errors.New("reencrypt: OlderThan must be positive")
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
		destroyBefore = now.Add(-DEKDestroyMargin(opts.DEKMaxAge))
		if cutoff.Before(destroyBefore) {
			destroyBefore = cutoff
		}
	}
	start := time.Now()
	var res ReencryptResult
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
