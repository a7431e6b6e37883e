package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/ledger/events/delivery"
	"github.com/obolpay/obol/ledger/events/server"
	"github.com/obolpay/obol/ledger/events/store/storetest"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// TestHangingMerchantDoesNotHoldUpOthers reproduces the attack of issue
// 17: merchant B's endpoints hang (they never answer within the send
// timeout) with hundreds of due deliveries, older than merchant A's one;
// A's delivery still arrives at once, because B holds at most
// PerEndpoint attempts per endpoint and PerMerchant in all. B's test
// events beyond the rate limit are refused with 429.
func TestHangingMerchantDoesNotHoldUpOthers(t *testing.T) {
	dev := &webhook.Policy{DevLoopback: true}
	for name, open := range storetest.Backends() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, open(t), dev)
			// A send timeout far longer than the test: a hung attempt
			// frees its worker only when the test ends.
			const sendTimeout = 10 * time.Minute
			sealer, err := webhook.NewSealer(make([]byte, 32))
			require.NoError(t, err)
			disp := delivery.New(delivery.Config{Store: e.st, Sender: webhook.NewSender(dev, sendTimeout, nil), Sealer: sealer, Now: e.clock.Now,
				Concurrency: 64, Poll: time.Hour})

			hung := make(chan string, 4096)
			release := make(chan struct{})
			hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hung <- r.Header.Get("webhook-id")
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(hang.Close)
			t.Cleanup(func() { close(release) }) // before hang.Close
			got := make(chan string, 16)
			okA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("webhook-id") }))
			t.Cleanup(okA.Close)

			create := func(merchant, url string) string {
				ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: merchant,
					Request: &eventsv1.CreateWebhookEndpointRequest{Url: url, Events: []string{"*"}}})
				require.NoError(t, err)
				return ep.Id
			}
			var bEndpoints []string
			for range 5 {
				bEndpoints = append(bEndpoints, create("mB", hang.URL+"/hook"))
			}
			create("mA", okA.URL+"/hook")

			// The attack: test events, then hundreds of due deliveries.
			for i := range 12 {
				_, err := e.svc.SendTestEvent(e.ctx, &eventsv1.EventLogSendTestEventRequest{MerchantId: "mB", Request: &eventsv1.SendTestEventRequest{Id: bEndpoints[0]}})
				if i < 10 {
					require.NoError(t, err, i)
					continue
				}
				ae := apierr.From(err)
				require.NotNil(t, ae, i)
				assert.Equal(t, http.StatusTooManyRequests, ae.HTTPStatus())
				assert.Equal(t, server.CodeRateLimited, ae.Code)
				assert.Equal(t, "60", ae.RetryAfterSeconds(), "the clock stands still: the window ends in a minute")
			}
			publish := func(merchant string, ids ...string) {
				var evs []*eventsv1.PublishedEvent
				for _, id := range ids {
					evs = append(evs, &eventsv1.PublishedEvent{Id: id, Type: "payment.captured", MerchantId: merchant, CreatedAt: timestamppb.New(e.clock.Now()),
						ObjectType: "payment", ObjectId: "pay_" + id, ObjectVersion: 1, Data: []byte(`{"id":"pay_` + id + `"}`)})
				}
				_, err := e.svc.PublishEvents(e.ctx, &eventsv1.PublishEventsRequest{Events: evs})
				require.NoError(t, err)
			}
			var ids []string
			for i := range 300 {
				ids = append(ids, fmt.Sprintf("evt_b%03d", i))
			}
			publish("mB", ids...)

			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			go func() { defer close(stopped); disp.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-stopped }) // first: the hung attempts end

			deadline := time.After(30 * time.Second) // a failure guard, not synchronisation
			perMerchant := 64 / 4
			for range perMerchant {
				select {
				case <-hung:
				case <-deadline:
					t.Fatal("merchant B's attempts did not start")
				}
			}
			e.clock.Advance(time.Millisecond)
			publish("mA", "evt_a")
			start := time.Now()
			disp.Notify()
			select {
			case id := <-got:
				assert.Equal(t, "evt_a", id)
			case <-deadline:
				t.Fatal("merchant A's delivery is held up behind merchant B's hanging endpoints")
			}
			assert.Less(t, time.Since(start), sendTimeout, "not queued behind a hung attempt")
			assert.Len(t, hung, 0, "merchant B holds at most %d attempts (4 per endpoint, 5 endpoints)", perMerchant)
		})
	}
}
