package vaultd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
)

// RefingerprintResult counts a run.
type RefingerprintResult struct {
	Version   int
	Rewritten int
	Skipped   int
	Elapsed   time.Duration
}

// Refingerprint rewrites the fingerprint of every token computed under an
// older version of the fingerprint secret (after a rotation), so that
// lookups no longer need the previous version. Compare-and-set per token:
// safe next to live traffic, resumable (the data is the progress). It opens
// each card in memory only, to HMAC its number.
func Refingerprint(ctx context.Context, env *envelope.Envelope, st store.Store, batch int) (RefingerprintResult, error) {
	if batch <= 0 {
		batch = 100
	}
	start := time.Now()
	latest, err := env.FingerprintVersion(ctx)
	if err != nil {
		return RefingerprintResult{}, err
	}
	res := RefingerprintResult{Version: latest}
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
