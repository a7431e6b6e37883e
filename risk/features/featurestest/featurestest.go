// Package featurestest is the conformance suite of feature stores (Redis and
// in-process). Time comes from the observations, so windows are exact.
package featurestest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obolpay/obol/risk/features"
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
				if _, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 1000, t0.Add(time.Duration(i)*time.Second)), true); err != nil {
					t.Fatal(err)
				}
			}
			r, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 500, t0.Add(5*time.Second)), true)
			if err != nil {
				t.Fatal(err)
			}
			if r.Card.Count_1M != 4 || r.Card.Sum_1M != 3500 || r.Card.Count_1H != 4 || r.Card.Count_24H != 4 || r.Merchant.Count_1M != 4 || r.IP.Count_1H != 4 {
				t.Fatalf("card %+v merchant %+v ip %+v", r.Card, r.Merchant, r.IP)
			}
			if r.Email.Count_1H != 0 {
				t.Fatal("an empty e-mail hash must not be counted")
			}
		}},
		{"dry run counts nothing", func(t *testing.T, s features.Store) {
			_, _ = s.Observe(ctx, obs("fp_1", "192.0.2.1", 100, t0), true)
			for i := 0; i < 3; i++ {
				r, err := s.Observe(ctx, obs("fp_1", "192.0.2.1", 100, t0.Add(time.Second)), false)
				if err != nil || r.Card.Count_1M != 1 {
					t.Fatalf("dry run %d: %+v %v", i, r.Card, err)
				}
			}
		}},
		{"sliding window forgets", func(t *testing.T, s features.Store) {
			_, _ = s.Observe(ctx, obs("fp_1", "", 100, t0), true)
			half := t0.Add(90 * time.Second) // the previous minute bucket is half covered
			r, _ := s.Observe(ctx, obs("fp_1", "", 100, half), false)
			if r.Card.Count_1M != 0 || r.Card.Count_1H != 1 {
				t.Fatalf("after 90s: 1m=%d 1h=%d", r.Card.Count_1M, r.Card.Count_1H)
			}
			late := t0.Add(3 * time.Hour)
			r, _ = s.Observe(ctx, obs("fp_1", "", 100, late), false)
			if r.Card.Count_1H != 0 || r.Card.Count_24H != 1 {
				t.Fatalf("after 3h: 1h=%d 24h=%d", r.Card.Count_1H, r.Card.Count_24H)
			}
		}},
		{"distinct cards per ip and device", func(t *testing.T, s features.Store) {
			var r features.Result
			for i := 0; i < 7; i++ {
				r, _ = s.Observe(ctx, obs(fmt.Sprintf("fp_%d", i%5), "198.51.100.7", 100, t0.Add(time.Duration(i)*time.Second)), true)
			}
			if r.IP.DistinctCards_1H != 5 || r.Device.DistinctCards_1H != 5 || r.IP.DistinctCards_24H != 5 {
				t.Fatalf("ip %+v device %+v", r.IP, r.Device)
			}
		}},
		{"card age per merchant", func(t *testing.T, s features.Store) {
			r, _ := s.Observe(ctx, obs("fp_new", "", 100, t0), true)
			if r.CardAgeSeconds != 0 {
				t.Fatalf("first sight age %d", r.CardAgeSeconds)
			}
			r, _ = s.Observe(ctx, obs("fp_new", "", 100, t0.Add(2*time.Hour)), true)
			if r.CardAgeSeconds != 7200 {
				t.Fatalf("age %d, want 7200", r.CardAgeSeconds)
			}
			other := obs("fp_new", "", 100, t0.Add(2*time.Hour))
			other.Merchant = "mer_b"
			r, _ = s.Observe(ctx, other, true)
			if r.CardAgeSeconds != 0 {
				t.Fatal("card age leaked across merchants")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}
