package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/service"
	"github.com/obolpay/obol/proxy/store/postgres"
)

// startFor is the store's folded read-and-start of an operation, where
// the store has it.
type startFor interface {
	StartOperationFor(ctx context.Context, merchant, id string, plan func(p *service.Payment) (*service.Operation, error)) (*service.Payment, *service.Operation, error)
}

// BenchmarkPaymentWrites drives the gateway store's calls of one payment
// (authorize + capture, as the payment service makes them: the processing
// row, the authorized state with its event, the capture's read and start,
// its finish with the ledger and merchant events, the delivered event's
// bookkeeping) from 32 concurrent payments, on PostgreSQL with durable
// commits. It reports the transactions that wrote (xids assigned, exact)
// and the transactions committed (pg_stat_database, reads included; read
// after the counters were flushed) per payment.
func BenchmarkPaymentWrites(b *testing.B) {
	if testing.Short() {
		b.Skip("needs PostgreSQL")
	}
	url := testenv.SharedPostgres(b).NewDatabase(b, "gateway", postgres.MigrateURL)
	st, err := postgres.Open(context.Background(), url)
	require.NoError(b, err)
	defer st.Close()
	admin, err := sql.Open("pgx", url)
	require.NoError(b, err)
	defer admin.Close()
	xid := func() int64 {
		var x int64
		require.NoError(b, admin.QueryRow(`SELECT pg_current_xact_id()::text::bigint`).Scan(&x))
		return x
	}
	commits := func() int64 {
		var n int64
		require.NoError(b, admin.QueryRow(`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n))
		return n
	}
	ctx := context.Background()
	var seq atomic.Int64
	pay := func() error {
		now := time.Now().UTC()
		id := fmt.Sprintf("pay_b%d", seq.Add(1))
		p := &service.Payment{ID: id, MerchantID: "mer_1", Status: service.StatusProcessing, Amount: 2500, Currency: "USD", Token: "tok_1",
			Acquirer: "simulator", CreatedAt: now, UpdatedAt: now, Version: 1}
		if err := st.Insert(ctx, p); err != nil {
			return err
		}
		p.Status, p.AcquirerReference = service.StatusAuthorized, "ch_"+id
		if err := st.Commit(ctx, p, []service.OutboxEntry{merchantEvent(p, "payment.authorized")}, now); err != nil {
			return err
		}
		plan := func(p *service.Payment) (*service.Operation, error) {
			return &service.Operation{ID: "cap_" + p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpCapture, Amount: p.Amount,
				State: service.OpProcessing, CreatedAt: now, UpdatedAt: now}, nil
		}
		var op *service.Operation
		var err error
		if sf, ok := any(st).(startFor); ok {
			p, op, err = sf.StartOperationFor(ctx, "mer_1", id, plan)
		} else {
			if p, err = st.Get(ctx, "mer_1", id); err == nil {
				op, _ = plan(p)
				err = st.StartOperation(ctx, p, op)
			}
		}
		if err != nil {
			return err
		}
		op.State = service.OpSucceeded
		p.Status, p.AmountCaptured, p.PendingOp = service.StatusCaptured, p.Amount, ""
		ledger := service.OutboxEntry{ID: "PAYMENT_EVENT_CAPTURED:" + id + ":", PaymentID: id, Request: `{}`}
		if err := st.FinishOperation(ctx, p, op, []service.OutboxEntry{ledger, merchantEvent(p, "payment.captured")}, now); err != nil {
			return err
		}
		return st.OutboxDoneFee(ctx, ledger.ID, id, 75)
	}
	require.NoError(b, pay())
	x0 := xid()
	c0 := commits()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0))) // 32 payments at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pay(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	x1 := xid()
	// The backends flush their counters at most once a second, and idle
	// ones later: poll until the count holds still for a second (at most
	// 15 s).
	c1 := commits()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		c2 := commits()
		if c2-c1 <= 1 { // the probe itself
			break
		}
		c1 = c2
	}
	b.ReportMetric(float64(x1-x0-1)/float64(b.N), "write-xacts/payment")
	b.ReportMetric(float64(c1-c0)/float64(b.N), "xacts/payment")
}

func merchantEvent(p *service.Payment, typ string) service.OutboxEntry {
	return service.OutboxEntry{Merchant: &service.MerchantEvent{ID: "evt_" + typ + "_" + p.ID, Type: typ, MerchantID: p.MerchantID, ObjectType: "payment",
		ObjectID: p.ID, ObjectVersion: p.Version + 1, Data: []byte(`{}`)}}
}
