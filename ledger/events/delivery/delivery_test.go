package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/delivery"
	"github.com/obolpay/obol/ledger/events/server"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/store/storetest"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// receiver records every request; fail(n) answers 500 to the first n.
type receiver struct {
	mu     sync.Mutex
	got    []request
	failN  int
	status int
	srv    *httptest.Server
}

type request struct {
	ID, Timestamp, Signature string
	Body                     []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: 200}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		r.mu.Lock()
		r.got = append(r.got, request{q.Header.Get("webhook-id"), q.Header.Get("webhook-timestamp"), q.Header.Get("webhook-signature"), b})
		st := r.status
		if r.failN > 0 {
			r.failN--
			st = 500
		}
		r.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

type env struct {
	st    *store.Store
	svc   *server.Service
	disp  *delivery.Dispatcher
	clock *clock
	ctx   context.Context
}

const token = "events-test-token"

func newEnv(t *testing.T, st *store.Store, policy *webhook.Policy) *env {
	sealer, err := webhook.NewSealer(make([]byte, 32))
	require.NoError(t, err)
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	svc := server.New(server.Config{Store: st, Policy: policy, Sealer: sealer, Token: token, Now: c.Now})
	disp := delivery.New(delivery.Config{Store: st, Sender: webhook.NewSender(policy, time.Second, nil), Sealer: sealer, Now: c.Now, Jitter: func() float64 { return 0.5 }})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
	return &env{st: st, svc: svc, disp: disp, clock: c, ctx: ctx}
}

func (e *env) endpoint(t *testing.T, url string, types ...string) *eventsv1.WebhookEndpoint {
	ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.CreateWebhookEndpointRequest{Url: url, Events: types}})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ep.Secret, "whsec_"))
	return ep
}

func (e *env) publish(t *testing.T, ids ...string) {
	var evs []*eventsv1.PublishedEvent
	for _, id := range ids {
		evs = append(evs, &eventsv1.PublishedEvent{Id: id, Type: "payment.captured", MerchantId: "m1", CreatedAt: timestamppb.New(e.clock.Now()),
			ObjectType: "payment", ObjectId: "pay_" + id, ObjectVersion: 2, Data: []byte(`{"id":"pay_` + id + `","status":"captured","amount":1000}`)})
	}
	_, err := e.svc.PublishEvents(e.ctx, &eventsv1.PublishEventsRequest{Events: evs})
	require.NoError(t, err)
}

func (e *env) run(t *testing.T) int {
	n, err := e.disp.RunOnce(context.Background())
	require.NoError(t, err)
	return n
}

func verify(t *testing.T, secret string, r request, now time.Time) error {
	t.Helper()
	return webhook.Verify(secret, r.ID, r.Timestamp, r.Signature, r.Body, now, 5*time.Minute)
}

func TestDelivery(t *testing.T) {
	dev := &webhook.Policy{DevLoopback: true}
	for name, open := range storetest.Backends() {
		t.Run(name, func(t *testing.T) {
			t.Run("retries with backoff until the receiver answers; attempts are recorded", func(t *testing.T) {
				e := newEnv(t, open(t), dev)
				rcv := newReceiver(t)
				rcv.failN = 3
				ep := e.endpoint(t, rcv.srv.URL+"/hook", "payment.captured")
				e.publish(t, "evt_1")
				assert.Equal(t, 1, e.run(t))
				for i, wait := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
					// The jitter draws the middle of the upper half: 3/4 of the step.
					assert.Equal(t, 0, e.run(t), "not due before its backoff (attempt %d)", i+2)
					e.clock.Advance(wait * 3 / 4)
					assert.Equal(t, 1, e.run(t), "due after its backoff (attempt %d)", i+2)
				}
				reqs := rcv.requests()
				require.Len(t, reqs, 4)
				for _, r := range reqs {
					assert.Equal(t, "evt_1", r.ID, "every retry has the same webhook-id")
					require.NoError(t, verify(t, ep.Secret, r, e.clock.Now()))
				}
				var body delivery.Payload
				require.NoError(t, json.Unmarshal(reqs[3].Body, &body))
				assert.Equal(t, "payment.captured", body.Type)
				assert.JSONEq(t, `{"id":"pay_evt_1","status":"captured","amount":1000}`, string(body.Data))
				atts, err := e.svc.ListDeliveryAttempts(e.ctx, &eventsv1.EventLogListDeliveryAttemptsRequest{MerchantId: "m1", Request: &eventsv1.ListDeliveryAttemptsRequest{EndpointId: ep.Id}})
				require.NoError(t, err)
				require.Len(t, atts.Attempts, 4)
				assert.True(t, atts.Attempts[0].Succeeded)
				assert.Equal(t, int32(4), atts.Attempts[0].Attempt)
				assert.Equal(t, "HTTP 500", atts.Attempts[3].Error)
				assert.Equal(t, int32(500), atts.Attempts[3].ResponseStatus)
				e.clock.Advance(time.Hour)
				assert.Equal(t, 0, e.run(t), "delivered: nothing more")
			})
			t.Run("an endpoint failing for three days is disabled, with an event", func(t *testing.T) {
				e := newEnv(t, open(t), dev)
				bad := newReceiver(t)
				bad.status = 503
				watch := newReceiver(t)
				ep := e.endpoint(t, bad.srv.URL, "*")
				e.endpoint(t, watch.srv.URL, "webhook_endpoint.disabled")
				e.publish(t, "evt_1")
				for range 200 {
					e.run(t)
					e.clock.Advance(12 * time.Hour)
					got, err := e.st.Endpoint(context.Background(), "m1", ep.Id)
					require.NoError(t, err)
					if got.Status == store.StatusDisabled {
						break
					}
				}
				got, err := e.svc.GetWebhookEndpoint(e.ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.GetWebhookEndpointRequest{Id: ep.Id}})
				require.NoError(t, err)
				assert.Equal(t, "disabled", got.Status)
				assert.Contains(t, got.DisabledReason, "HTTP 503")
				assert.Empty(t, got.Secret, "the secret is never shown again")
				n := len(bad.requests())
				assert.GreaterOrEqual(t, n, 6, "retried for three days")
				e.run(t)
				reqs := watch.requests()
				require.Len(t, reqs, 1)
				var body delivery.Payload
				require.NoError(t, json.Unmarshal(reqs[0].Body, &body))
				assert.Equal(t, "webhook_endpoint.disabled", body.Type)
				assert.Equal(t, ep.Id, body.ObjectID)
				e.publish(t, "evt_2")
				e.clock.Advance(time.Hour)
				e.run(t)
				assert.Len(t, bad.requests(), n, "a disabled endpoint gets nothing")
				_, err = e.svc.UpdateWebhookEndpoint(e.ctx, &eventsv1.EventLogUpdateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.UpdateWebhookEndpointRequest{Id: ep.Id, Status: proto.String("enabled")}})
				require.NoError(t, err)
				bad.mu.Lock()
				bad.status = 200
				bad.mu.Unlock()
				e.publish(t, "evt_3")
				e.run(t)
				assert.Equal(t, "evt_3", bad.requests()[len(bad.requests())-1].ID, "re-enabled: new events are delivered (none were queued while disabled)")
				assert.Len(t, bad.requests(), n+1)
			})
			t.Run("rotation signs with both secrets during the overlap", func(t *testing.T) {
				e := newEnv(t, open(t), dev)
				rcv := newReceiver(t)
				ep := e.endpoint(t, rcv.srv.URL, "*")
				rot, err := e.svc.RotateWebhookEndpointSecret(e.ctx, &eventsv1.EventLogRotateWebhookEndpointSecretRequest{MerchantId: "m1", Request: &eventsv1.RotateWebhookEndpointSecretRequest{Id: ep.Id, OverlapSeconds: proto.Int64(3600)}})
				require.NoError(t, err)
				require.NotEqual(t, ep.Secret, rot.Secret)
				e.publish(t, "evt_1")
				e.run(t)
				r := rcv.requests()[0]
				assert.Len(t, strings.Fields(r.Signature), 2)
				require.NoError(t, verify(t, rot.Secret, r, e.clock.Now()))
				require.NoError(t, verify(t, ep.Secret, r, e.clock.Now()), "the old secret still verifies")
				e.clock.Advance(time.Hour + time.Second)
				e.publish(t, "evt_2")
				e.run(t)
				r = rcv.requests()[1]
				assert.Len(t, strings.Fields(r.Signature), 1)
				require.NoError(t, verify(t, rot.Secret, r, e.clock.Now()))
				require.Error(t, verify(t, ep.Secret, r, e.clock.Now()), "after the overlap the old secret fails")
			})
			t.Run("redelivery and test events keep webhook-id semantics", func(t *testing.T) {
				e := newEnv(t, open(t), dev)
				rcv := newReceiver(t)
				ep := e.endpoint(t, rcv.srv.URL, "payment.captured")
				e.publish(t, "evt_1")
				e.run(t)
				d, err := e.svc.RedeliverEvent(e.ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: "m1", Request: &eventsv1.RedeliverEventRequest{Id: "evt_1", EndpointId: ep.Id}})
				require.NoError(t, err)
				assert.Equal(t, "pending", d.Status)
				test, err := e.svc.SendTestEvent(e.ctx, &eventsv1.EventLogSendTestEventRequest{MerchantId: "m1", Request: &eventsv1.SendTestEventRequest{Id: ep.Id}})
				require.NoError(t, err)
				assert.Equal(t, "webhook_endpoint.test", test.Type)
				assert.Equal(t, 2, e.run(t))
				ids := []string{}
				for _, r := range rcv.requests() {
					ids = append(ids, r.ID)
				}
				assert.ElementsMatch(t, []string{"evt_1", "evt_1", test.Id}, ids, "a test event goes to its endpoint even if it does not subscribe to the type")
			})
			t.Run("a private address is refused at delivery (DNS rebinding)", func(t *testing.T) {
				res := &flipResolver{addr: "93.184.215.14"}
				e := newEnv(t, open(t), &webhook.Policy{Resolver: res})
				rcv := newReceiver(t)
				port := rcv.srv.URL[strings.LastIndex(rcv.srv.URL, ":"):]
				ep := e.endpoint(t, "https://hooks.example"+port+"/x", "*")
				res.set("127.0.0.1")
				e.publish(t, "evt_1")
				e.run(t)
				assert.Empty(t, rcv.requests())
				atts, err := e.svc.ListDeliveryAttempts(e.ctx, &eventsv1.EventLogListDeliveryAttemptsRequest{MerchantId: "m1", Request: &eventsv1.ListDeliveryAttemptsRequest{EndpointId: ep.Id}})
				require.NoError(t, err)
				require.Len(t, atts.Attempts, 1)
				assert.Contains(t, atts.Attempts[0].Error, "loopback")
			})
		})
	}
}

type flipResolver struct {
	mu   sync.Mutex
	addr string
}

func (f *flipResolver) set(a string) { f.mu.Lock(); f.addr = a; f.mu.Unlock() }
func (f *flipResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []netip.Addr{netip.MustParseAddr(f.addr)}, nil
}
