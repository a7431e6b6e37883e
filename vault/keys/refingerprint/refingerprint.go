// Package refingerprint is the refingerprint job (`obol keys
// refingerprint`, and vaultd's run after a fingerprint secret rotation): it
// rewrites every fingerprint computed under an older secret version.
// Resumable: the data is the progress. It opens each card in memory only,
// to HMAC its number. PCI zone.
package refingerprint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/vault/audit"

	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/store"
)

// Result counts a run.
type Result struct {
	Version   int
	Rewritten int
	Skipped   int
	Elapsed   time.Duration
}

// Run rewrites the fingerprint of every token computed under an
// older version of the fingerprint secret (after a rotation), so that
// lookups no longer need the previous version. Compare-and-set per token:
// safe next to live traffic, resumable (the data is the progress). It opens
// each card in memory only, to HMAC its number.
func Run(ctx context.Context, env *envelope.Envelope, st store.Store, batch int) (Result, error) {
	if batch <= 0 {
		batch = 100
	}
	start := time.Now()
	latest, err := env.FingerprintVersion(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Version: latest}
	after := ""
	for {
		recs, err := st.TokensWithFingerprintBelow(ctx, latest, after, batch)
		if err != nil {
			return res, fmt.Errorf("refingerprint: list: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			plain, err := env.Open(ctx, r.DEKID, envelope.AAD{Purpose: "card", Merchant: r.MerchantID, Token: r.Token}, r.Ciphertext)
			if err != nil {
				return res, fmt.Errorf("refingerprint: open %s: %w", r.Token, err)
			}
			c, err := card.Decode(plain)
			clear(plain)
			if err != nil {
				return res, fmt.Errorf("refingerprint: decode %s: %w", r.Token, err)
			}
			fp, err := env.FingerprintAt(ctx, latest, r.MerchantID, c.Number.RevealDigits())
			c.Wipe()
			if err != nil {
				return res, err
			}
			switch err := st.UpdateFingerprint(ctx, r.Token, r.Fingerprint, fp, latest); {
			case err == nil:
				res.Rewritten++
			case errors.Is(err, store.ErrNotFound):
				res.Skipped++
			default:
				return res, fmt.Errorf("refingerprint: store %s: %w", r.Token, err)
			}
		}
		after = recs[len(recs)-1].Token
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Job is the job as vaultd runs it after each rewrap (a rotation of the
// fingerprint secret is noticed like one of the KEK).
func Job(env *envelope.Envelope, st store.Store) rewrap.Job {
	return rewrap.Job{Name: "refingerprint", Hint: "it resumes on the next poll, or run `obol keys refingerprint`", Run: func(ctx context.Context) (audit.Event, []any, error) {
		res, err := Run(ctx, env, st, 100)
		attrs := []any{"version", res.Version, "rewritten", res.Rewritten}
		if err != nil || res.Rewritten == 0 {
			return audit.Event{}, attrs, err
		}
		return audit.Event{Action: audit.ActionRefingerprint, Detail: fmt.Sprintf("version=%d rewritten=%d skipped=%d", res.Version, res.Rewritten, res.Skipped)}, attrs, nil
	}}
}
