package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/risk/features"
)

// TestCardPool: at cardPoolRate payments a second, the cards of cardPool
// used in turn, riskd's own feature arithmetic (features.Memory, which
// mirrors the Redis script: the minute's and the hour's bucket plus a share
// of the previous one) never gives a card more than 3 uses in a minute or
// 10 in an hour, the default rules' card velocity; whatever the run's length,
// where a card's turn falls and where the run starts against the minute
// and the hour.
func TestCardPool(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  time.Duration
	}{
		{"a second", time.Second},
		{"the usual 2s warm-up and 10s", 12 * time.Second},
		{"2s and 15s", 17 * time.Second},
		{"a minute", time.Minute},
		{"62 seconds", 62 * time.Second},
		{"two minutes", 2 * time.Minute},
		{"five minutes", 5 * time.Minute},
		{"ten minutes", 10 * time.Minute},
		{"an hour", time.Hour},
		{"ninety minutes", 90 * time.Minute},
		{"three hours", 3 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := cardPool(tc.run)
			require.GreaterOrEqual(t, n, 2000)
			span := (tc.run + 5*time.Second).Seconds()
			period := float64(n) / cardPoolRate // seconds between a card's turns
			hour := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
			worst1m, worst1h := int64(0), int64(0)
			for _, start := range []float64{0, 17.3, 42.9, 59.5, 1800.2, 3599.7} {
				for c := range 97 {
					m := features.NewMemory()
					phase := period * float64(c) / 97
					for at := phase; at < span; at += period {
						now := hour.Add(time.Duration((start + at) * float64(time.Second)))
						r, err := m.Observe(context.Background(), features.Observation{Fingerprint: "card", Merchant: "mer_1", Amount: 2500, Now: now,
							PaymentID: "pay_" + strconv.FormatFloat(at, 'f', 6, 64)}, true)
						require.NoError(t, err)
						worst1m, worst1h = max(worst1m, r.Card.GetCount_1M()), max(worst1h, r.Card.GetCount_1H())
					}
				}
			}
			assert.LessOrEqual(t, worst1m, int64(3), "card.count_1m with %d cards", n)
			assert.LessOrEqual(t, worst1h, int64(10), "card.count_1h with %d cards", n)
		})
	}
}
