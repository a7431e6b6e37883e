// Package featurestest is the conformance suite of feature stores (Redis and
// in-process). Time comes from the observations, so windows are exact.
package featurestest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obolpay/obol/risk/features"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run runs the suite; newStore returns an empty store per call.
func Run(t *testing.T, newStore func(t *testing.T) features.Store) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0) // a minute boundary
	obs := func(fp, ip string, amount int64, at time.Time) features.Observation {
		return features.Observation{Merchant: "mer_a", Fingerprint: fp, IP: ip, Device: "dev_1", Amount: amount, Now: at}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s features.Store)
	}{
		{"counts and sums accumulate", func(t *testing.T, s features.Store) {
			for i := 0; i < 3; i++ {
				_, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 1000, t0.Add(time.Duration(i)*time.Second)), true)
				require.NoError(t, err)
			}
			r, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 500, t0.Add(5*time.Second)), true)
			require.NoError(t, err)
			assert.EqualValues(t, 4, r.Card.Count_1M, "card 1m")
			assert.EqualValues(t, 3500, r.Card.Sum_1M, "card sum 1m")
			assert.EqualValues(t, 4, r.Card.Count_1H, "card 1h")
			assert.EqualValues(t, 4, r.Card.Count_24H, "card 24h")
			assert.EqualValues(t, 4, r.Merchant.Count_1M, "merchant 1m")
			assert.EqualValues(t, 4, r.IP.Count_1H, "ip 1h")
			assert.Zero(t, r.Email.Count_1H, "an empty e-mail hash must not be counted")
		}},
		{"a payment retried is counted once", func(t *testing.T, s features.Store) {
			// The gateway evaluates a payment again on every retry of its
			// Idempotency-Key: velocity counts payments, not attempts.
			for i := 0; i < 5; i++ {
				o := obs("fp_1", "192.0.2.1", 1000, t0.Add(time.Duration(i)*time.Second))
				o.PaymentID = "pay_retried"
				r, err := s.Observe(ctx, o, true)
				require.NoError(t, err, "attempt %d", i)
				assert.EqualValues(t, 1, r.Card.Count_1M, "attempt %d: card 1m", i)
				assert.EqualValues(t, 1000, r.Card.Sum_1M, "attempt %d: card sum 1m", i)
			}
			o := obs("fp_1", "192.0.2.1", 500, t0.Add(6*time.Second))
			o.PaymentID = "pay_other"
			r, err := s.Observe(ctx, o, true)
			require.NoError(t, err)
			assert.EqualValues(t, 2, r.Card.Count_1M, "another payment counts")
		}},
		{"dry run counts nothing", func(t *testing.T, s features.Store) {
			_, _ = s.Observe(ctx, obs("fp_1", "192.0.2.1", 100, t0), true)
			for i := 0; i < 3; i++ {
				r, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 100, t0.Add(time.Second)), false)
				require.NoError(t, err, "dry run %d", i)
				require.EqualValues(t, 1, r.Card.Count_1M, "dry run %d", i)
			}
		}},
		{"sliding window forgets", func(t *testing.T, s features.Store) {
			_, _ = s.Observe(ctx, obs("fp_1", "", 100, t0), true)
			half := t0.Add(90 * time.Second) // the previous minute bucket is half covered
			r, _ := s.Observe(ctx, obs("fp_1", "", 100, half), false)
			assert.EqualValues(t, 0, r.Card.Count_1M, "after 90s: 1m")
			assert.EqualValues(t, 1, r.Card.Count_1H, "after 90s: 1h")
			late := t0.Add(3 * time.Hour)
			r, _ = s.Observe(ctx, obs("fp_1", "", 100, late), false)
			assert.EqualValues(t, 0, r.Card.Count_1H, "after 3h: 1h")
			assert.EqualValues(t, 1, r.Card.Count_24H, "after 3h: 24h")
		}},
		{"distinct cards per ip and device", func(t *testing.T, s features.Store) {
			var r features.Result
			for i := 0; i < 7; i++ {
				r, _ = s.Observe(ctx, obs(fmt.Sprintf("fp_%d", i%5), "198.51.100.7", 100, t0.Add(time.Duration(i)*time.Second)), true)
			}
			assert.EqualValues(t, 5, r.IP.DistinctCards_1H, "ip distinct cards 1h")
			assert.EqualValues(t, 5, r.Device.DistinctCards_1H, "device distinct cards 1h")
			assert.EqualValues(t, 5, r.IP.DistinctCards_24H, "ip distinct cards 24h")
		}},
		{"card age per merchant", func(t *testing.T, s features.Store) {
			r, _ := s.Observe(ctx, obs("fp_new", "", 100, t0), true)
			require.EqualValues(t, 0, r.CardAgeSeconds, "first sight age")
			r, _ = s.Observe(ctx, obs("fp_new", "", 100, t0.Add(2*time.Hour)), true)
			require.EqualValues(t, 7200, r.CardAgeSeconds, "age")
			other := obs("fp_new", "", 100, t0.Add(2*time.Hour))
			other.Merchant = "mer_b"
			r, _ = s.Observe(ctx, other, true)
			require.EqualValues(t, 0, r.CardAgeSeconds, "card age leaked across merchants")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}
