package ledgerd_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/eventsd"
	"github.com/obolpay/obol/ledger/ledgerd"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// TestDisputeEventsReachEventsd: a dispute's lifecycle, imported through
// settlement files into a running ledgerd, reaches the real eventsd (on
// SQLite) through the ledger's outbox and relay: dispute.created,
// dispute.updated, dispute.closed and settlement.reconciled, each once,
// with the ids the ledger assigned.
func TestDisputeEventsReachEventsd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	ev, err := eventsd.Start(ctx, eventsd.Config{SQLitePath: filepath.Join(dir, "events.db"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Token: "evt-token", SealKey: make([]byte, 32), DevLoopback: true})
	require.NoError(t, err)
	defer ev.Close()
	evDone := make(chan error, 1)
	go func() { evDone <- ev.Serve(ctx) }()
	conn, err := grpc.NewClient(ev.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	evc := eventsv1.NewEventLogServiceClient(conn)

	l, err := ledgerd.Start(ctx, ledgerd.Config{SQLitePath: filepath.Join(dir, "ledger.db"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Token: "ledger-token", Events: evc, EventsToken: "evt-token", EventsEvery: 20 * time.Millisecond})
	require.NoError(t, err)
	defer l.Close()
	lDone := make(chan error, 1)
	go func() { lDone <- l.Serve(ctx) }()
	defer func() { cancel(); <-lDone; <-evDone }()

	lctx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer ledger-token")) // the service called in process
	svc := l.Service
	for _, e := range []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED} {
		_, err := svc.RecordPayment(lctx, &ledgerv1.RecordPaymentRequest{Event: e, PaymentId: "pay_1", MerchantId: "mer_1", Currency: "USD", Amount: 3000,
			Acquirer: "simulator", AcquirerReference: "sim_1"})
		require.NoError(t, err)
	}
	const h = "acquirer_reference,amount,fee,currency,settled_date,type,reason,report_id\n"
	for i, file := range []string{
		"sim_1,3000,117,USD,2026-11-20,capture,,stl_1\nsim_1,-3000,1500,USD,2026-11-20,chargeback,product_not_received,stl_1\n",
		"sim_1,0,0,USD,2026-11-21,dispute_review,,stl_2\n",
		"sim_1,3000,1500,USD,2026-11-22,dispute_won,,stl_3\n",
	} {
		rep, err := svc.ImportSettlement(lctx, &ledgerv1.ImportSettlementRequest{Acquirer: "simulator", Csv: h + file})
		require.NoError(t, err)
		require.Zero(t, rep.GetUnmatched()+rep.GetMismatched(), "file %d: %v", i+1, rep)
	}
	want := map[string]int{"dispute.created": 1, "dispute.updated": 1, "dispute.closed": 1, "settlement.reconciled": 3}
	ectx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer evt-token")
	var got map[string]int
	var ids []string
	require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
		resp, err := evc.ListEvents(ectx, &eventsv1.EventLogListEventsRequest{MerchantId: "mer_1", Request: &eventsv1.ListEventsRequest{PageSize: 100}})
		if err != nil {
			return err
		}
		got, ids = map[string]int{}, nil
		for _, e := range resp.GetEvents() {
			got[e.GetType()]++
			ids = append(ids, e.GetId())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return errors.New("not yet: " + fmt.Sprint(got))
		}
		// eventsd holds an event before the relay marks it delivered in
		// the ledger's outbox: wait for that bookkeeping too.
		c, err := l.Book.Store().CountOutbox(ctx)
		if err != nil {
			return err
		}
		if c.Pending+c.Dead != 0 {
			return fmt.Errorf("outbox not settled yet: %+v", c)
		}
		return nil
	}), "the ledger's events at eventsd")
	assert.Equal(t, want, got)
	// The outbox agrees, every entry delivered, with the same ids.
	c, err := l.Book.Store().CountOutbox(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 6, c.Delivered)
	assert.Zero(t, c.Pending+c.Dead)
	out, err := l.Book.Store().OutboxEvents(ctx, 0, 100)
	require.NoError(t, err)
	var outIDs []string
	for _, e := range out {
		outIDs = append(outIDs, e.ID)
	}
	assert.ElementsMatch(t, outIDs, ids, "eventsd holds the ids the ledger assigned")
	closed, err := evc.ListEvents(ectx, &eventsv1.EventLogListEventsRequest{MerchantId: "mer_1", Request: &eventsv1.ListEventsRequest{Types: []string{"dispute.closed"}}})
	require.NoError(t, err)
	require.Len(t, closed.GetEvents(), 1)
	assert.Equal(t, "won", closed.GetEvents()[0].GetData().GetFields()["status"].GetStringValue())
	other, err := evc.ListEvents(ectx, &eventsv1.EventLogListEventsRequest{MerchantId: "mer_2", Request: &eventsv1.ListEventsRequest{}})
	require.NoError(t, err)
	assert.Empty(t, other.GetEvents(), "another merchant sees none")
}
