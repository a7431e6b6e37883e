package eventsd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/eventsd"
	"github.com/obolpay/obol/ledger/events/store"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// BenchmarkDelivery32Endpoints: eventsd on PostgreSQL delivers to 32
// endpoints (one per merchant, each its own loopback receiver) while
// events are published in batches of 100 as fast as eventsd takes them;
// it reports events delivered per second and the p50/p99 latency from
// PublishEvents to the receiver's 200 (mostly queueing: the publisher
// outruns the deliveries).
// go test -run '^$' -bench Delivery32 -benchtime 3000x ./ledger/events/eventsd
func BenchmarkDelivery32Endpoints(b *testing.B) { benchDelivery(b, 100, 0) }

// BenchmarkDelivery32EndpointsPaced publishes 200 events/s (batches of 20
// every 100 ms), below the delivery rate: the latency without a backlog.
func BenchmarkDelivery32EndpointsPaced(b *testing.B) { benchDelivery(b, 20, 100*time.Millisecond) }

func benchDelivery(b *testing.B, batch int, every time.Duration) {
	const endpoints = 32
	url := testenv.SharedPostgres(b).NewDatabase(b, "events", store.MigrateURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := eventsd.Start(ctx, eventsd.Config{PostgresURL: url, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: token,
		SealKey: bytes.Repeat([]byte{7}, 32), DevLoopback: true, Concurrency: 64})
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx) }()
	defer func() { cancel(); <-done; in.Close() }()
	conn, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(b, err)
	defer conn.Close()
	c := eventsv1.NewEventLogServiceClient(conn)
	actx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)

	var mu sync.Mutex
	var lat []time.Duration
	seen := map[string]bool{}
	all := make(chan struct{})
	want := b.N
	for i := range endpoints {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var p struct {
				Data struct{ T int64 } `json:"data"`
			}
			_ = json.Unmarshal(body, &p)
			now := time.Now()
			mu.Lock()
			if id := r.Header.Get("webhook-id"); !seen[id] {
				seen[id] = true
				lat = append(lat, now.Sub(time.Unix(0, p.Data.T)))
				if len(seen) == want {
					close(all)
				}
			}
			mu.Unlock()
		}))
		defer srv.Close()
		_, err := c.CreateWebhookEndpoint(actx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: fmt.Sprintf("m%02d", i),
			Request: &eventsv1.CreateWebhookEndpointRequest{Url: srv.URL + "/hook", Events: []string{"*"}}})
		require.NoError(b, err)
	}
	var tick <-chan time.Time
	if every > 0 {
		tk := time.NewTicker(every) // the load's pace, not a synchronisation
		defer tk.Stop()
		tick = tk.C
	}
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n += batch {
		if tick != nil && n > 0 {
			<-tick
		}
		var evs []*eventsv1.PublishedEvent
		t := time.Now()
		for i := n; i < min(n+batch, b.N); i++ {
			evs = append(evs, &eventsv1.PublishedEvent{Id: fmt.Sprintf("evt_b%d_%d", b.N, i), Type: "payment.captured", MerchantId: fmt.Sprintf("m%02d", i%endpoints),
				CreatedAt: timestamppb.New(t), ObjectType: "payment", ObjectId: fmt.Sprintf("pay_%d", i), ObjectVersion: 1,
				Data: []byte(fmt.Sprintf(`{"id":"pay_%d","amount":1000,"t":%d}`, i, t.UnixNano()))})
		}
		_, err := c.PublishEvents(actx, &eventsv1.PublishEventsRequest{Events: evs})
		require.NoError(b, err)
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("only %d of %d delivered", len(seen), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
