// Package periodic runs background work on a fixed interval: the sweeps,
// reloads and anchors of Obol's services. PAN-free.
package periodic

import (
	"context"
	"time"
)

// Run calls fn every interval until ctx ends; the first call comes one
// interval after Run starts. fn gets ctx and runs to completion before the
// next tick is taken (ticks missed meanwhile are dropped).
func Run(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
