package eventrelay

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// memOutbox is an in-memory outbox (unit tests of the relay's edge cases).
type memOutbox struct {
	mu      sync.Mutex
	entries []*memEntry
}

type memEntry struct {
	Entry
	next      time.Time
	state     string
	lastError string
}

func (o *memOutbox) add(ids ...string) {
	for _, id := range ids {
		o.entries = append(o.entries, &memEntry{Entry: Entry{Event: Event{ID: id, Type: "dispute.created", MerchantID: "mer_1", ObjectType: "dispute", ObjectID: "dp_" + id, Data: []byte(`{}`)}}, state: "pending"})
	}
}

func (o *memOutbox) Due(_ context.Context, now time.Time, limit int) ([]Entry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Entry
	for _, e := range o.entries {
		if e.state == "pending" && !e.next.After(now) && len(out) < limit {
			out = append(out, e.Entry)
		}
	}
	return out, nil
}

func (o *memOutbox) find(id string) *memEntry {
	for _, e := range o.entries {
		if e.ID == id {
			return e
		}
	}
	return nil
}

func (o *memOutbox) MarkDelivered(_ context.Context, ids []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		o.find(id).state = "delivered"
	}
	return nil
}

func (o *memOutbox) MarkFailed(_ context.Context, id string, next time.Time, lastError string, dead bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.find(id)
	e.Attempts++
	e.next, e.lastError = next, lastError
	if dead {
		e.state = "dead"
	}
	return nil
}

func (o *memOutbox) states() map[string]string {
	out := map[string]string{}
	for _, e := range o.entries {
		out[e.ID] = e.state
	}
	return out
}

// fakePublisher fails while down, refuses the ids in bad, and records
// what it stored and the tokens it got.
type fakePublisher struct {
	down   bool
	bad    map[string]bool
	stored []string
	calls  int
	tokens []string
}

func (p *fakePublisher) PublishEvents(ctx context.Context, in *eventsv1.PublishEventsRequest, _ ...grpc.CallOption) (*eventsv1.PublishEventsResponse, error) {
	p.calls++
	md, _ := metadata.FromOutgoingContext(ctx)
	p.tokens = append(p.tokens, md.Get("authorization")...)
	if p.down {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	for _, e := range in.GetEvents() {
		if p.bad[e.GetId()] {
			return nil, status.Error(codes.InvalidArgument, "bad event")
		}
	}
	for _, e := range in.GetEvents() {
		p.stored = append(p.stored, e.GetId())
	}
	return &eventsv1.PublishEventsResponse{Published: int32(len(in.GetEvents()))}, nil
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func TestRelay(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, r *Relay, o *memOutbox, p *fakePublisher, c *clock)
	}{
		{"delivers in batches", func(t *testing.T, r *Relay, o *memOutbox, p *fakePublisher, c *clock) {
			o.add("e1", "e2", "e3")
			res, err := r.Once(ctx)
			require.NoError(t, err)
			assert.Equal(t, Result{Delivered: 2}, res, "batch of 2")
			res, err = r.Once(ctx)
			require.NoError(t, err)
			assert.Equal(t, Result{Delivered: 1}, res)
			assert.Equal(t, []string{"e1", "e2", "e3"}, p.stored)
			assert.Equal(t, []string{"Bearer evt-token", "Bearer evt-token"}, p.tokens)
			assert.Equal(t, map[string]string{"e1": "delivered", "e2": "delivered", "e3": "delivered"}, o.states())
			assert.InDelta(t, 3, testutil.ToFloat64(r.relayed.WithLabelValues("delivered")), 0)
		}},
		{"backs off while eventsd is down", func(t *testing.T, r *Relay, o *memOutbox, p *fakePublisher, c *clock) {
			o.add("e1")
			p.down = true
			var waits []time.Duration
			for range 4 {
				start := c.t
				res, err := r.Once(ctx)
				require.NoError(t, err)
				assert.Equal(t, Result{Retried: 1}, res)
				e := o.find("e1")
				waits = append(waits, e.next.Sub(start))
				res, err = r.Once(ctx) // not due yet: nothing sent
				require.NoError(t, err)
				assert.Equal(t, Result{}, res)
				c.t = e.next
			}
			// Jitter is fixed at 0.5 (×1.0): 1 s, 2 s, 4 s, then the 5 s cap.
			assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}, waits)
			assert.Equal(t, 4, p.calls, "one call per due attempt")
			assert.Equal(t, "unavailable: Unavailable", o.find("e1").lastError)
			p.down = false
			res, err := r.Once(ctx)
			require.NoError(t, err)
			assert.Equal(t, Result{Delivered: 1}, res)
			assert.Equal(t, []string{"e1"}, p.stored)
		}},
		{"a refused event goes dead alone", func(t *testing.T, r *Relay, o *memOutbox, p *fakePublisher, c *clock) {
			o.add("e1", "bad")
			p.bad = map[string]bool{"bad": true}
			res, err := r.Once(ctx)
			require.NoError(t, err)
			assert.Equal(t, Result{Delivered: 1, Dead: 1}, res)
			assert.Equal(t, map[string]string{"e1": "delivered", "bad": "dead"}, o.states())
			assert.Equal(t, []string{"e1"}, p.stored)
			assert.Equal(t, "refused: InvalidArgument", o.find("bad").lastError)
			res, err = r.Once(ctx)
			require.NoError(t, err)
			assert.Equal(t, Result{}, res, "a dead event is not retried")
		}},
		{"a pass cut short leaves its events pending", func(t *testing.T, r *Relay, o *memOutbox, p *fakePublisher, c *clock) {
			o.add("e1")
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			r.cfg.Publisher = publisherFunc(func(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() })
			_, err := r.Once(cctx)
			require.Error(t, err)
			assert.True(t, errors.Is(err, context.Canceled), "%v", err)
			assert.Equal(t, map[string]string{"e1": "pending"}, o.states())
			assert.Zero(t, o.find("e1").Attempts, "not counted as a failed attempt")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, p, c := &memOutbox{}, &fakePublisher{}, &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
			r := New(Config{Outbox: o, Publisher: p, Token: "evt-token", Batch: 2, Backoff: time.Second, MaxBackoff: 5 * time.Second, Now: c.Now,
				Jitter: func() float64 { return 0.5 }})
			tt.run(t, r, o, p, c)
		})
	}
}

type publisherFunc func(ctx context.Context) error

func (f publisherFunc) PublishEvents(ctx context.Context, _ *eventsv1.PublishEventsRequest, _ ...grpc.CallOption) (*eventsv1.PublishEventsResponse, error) {
	return nil, f(ctx)
}

// TestBackoffJitter: the jitter spreads a wait over ±20 %.
func TestBackoffJitter(t *testing.T) {
	for _, j := range []float64{0, 0.999} {
		r := New(Config{Outbox: &memOutbox{}, Publisher: &fakePublisher{}, Backoff: 10 * time.Second, Jitter: func() float64 { return j }})
		got := []time.Duration{r.backoff(1), r.backoff(3), r.backoff(100)}
		sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
		lo, hi := 0.8+0.4*j-0.001, 0.8+0.4*j+0.001
		for i, base := range []time.Duration{10 * time.Second, 40 * time.Second, 5 * time.Minute} {
			assert.InDelta(t, (lo+hi)/2*float64(base), float64(got[i]), float64(base)/1000, "jitter %v, base %v", j, base)
		}
	}
}

// chanPublisher hands each batch's ids to the test goroutine.
type chanPublisher chan []string

func (p chanPublisher) PublishEvents(_ context.Context, in *eventsv1.PublishEventsRequest, _ ...grpc.CallOption) (*eventsv1.PublishEventsResponse, error) {
	var ids []string
	for _, e := range in.GetEvents() {
		ids = append(ids, e.GetId())
	}
	p <- ids
	return &eventsv1.PublishEventsResponse{Published: int32(len(ids))}, nil
}

// TestKick: a kick runs a pass at once. The tick is an hour away, so an
// event that arrives came from the kick.
func TestKick(t *testing.T) {
	o, p := &memOutbox{}, make(chanPublisher)
	r := New(Config{Outbox: o, Publisher: p, Token: "evt-token"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()

	for _, id := range []string{"e1", "e2"} {
		o.mu.Lock()
		o.add(id)
		o.mu.Unlock()
		r.Kick()
		r.Kick() // a second kick while one is pending neither blocks nor is lost work
		require.Equal(t, []string{id}, <-p, "each kick's pass sends only what is new: e1 was marked delivered before e2's kick was taken")
	}
}
