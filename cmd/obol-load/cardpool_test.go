package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestCardPool: at cardPoolRate payments a second over the run, cards used
// in turn, no card exceeds the default rules' velocity (3 uses in a minute,
// 10 in an hour), and the pool is never below 2,000.
func TestCardPool(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  time.Duration
	}{
		{"a second", time.Second},
		{"the usual 2s warm-up and 10s", 12 * time.Second},
		{"a minute", time.Minute},
		{"ten minutes", 10 * time.Minute},
		{"an hour", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := cardPool(tc.run)
			assert.GreaterOrEqual(t, n, 2000)
			window := min(tc.run+5*time.Second, time.Minute)
			assert.LessOrEqual(t, cardPoolRate*window.Seconds()/float64(n), 3.0, "uses of a card within a minute")
			assert.LessOrEqual(t, cardPoolRate*(tc.run+5*time.Second).Seconds()/float64(n), 10.0, "uses of a card within the run")
		})
	}
}
