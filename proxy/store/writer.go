package store

import (
	"context"
	"database/sql"

	"github.com/obolpay/obol/internal/batch"
)

// Group commit of the payment path's writes. The durable writes of
// concurrent requests (the processing row; the final state with its events;
// an operation's start and finish) share one transaction: each caller is
// answered only once the commit that holds its write returned, so nothing
// is acknowledged before it is durable. A write that is refused (a version
// check, a duplicate id) leaves the batch alone: every write runs its check
// before it changes anything, and reports a refusal that changed nothing as
// clean. Anything else (a refusal after a change, a statement the database
// rejected, a deadlock) rolls the batch back, and each write of it then runs
// again in a transaction of its own, so that one write's failure fails that
// write only. A commit that fails without a definite answer (a connection
// lost during COMMIT) fails every write of the batch, as it would have
// failed each of them alone: their outcome is unknown to the caller either
// way, and the callers already treat it so (the sweeper, a retry with the
// same Idempotency-Key).

// writeBatch bounds how many writes one transaction holds; writeWorkers
// is how many transactions may be in flight at once. A batch's statements
// run one round trip at a time on one connection, so a single flusher
// caps throughput at the loopback round-trip rate; four kept
// BenchmarkPaymentWrites (32 payments at once) near the throughput of
// one transaction per write with 1.5 transactions per payment instead of
// 5.2 (two flushers: 0.55 transactions, a third slower; eight: 2.5).
const (
	writeBatch   = 64
	writeWorkers = 4
)

// writeFunc runs one write in tx. clean reports, with a non-nil error,
// that the write changed nothing before it failed (the batch can go on).
type writeFunc func(ctx context.Context, tx *sql.Tx) (clean bool, err error)

func (s *Store) writer() *batch.Batcher[write] {
	s.writesOnce.Do(func() { s.writes = batch.New(s.flushWrites, writeBatch, writeWorkers) })
	if s.writes == nil {
		return closedWrites
	}
	return s.writes
}

// closedWrites answers batch.ErrClosed (a store used after Close).
var closedWrites = func() *batch.Batcher[write] {
	b := batch.New(func(context.Context, []write) []error { return nil }, 1, 1)
	b.Close()
	return b
}()

// writePG runs fn in a shared transaction and returns once it is durable
// (nil) or failed; a pipelined store runs its pipelined form pg instead.
func (s *Store) writePG(ctx context.Context, fn writeFunc, pg *pgWrite) error {
	return s.writer().Do(ctx, write{fn: fn, pg: pg})
}

// flushWrites commits a batch of writes in one transaction: pipelined
// (pipeline.go) when the store is and every write has a pipelined form.
func (s *Store) flushWrites(ctx context.Context, ws []write) []error {
	if s.pipelined && pipelinable(ws) {
		return s.flushPipelined(ctx, ws, len(ws) == 1)
	}
	fns := make([]writeFunc, len(ws))
	for i, w := range ws {
		fns[i] = w.fn
	}
	errs := make([]error, len(fns))
	if len(fns) == 1 {
		errs[0] = s.writeAlone(ctx, fns[0])
		return errs
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	aborted := false
	for i, fn := range fns {
		clean, err := fn(ctx, tx)
		if err != nil && !clean {
			aborted = true
			break
		}
		errs[i] = err
	}
	if !aborted {
		err = tx.Commit()
		if err == nil {
			return errs
		}
		if s.rolledBack == nil || !s.rolledBack(err) {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
	} else {
		_ = tx.Rollback()
	}
	// Rolled back for certain: each write again, alone.
	for i, fn := range fns {
		errs[i] = s.writeAlone(ctx, fn)
	}
	return errs
}

// writeAlone runs one write in a transaction of its own.
func (s *Store) writeAlone(ctx context.Context, fn writeFunc) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// pipelinable reports whether every write of ws has a pipelined form.
func pipelinable(ws []write) bool {
	for _, w := range ws {
		if w.pg == nil {
			return false
		}
	}
	return true
}
