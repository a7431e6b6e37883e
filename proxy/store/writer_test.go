package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/service"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pgStore is a store on a fresh, migrated PostgreSQL database; its
// rolledBack classifies failed COMMITs as the postgres package does when
// definite is true, and treats every failed COMMIT as ambiguous otherwise.
func pgStore(t *testing.T, definite bool) (*Store, *sql.DB) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "gateway", func(ctx context.Context, url string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return migrate.Postgres(ctx, conn, Migrations, "migrations", 727275003)
	})
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	var rb func(error) bool
	if definite {
		rb = func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe) && pe.Severity == "ERROR"
		}
	}
	s := NewRolledBack(stdlib.OpenDB(*cfg), rb)
	t.Cleanup(func() { s.Close() })
	admin := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { admin.Close() })
	// A payment whose description is "fail at commit" fails its
	// transaction's COMMIT (a deferred constraint trigger), as a commit
	// the server refuses would.
	_, err = admin.Exec(`CREATE FUNCTION fail_at_commit() RETURNS trigger AS $$ BEGIN
		IF NEW.description = 'fail at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
		CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON payments DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()`)
	require.NoError(t, err)
	return s, admin
}

var w0 = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

func newPayment(id, description string) *service.Payment {
	return &service.Payment{ID: id, MerchantID: "mer_1", Status: service.StatusProcessing, Amount: 1000, Currency: "USD", Token: "tok_" + id,
		Acquirer: "simulator", Description: description, CreatedAt: w0, UpdatedAt: w0, Version: 1}
}

// insertW is the write Insert hands to the batcher.
func (s *Store) insertW(t *testing.T, p *service.Payment) write {
	a, err := s.args(p)
	require.NoError(t, err)
	return write{fn: func(ctx context.Context, tx *sql.Tx) (bool, error) { return insertPayment(ctx, tx, a) }, pg: pgInsert(a, nil, w0)}
}

// xmins maps each stored payment to the transaction that wrote it last.
func xmins(t *testing.T, db *sql.DB) map[string]string {
	rows, err := db.Query(`SELECT id, xmin::text FROM payments`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, x string
		require.NoError(t, rows.Scan(&id, &x))
		out[id] = x
	}
	require.NoError(t, rows.Err())
	return out
}

// TestGroupCommit runs batches of writes as the batcher hands them over
// (flushWrites) on PostgreSQL: writes that succeed share one commit; a
// write refused before it changed anything fails alone; anything else rolls
// the batch back and runs each write alone; and a COMMIT of unknown
// outcome answers no caller as a success.
func TestGroupCommit(t *testing.T) {
	tests := []struct {
		name     string
		definite bool
		// batch builds the writes; want is each one's expected error.
		batch func(t *testing.T, s *Store) []write
		want  []error
		// stored are the payments stored afterwards; shared those written
		// by one transaction.
		stored, shared []string
	}{
		{
			name: "successes share one commit", definite: true,
			batch: func(t *testing.T, s *Store) []write {
				return []write{s.insertW(t, newPayment("pay_a", "")), s.insertW(t, newPayment("pay_b", "")), s.insertW(t, newPayment("pay_c", ""))}
			},
			want:   []error{nil, nil, nil},
			stored: []string{"pay_a", "pay_b", "pay_c"}, shared: []string{"pay_a", "pay_b", "pay_c"},
		},
		{
			name: "a duplicate id fails alone and poisons nothing", definite: true,
			batch: func(t *testing.T, s *Store) []write {
				require.NoError(t, s.Insert(context.Background(), newPayment("pay_dup", "")))
				return []write{s.insertW(t, newPayment("pay_a", "")), s.insertW(t, newPayment("pay_dup", "")), s.insertW(t, newPayment("pay_b", ""))}
			},
			want:   []error{nil, errDuplicatePayment, nil},
			stored: []string{"pay_a", "pay_b", "pay_dup"}, shared: []string{"pay_a", "pay_b"},
		},
		{
			name: "a refusal after a change rolls back that write only", definite: true,
			batch: func(t *testing.T, s *Store) []write {
				ctx := context.Background()
				p := newPayment("pay_op", "")
				require.NoError(t, s.Insert(ctx, p))
				op := &service.Operation{ID: "cap_1", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpCapture, Amount: 1000, State: service.OpProcessing, CreatedAt: w0, UpdatedAt: w0}
				require.NoError(t, s.StartOperation(ctx, p, op))
				// The operation check passes, the payment's version check
				// then fails: the operation's update must not survive.
				stale := *p
				stale.Version--
				done := *op
				done.State = service.OpSucceeded
				finish, err := s.commitWrite(&stale, nil, w0, &done)
				require.NoError(t, err)
				return []write{s.insertW(t, newPayment("pay_a", "")), finish, s.insertW(t, newPayment("pay_b", ""))}
			},
			want:   []error{nil, service.ErrConcurrentUpdate, nil},
			stored: []string{"pay_a", "pay_b", "pay_op"},
		},
		{
			name: "a COMMIT the server refuses runs each write alone", definite: true,
			batch: func(t *testing.T, s *Store) []write {
				return []write{s.insertW(t, newPayment("pay_a", "")), s.insertW(t, newPayment("pay_bad", "fail at commit")), s.insertW(t, newPayment("pay_b", ""))}
			},
			want:   []error{nil, errRefusedAtCommit, nil},
			stored: []string{"pay_a", "pay_b"},
		},
		{
			name: "a COMMIT of unknown outcome answers no success", definite: false,
			batch: func(t *testing.T, s *Store) []write {
				return []write{s.insertW(t, newPayment("pay_a", "")), s.insertW(t, newPayment("pay_bad", "fail at commit")), s.insertW(t, newPayment("pay_b", ""))}
			},
			want: []error{errRefusedAtCommit, errRefusedAtCommit, errRefusedAtCommit},
		},
	}
	for _, tt := range tests {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pipelined=%v", tt.name, pipelined), func(t *testing.T) {
				s, admin := pgStore(t, tt.definite)
				s.pipelined = pipelined
				errs := s.flushWrites(context.Background(), tt.batch(t, s))
				require.Len(t, errs, len(tt.want))
				for i, want := range tt.want {
					switch {
					case want == nil:
						assert.NoError(t, errs[i], "write %d", i)
					case want == errRefusedAtCommit:
						var pe *pgconn.PgError
						if assert.ErrorAs(t, errs[i], &pe, "write %d", i) {
							assert.Contains(t, pe.Message, "refused at commit", "write %d", i)
						}
					default:
						assert.ErrorIs(t, errs[i], want, "write %d", i)
					}
				}
				got := xmins(t, admin)
				var ids []string
				for id := range got {
					ids = append(ids, id)
				}
				assert.ElementsMatch(t, tt.stored, ids, "stored payments")
				for _, id := range tt.shared {
					assert.Equal(t, got[tt.shared[0]], got[id], "%s committed with %s", id, tt.shared[0])
				}
				if len(tt.shared) == 0 && len(tt.stored) > 0 {
					assert.NotEqual(t, got["pay_a"], got["pay_b"], "written alone after the batch rolled back")
				}
				if op, err := s.Operation(context.Background(), "cap_1"); err == nil {
					assert.Equal(t, service.OpProcessing, op.State, "the refused finish left the operation processing")
				}
			})
		}
	}
}

// errRefusedAtCommit stands for the trigger's error in a want list.
var errRefusedAtCommit = errors.New("refused at commit")

// TestPipelinedBatch runs mixed batches of the payment path's writes
// through the pipelined flush (one statement per write): every kind shares
// one commit, and a write refused before it changed anything (a stale
// version, a missing payment, a duplicate id) fails alone among the others.
func TestPipelinedBatch(t *testing.T) {
	ctx := context.Background()
	plan := func(p *service.Payment) (*service.Operation, error) {
		return &service.Operation{ID: "cap_" + p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpCapture, Amount: p.Amount,
			State: service.OpProcessing, CreatedAt: w0, UpdatedAt: w0}, nil
	}
	tests := []struct {
		name string
		// refuse names the write of the batch to spoil ("" for none) and
		// the error it must fail with.
		refuse string
		want   error
	}{
		{name: "mixed kinds share one commit"},
		{name: "a stale commit fails alone", refuse: "commit", want: service.ErrConcurrentUpdate},
		{name: "a start on a missing payment fails alone", refuse: "start", want: service.ErrNotFound},
		{name: "a duplicate insert fails alone", refuse: "insert", want: errDuplicatePayment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, admin := pgStore(t, true)
			s.pipelined = true
			// pay_auth is processing (to authorize), pay_cap authorized (to
			// start its capture), pay_fin capturing (to finish), pay_fee
			// has a delivered ledger event (its bookkeeping).
			for _, id := range []string{"pay_auth", "pay_cap", "pay_fin", "pay_fee"} {
				require.NoError(t, s.Insert(ctx, newPayment(id, "")))
			}
			fin, err := s.Get(ctx, "mer_1", "pay_fin")
			require.NoError(t, err)
			finOp, _ := plan(fin)
			require.NoError(t, s.StartOperation(ctx, fin, finOp))
			require.NoError(t, s.AddOutbox(ctx, "L:pay_fee", "pay_fee", `{}`, w0))

			ins := newPayment("pay_new", "")
			if tt.refuse == "insert" {
				ins = newPayment("pay_fee", "")
			}
			auth, err := s.Get(ctx, "mer_1", "pay_auth")
			require.NoError(t, err)
			auth.Status, auth.AcquirerReference = service.StatusAuthorized, "ch_auth"
			if tt.refuse == "commit" {
				auth.Version--
			}
			authEvents := []service.OutboxEntry{{Merchant: &service.MerchantEvent{ID: "evt_auth", Type: "payment.authorized", MerchantID: "mer_1",
				ObjectType: "payment", ObjectID: "pay_auth", ObjectVersion: 2, Data: []byte(`{}`)}}}
			commit, err := s.commitWrite(auth, authEvents, w0, nil)
			require.NoError(t, err)
			capID := "pay_cap"
			if tt.refuse == "start" {
				capID = "pay_none"
			}
			var capP *service.Payment
			var capOp *service.Operation
			start := startForWrite("mer_1", capID, plan, &capP, &capOp)
			doneOp := *finOp
			doneOp.State = service.OpSucceeded
			fin.Status, fin.AmountCaptured, fin.PendingOp = service.StatusCaptured, fin.Amount, ""
			finEvents := []service.OutboxEntry{{ID: "L:pay_fin", PaymentID: "pay_fin", Request: `{}`}, {ID: "L2:pay_fin", PaymentID: "pay_fin", Request: `{}`}}
			finish, err := s.commitWrite(fin, finEvents, w0, &doneOp)
			require.NoError(t, err)
			feeW := write{pg: &pgWrite{stmt: func(pgx.Row) (string, []any, bool, error) {
				return `WITH f AS (UPDATE payments SET fee = $1 WHERE id = $2) DELETE FROM ledger_outbox WHERE id = $3`, []any{int64(75), "pay_fee", "L:pay_fee"}, true, nil
			}}}

			names := []string{"insert", "commit", "start", "finish", "fee"}
			errs := s.flushWrites(ctx, []write{s.insertW(t, ins), commit, start, finish, feeW})
			require.Len(t, errs, len(names))
			for i, name := range names {
				if name == tt.refuse {
					assert.ErrorIs(t, errs[i], tt.want, name)
				} else {
					assert.NoError(t, errs[i], name)
				}
			}
			got := xmins(t, admin)
			shared := []string{"pay_auth", "pay_cap", "pay_fin", "pay_fee", "pay_new"}
			for _, id := range shared {
				if (id == "pay_auth" && tt.refuse == "commit") || (id == "pay_cap" && tt.refuse == "start") || (id == "pay_new" && tt.refuse == "insert") {
					continue
				}
				assert.Equal(t, got["pay_fin"], got[id], "%s committed with pay_fin", id)
			}
			p, err := s.Get(ctx, "mer_1", "pay_fin")
			require.NoError(t, err)
			assert.Equal(t, service.StatusCaptured, p.Status)
			op, err := s.Operation(ctx, finOp.ID)
			require.NoError(t, err)
			assert.Equal(t, service.OpSucceeded, op.State)
			assert.True(t, finEvents[0].First, "the first ledger event of pay_fin")
			assert.False(t, finEvents[1].First, "the second waits for the first")
			p, err = s.Get(ctx, "mer_1", "pay_fee")
			require.NoError(t, err)
			assert.Equal(t, int64(75), p.Fee)
			if tt.refuse != "start" {
				require.NotNil(t, capOp)
				op, err := s.Operation(ctx, capOp.ID)
				require.NoError(t, err)
				assert.Equal(t, service.OpProcessing, op.State)
			}
			evs, err := s.Events(ctx, "", 10)
			require.NoError(t, err)
			assert.Len(t, evs, map[bool]int{true: 0, false: 1}[tt.refuse == "commit"], "the refused commit queued no event")
		})
	}
}
