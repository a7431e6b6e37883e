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
	"time"
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
	linger  time.Duration
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
	return NewLinger(fn, max, workers, 0)
}

// NewLinger is New with a linger for loaded writers: when the previous batch
// had more than one item (callers are concurrent), a flusher that has taken
// every waiting item keeps the batch open while more arrive, each within
// linger of the last, for at most 4 × linger, or until the batch is full.
// With one flusher, callers whose results were just delivered resubmit
// into the next batch instead of waiting a whole batch for the one after;
// one commit then covers every caller. A lone caller (previous batch of one
// item) never waits.
func NewLinger[T any](fn Func[T], max, workers int, linger time.Duration) *Batcher[T] {
	if max < 1 {
		max = 1
	}
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher[T]{fn: fn, max: max, linger: linger, in: make(chan request[T], max*workers), ctx: ctx, cancel: cancel}
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
	last := 0 // size of the previous batch
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
		if b.linger > 0 && last > 1 {
			b.lingerFill(&batch)
		}
		last = len(batch)
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

// lingerFill adds items arriving within linger of each other to batch, for
// at most 4 × linger in all.
func (b *Batcher[T]) lingerFill(batch *[]request[T]) {
	deadline := time.Now().Add(4 * b.linger)
	gap := time.NewTimer(b.linger)
	defer gap.Stop()
	for len(*batch) < b.max {
		select {
		case r, ok := <-b.in:
			if !ok {
				return
			}
			*batch = append(*batch, r)
			left := time.Until(deadline)
			if left <= 0 {
				return
			}
			gap.Reset(min(b.linger, left))
		case <-gap.C:
			return
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

// Queued is how many submitted items wait for a flusher to take them.
func (b *Batcher[T]) Queued() int { return len(b.in) }
