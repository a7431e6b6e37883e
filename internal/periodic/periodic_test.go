package periodic

import (
	"context"
	"testing"
	"time"
)

// TestRun: fn runs on every tick, and Run returns once ctx ends.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, time.Millisecond, func(context.Context) { calls <- struct{}{} })
	}()
	for i := 0; i < 3; i++ {
		<-calls
	}
	cancel()
	// A tick taken just before the cancel may still be delivering.
	for {
		select {
		case <-calls:
		case <-done:
			return
		}
	}
}
