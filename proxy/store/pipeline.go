package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/obolpay/obol/proxy/service"
)

// Pipelined group commit (PostgreSQL). On a store opened with
// NewPipelined, a batch of writes costs two or three round trips instead
// of one per statement: each write is one statement (its steps chained by
// data-modifying CTEs, each step running only when the one before it
// changed its row), and a batch sends BEGIN, the reads of the writes that
// plan on a read (StartOperationFor), then every write's statement, in
// pgx pipelines; COMMIT or ROLLBACK follows once every statement's result
// was checked. The semantics are flushWrites': a statement whose result
// says it was refused before it changed anything (its first step matched
// no row) fails its caller alone and the batch commits; a refusal after a
// change, or any statement error (which aborts the transaction), rolls
// the batch back, and each write runs again in a pipelined transaction of
// its own; a COMMIT without a definite answer fails every write.

// pgWrite is a write's pipelined form.
type pgWrite struct {
	// read, when not "", is a query whose row stmt plans on (nil row
	// otherwise).
	read     string
	readArgs []any
	// stmt returns the write's statement, or an error refusing the write
	// (clean: a refusal, nothing to roll back; else the read failed).
	stmt func(row pgx.Row) (query string, args []any, clean bool, err error)
	// check reads the statement's result row (nil: the statement returns
	// none and cannot refuse) and tells a clean refusal from a change.
	check func(row pgx.Row) (clean bool, err error)
}

// write is one durable write of the payment path: fn runs it statement by
// statement on any backend; pg, when not nil, is its pipelined form.
type write struct {
	fn writeFunc
	pg *pgWrite
}

// pgConn is the driver connection of pgx's database/sql adapter.
type pgConn interface{ Conn() *pgx.Conn }

// flushPipelined commits ws (every one with a pipelined form) in one
// transaction, or each alone after a rollback (alone: ws is one write
// running alone already).
func (s *Store) flushPipelined(ctx context.Context, ws []write, alone bool) []error {
	errs := make([]error, len(ws))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	rerun := false
	err = c.Raw(func(dc any) error {
		pc, ok := dc.(pgConn)
		if !ok {
			return fmt.Errorf("gateway store: pipelined writes need pgx, not %T", dc)
		}
		conn := pc.Conn()
		defer func() {
			// A connection left inside a transaction (a failure halfway)
			// must not go back to the pool.
			if conn.PgConn().TxStatus() != 'I' {
				_ = conn.Close(ctx)
			}
		}()
		var aborted bool
		aborted, err = runPipelined(ctx, conn, ws, errs)
		if err != nil {
			return err // the connection failed: nothing committed
		}
		if aborted {
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				return err
			}
			rerun = true
			return nil
		}
		tag, err := conn.Exec(ctx, "COMMIT")
		if err == nil && tag.String() != "COMMIT" {
			// An aborted transaction: the server rolled it back.
			err = &pgconn.PgError{Severity: "ERROR", Message: "transaction rolled back at commit: " + tag.String()}
		}
		if err != nil {
			if s.rolledBack == nil || !s.rolledBack(err) {
				return err
			}
			if alone {
				return err
			}
			rerun = true
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if !rerun {
		return errs
	}
	if alone {
		return errs // rolled back: its own failure
	}
	for i := range ws {
		errs[i] = s.flushPipelined(ctx, ws[i:i+1], true)[0]
	}
	return errs
}

// runPipelined opens the transaction and runs ws' reads and statements in
// it, setting each write's refusal in errs. aborted: the transaction must
// roll back (a statement failed, or a write was refused after a change;
// errs then holds the failure of the write alone). err: the connection
// failed.
func runPipelined(ctx context.Context, conn *pgx.Conn, ws []write, errs []error) (aborted bool, err error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	var reads []int
	for i, w := range ws {
		if w.pg.read != "" {
			b.Queue(w.pg.read, w.pg.readArgs...)
			reads = append(reads, i)
		}
	}
	queries := make([]string, len(ws))
	args := make([][]any, len(ws))
	refused := make([]bool, len(ws))
	plan := func(i int, row pgx.Row) {
		q, a, clean, err := ws[i].pg.stmt(row)
		if err != nil {
			errs[i], refused[i] = err, true
			if !clean {
				aborted = true
			}
			return
		}
		queries[i], args[i] = q, a
	}
	if len(reads) > 0 {
		br := conn.SendBatch(ctx, b)
		_, err := br.Exec()
		for _, i := range reads {
			if err != nil {
				break
			}
			plan(i, br.QueryRow())
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, err
		}
		if aborted {
			return true, nil
		}
		b = &pgx.Batch{}
	}
	for i, w := range ws {
		if w.pg.read == "" {
			plan(i, nil)
		}
	}
	var run []int
	for i := range ws {
		if !refused[i] {
			b.Queue(queries[i], args[i]...)
			run = append(run, i)
		}
	}
	if b.Len() == 0 {
		return false, nil
	}
	br := conn.SendBatch(ctx, b)
	if len(reads) == 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return false, err
		}
	}
	for _, i := range run {
		var clean bool
		var err error
		if ws[i].pg.check == nil {
			_, err = br.Exec()
		} else {
			clean, err = ws[i].pg.check(br.QueryRow())
		}
		if err != nil {
			errs[i] = err
			if !clean {
				aborted = true
			}
		}
	}
	if err := br.Close(); err != nil && !aborted {
		return false, err
	}
	return aborted, nil
}

// pgArgs numbers the arguments of a pipelined statement, casting each
// (parameters of INSERT … SELECT have no column to take a type from).
type pgArgs []any

func (a *pgArgs) text(v string) string { return a.add(v, "text") }
func (a *pgArgs) int(v int64) string   { return a.add(v, "bigint") }
func (a *pgArgs) add(v any, t string) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a)) + "::" + t
}

// outboxCTEs returns the CTEs queuing events once the CTE `from` returned
// its row, and the result columns telling, for each ledger event, whether
// it was queued now with no older event of its payment (First; the same
// test as addOutbox's).
func outboxCTEs(a *pgArgs, from string, events []service.OutboxEntry, now time.Time) (ctes, firsts []string) {
	var ledger []int
	for i, e := range events {
		at := micros(now) + int64(i)
		name := "e" + strconv.Itoa(i)
		if m := e.Merchant; m != nil {
			ctes = append(ctes, name+` AS (INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
				SELECT `+strings.Join([]string{a.text(m.ID), a.text(m.Type), a.text(m.MerchantID), a.text(m.ObjectType), a.text(m.ObjectID), a.int(m.ObjectVersion), a.text(string(m.Data)), a.int(at), a.int(at)}, ", ")+
				` FROM `+from+` ON CONFLICT DO NOTHING)`)
			continue
		}
		id, pay, t := a.text(e.ID), a.text(e.PaymentID), a.int(at)
		ctes = append(ctes, name+` AS (INSERT INTO ledger_outbox (id, payment_id, request, created_at, next_attempt_at) SELECT `+id+`, `+pay+`, `+a.text(e.Request)+`, `+t+`, `+t+
			` FROM `+from+` ON CONFLICT DO NOTHING RETURNING 1)`)
		// Earlier ledger events of this commit are not in the statement's
		// snapshot: queued now, they are older.
		first := `EXISTS (SELECT 1 FROM ` + name + `) AND NOT EXISTS (SELECT 1 FROM ledger_outbox WHERE payment_id = ` + pay + ` AND id <> ` + id +
			` AND (created_at < ` + t + ` OR (created_at = ` + t + ` AND id < ` + id + `)))`
		for _, j := range ledger {
			if events[j].PaymentID == e.PaymentID {
				first += ` AND NOT EXISTS (SELECT 1 FROM e` + strconv.Itoa(j) + `)`
			}
		}
		ledger = append(ledger, i)
		firsts = append(firsts, first)
	}
	return ctes, firsts
}

// setFirsts scans the First columns into the ledger events.
func setFirsts(events []service.OutboxEntry, firsts []bool) {
	k := 0
	for i := range events {
		if events[i].Merchant == nil {
			events[i].First = firsts[k]
			k++
		}
	}
}

// pgInsert is Insert's (and InsertCommit's) pipelined form: the row, then
// the events once it was inserted.
func pgInsert(p []any, events []service.OutboxEntry, now time.Time) *pgWrite {
	var a pgArgs
	cols := make([]string, len(p))
	for i, v := range p {
		switch v := v.(type) {
		case string:
			cols[i] = a.text(v)
		case int64:
			cols[i] = a.int(v)
		default:
			panic(fmt.Sprintf("gateway store: payment column of type %T", v))
		}
	}
	ctes, firsts := outboxCTEs(&a, "p", events, now)
	q := `WITH p AS (INSERT INTO payments (` + paymentCols + `) VALUES (` + strings.Join(cols, ", ") + `) ON CONFLICT DO NOTHING RETURNING 1)`
	for _, c := range ctes {
		q += ", " + c
	}
	q += ` SELECT ` + strings.Join(append([]string{`(SELECT count(*) FROM p)`}, firsts...), ", ")
	return &pgWrite{
		stmt: func(pgx.Row) (string, []any, bool, error) { return q, a, true, nil },
		check: func(row pgx.Row) (bool, error) {
			var n int64
			fs := make([]bool, len(firsts))
			dest := []any{&n}
			for i := range fs {
				dest = append(dest, &fs[i])
			}
			if err := row.Scan(dest...); err != nil {
				return false, err
			}
			if n != 1 {
				return true, errDuplicatePayment
			}
			setFirsts(events, fs)
			return false, nil
		},
	}
}

// pgCommit is commitWrite's pipelined form: the operation's finish (when
// op is not nil), the payment's update once it finished (version check),
// then the events once the payment was updated.
func (s *Store) pgCommit(p *service.Payment, events []service.OutboxEntry, now time.Time, op *service.Operation) (*pgWrite, error) {
	pa, err := s.args(p)
	if err != nil {
		return nil, err
	}
	var a pgArgs
	var q string
	after := ""
	if op != nil {
		q = `o AS (UPDATE payment_operations SET state = ` + a.text(op.State) + `, error_code = ` + a.text(op.ErrorCode) + `, updated_at = ` + a.int(micros(now)) +
			` WHERE id = ` + a.text(op.ID) + ` AND state = ` + a.text(service.OpProcessing) + ` RETURNING 1), `
		after = ` AND EXISTS (SELECT 1 FROM o)`
	}
	q = `WITH ` + q + `u AS (UPDATE payments SET status = ` + a.text(p.Status) + `, amount_captured = ` + a.int(p.AmountCaptured) + `, amount_refunded = ` + a.int(p.AmountRefunded) +
		`, acquirer_reference = ` + a.text(p.AcquirerReference) + `, card = ` + a.text(pa[10].(string)) + `, risk = ` + a.text(pa[11].(string)) + `, decline_code = ` + a.text(p.DeclineCode) +
		`, refunds = ` + a.text(pa[15].(string)) + `, updated_at = ` + a.int(micros(p.UpdatedAt)) + `, pending_op = ` + a.text(p.PendingOp) + `, compensation = ` + a.text(p.Compensation) +
		`, fee = CASE WHEN ` + a.int(p.Fee) + ` = 0 THEN fee ELSE ` + a.int(p.Fee) + ` END, version = version + 1 WHERE id = ` + a.text(p.ID) + ` AND merchant_id = ` + a.text(p.MerchantID) + ` AND version = ` + a.int(p.Version) + after + ` RETURNING 1)`
	ctes, firsts := outboxCTEs(&a, "u", events, now)
	for _, c := range ctes {
		q += ", " + c
	}
	cols := []string{`(SELECT count(*) FROM u)`}
	if op != nil {
		cols = append(cols, `(SELECT count(*) FROM o)`)
	}
	q += ` SELECT ` + strings.Join(append(cols, firsts...), ", ")
	return &pgWrite{
		stmt: func(pgx.Row) (string, []any, bool, error) { return q, a, true, nil },
		check: func(row pgx.Row) (bool, error) {
			var nu, no int64
			fs := make([]bool, len(firsts))
			dest := []any{&nu}
			if op != nil {
				dest = append(dest, &no)
			}
			for i := range fs {
				dest = append(dest, &fs[i])
			}
			if err := row.Scan(dest...); err != nil {
				return false, err
			}
			if op != nil && no != 1 {
				return true, service.ErrConcurrentUpdate // nothing changed
			}
			if nu != 1 {
				return op == nil, service.ErrConcurrentUpdate
			}
			setFirsts(events, fs)
			return false, nil
		},
	}, nil
}

// pgStartOperation is startOperation's pipelined form: the payment marked
// (version check), then the operation stored once it was.
func pgStartOperation(p *service.Payment, op *service.Operation) (string, []any) {
	var a pgArgs
	q := `WITH u AS (UPDATE payments SET pending_op = ` + a.text(op.ID) + `, version = version + 1 WHERE id = ` + a.text(p.ID) + ` AND merchant_id = ` + a.text(p.MerchantID) +
		` AND version = ` + a.int(p.Version) + ` AND pending_op = '' RETURNING 1), o AS (INSERT INTO payment_operations (` + opCols + `) SELECT ` +
		strings.Join([]string{a.text(op.ID), a.text(op.PaymentID), a.text(op.MerchantID), a.text(op.Kind), a.int(op.Amount), a.text(op.Reason), a.text(op.RequestHash),
			a.text(op.State), a.text(op.ErrorCode), a.int(micros(op.CreatedAt)), a.int(micros(op.UpdatedAt))}, ", ") + ` FROM u) SELECT count(*) FROM u`
	return q, a
}

// checkStarted is pgStartOperation's check.
func checkStarted(row pgx.Row) (bool, error) {
	var n int64
	if err := row.Scan(&n); err != nil {
		return false, err
	}
	if n != 1 {
		return true, service.ErrConcurrentUpdate
	}
	return false, nil
}
