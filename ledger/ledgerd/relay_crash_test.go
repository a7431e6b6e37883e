package ledgerd_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/ledger/ledgerd"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/sqlite"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// eventLog is a small in-test EventLogService: PublishEvents stores a
// batch atomically and is idempotent by event id, as eventsd's is (the
// same id and content again is a duplicate; other content refuses the
// batch).
type eventLog struct {
	eventsv1.UnimplementedEventLogServiceServer
	mu         sync.Mutex
	byID       map[string][]byte
	calls      int
	duplicates int
	// stored runs after call n stored its batch, before the answer.
	stored func(n int)
}

func (l *eventLog) PublishEvents(ctx context.Context, req *eventsv1.PublishEventsRequest) (*eventsv1.PublishEventsResponse, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) != 1 || md.Get("authorization")[0] != "Bearer evt-token" {
		return nil, status.Error(codes.Unauthenticated, "token")
	}
	l.mu.Lock()
	out := &eventsv1.PublishEventsResponse{}
	for _, e := range req.GetEvents() {
		if have, ok := l.byID[e.GetId()]; ok && !bytes.Equal(have, e.GetData()) {
			l.mu.Unlock()
			return nil, status.Error(codes.AlreadyExists, "event "+e.GetId()+" published before with other content")
		}
	}
	for _, e := range req.GetEvents() {
		if _, ok := l.byID[e.GetId()]; ok {
			l.duplicates++
			out.Duplicates++
			continue
		}
		l.byID[e.GetId()] = e.GetData()
		out.Published++
	}
	l.calls++
	n, hook := l.calls, l.stored
	l.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return out, nil
}

func relayTo(t *testing.T, st store.Store, addr string) *eventrelay.Relay {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return eventrelay.New(eventrelay.Config{Outbox: ledgerd.Outbox(st), Publisher: eventsv1.NewEventLogServiceClient(conn), Token: "evt-token", Name: "ledger", Batch: 50})
}

func drain(t *testing.T, r *eventrelay.Relay) {
	t.Helper()
	for range 100 {
		res, err := r.Once(context.Background())
		require.NoError(t, err)
		if res == (eventrelay.Result{}) {
			return
		}
	}
	t.Fatal("the outbox never drained")
}

// TestRelayChild is the relay process TestRelaySIGKILL kills; it does
// nothing unless started by it.
func TestRelayChild(t *testing.T) {
	db, addr := os.Getenv("OBOL_RELAY_CHILD_DB"), os.Getenv("OBOL_RELAY_CHILD_ADDR")
	if db == "" {
		t.Skip("the relay process of TestRelaySIGKILL")
	}
	st, err := sqlite.Open(context.Background(), db)
	require.NoError(t, err)
	drain(t, relayTo(t, st, addr))
}

// TestRelaySIGKILL: the relay process is SIGKILLed mid-batch, after
// eventsd stored the batch and before the relay heard back (so before it
// marked the batch delivered). A new relay sends that batch again: at
// eventsd every event of the outbox is there exactly once by id (the
// resent ones counted as duplicates), none is lost, and the outbox ends
// all delivered.
func TestRelaySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a relay process")
	}
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "ledger.db")
	st, err := sqlite.Open(ctx, db)
	require.NoError(t, err)
	defer st.Close()
	const n = 230
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var want []string
	for i := range n {
		id := fmt.Sprintf("evt_%04d", i)
		want = append(want, id)
		require.NoError(t, st.AddEvents(ctx, store.Event{ID: id, Type: "dispute.created", MerchantID: "mer_1", ObjectType: "dispute",
			ObjectID: fmt.Sprintf("dp_%04d", i), ObjectVersion: 1, Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), CreatedAt: at}))
	}

	log := &eventLog{byID: map[string][]byte{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	eventsv1.RegisterEventLogServiceServer(srv, log)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	child := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1")
	child.Env = append(os.Environ(), "OBOL_RELAY_CHILD_DB="+db, "OBOL_RELAY_CHILD_ADDR="+lis.Addr().String())
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	// The third batch, once stored, waits in the handler (its answer never
	// reaches the relay) while the test kills the relay process.
	third, killed := make(chan struct{}), make(chan struct{})
	log.mu.Lock()
	log.stored = func(call int) {
		if call == 3 {
			close(third)
			<-killed
		}
	}
	log.mu.Unlock()
	require.NoError(t, child.Start())
	select {
	case <-third:
		require.NoError(t, child.Process.Kill())
		_ = child.Wait()
		close(killed)
	case <-time.After(60 * time.Second):
		_ = child.Process.Kill()
		t.Fatalf("the relay process never reached its third batch:\n%s", out.String())
	}
	log.mu.Lock()
	log.stored = nil
	assert.Len(t, log.byID, 150, "three batches at eventsd when the relay died")
	log.mu.Unlock()
	c, err := st.CountOutbox(ctx)
	require.NoError(t, err)
	assert.Equal(t, store.OutboxCounts{Pending: n - 100, Delivered: 100}, c, "the killed batch is still pending in the outbox")

	drain(t, relayTo(t, st, lis.Addr().String())) // the restarted relay
	log.mu.Lock()
	defer log.mu.Unlock()
	var got []string
	for id := range log.byID {
		got = append(got, id)
	}
	assert.ElementsMatch(t, want, got, "every event at eventsd, once by id: none lost")
	assert.Equal(t, 50, log.duplicates, "the killed batch was sent again, and deduplicated")
	c, err = st.CountOutbox(ctx)
	require.NoError(t, err)
	assert.Equal(t, store.OutboxCounts{Delivered: n}, c)
}
