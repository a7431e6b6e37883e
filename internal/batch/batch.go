// Package batch coalesces concurrent calls into batches (group commit): a
// caller hands over one item and waits for its own result, and a flusher
// takes whatever items are waiting — at least one, at most Max — and
// processes them together (one database transaction, one Redis pipeline).
// Nothing waits for a batch to fill: at low load a batch is one item and adds
// no latency; under load, round trips and commits are shared. PAN-free: items
// are opaque to it.
package batch

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed: the batcher was closed.
var ErrClosed = errors.New("batch: closed")

// Func processes a batch and returns one error per item (nil for success).
type Func[T any] func(ctx context.Context, items []T) []error

type request[T any] struct {
	item T
	done chan error
}

// Batcher runs Func over batches of concurrent calls.
type Batcher[T any] struct {
	fn      Func[T]
	max     int
	in      chan request[T]
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.RWMutex
	closed  bool
}

// New starts workers flushers, each taking batches of up to max items. ctx
// bounds every flush (callers' contexts do not cancel shared work).
func New[T any](fn Func[T], max, workers int) *Batcher[T] {
	if max < 1 {
		max = 1
	}
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher[T]{fn: fn, max: max, in: make(chan request[T], max*workers), ctx: ctx, cancel: cancel}
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

func (b *Batcher[T]) loop() {
	defer b.wg.Done()
	batch := make([]request[T], 0, b.max)
	items := make([]T, 0, b.max)
	for {
		first, ok := <-b.in
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < b.max {
			select {
			case r, ok := <-b.in:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		items = items[:0]
		for _, r := range batch {
			items = append(items, r.item)
		}
		errs := b.fn(b.ctx, items)
		for i, r := range batch {
			var err error
			if i < len(errs) {
				err = errs[i]
			}
			r.done <- err
		}
		var zero T
		for i := range items {
			items[i] = zero
		}
	}
}

// Do submits item and waits for its result. If ctx ends first, Do returns
// ctx.Err(), but the item may still be processed.
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return ErrClosed
	}
	done := make(chan error, 1)
	select {
	case b.in <- request[T]{item: item, done: done}:
		b.closeMu.RUnlock()
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting items, finishes queued ones and stops the flushers.
func (b *Batcher[T]) Close() {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return
	}
	b.closed = true
	close(b.in)
	b.closeMu.Unlock()
	b.wg.Wait()
	b.cancel()
}
