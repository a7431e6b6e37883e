package server

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/store/storetest"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newService(t *testing.T) (*Service, context.Context) {
	st := storetest.SQLite(t)
	sealer, err := webhook.NewSealer(make([]byte, 32))
	require.NoError(t, err)
	svc := New(Config{Store: st, Policy: &webhook.Policy{DevLoopback: true}, Sealer: sealer, Token: "tok"})
	return svc, metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok"))
}

func ev(mut func(e *eventsv1.PublishedEvent)) *eventsv1.PublishEventsRequest {
	e := &eventsv1.PublishedEvent{Id: "evt_1", Type: "payment.captured", MerchantId: "m1", CreatedAt: timestamppb.New(time.Unix(1_800_000_000, 0)),
		ObjectType: "payment", ObjectId: "pay_1", ObjectVersion: 1, Data: []byte(`{"id":"pay_1"}`)}
	if mut != nil {
		mut(e)
	}
	return &eventsv1.PublishEventsRequest{Events: []*eventsv1.PublishedEvent{e}}
}

func requireAPIError(t *testing.T, err error, kind apierr.Kind, code, field string) {
	t.Helper()
	ae := apierr.From(err)
	require.NotNil(t, ae, "%v", err)
	assert.Equal(t, kind, ae.Kind, "%v", err)
	assert.Equal(t, code, ae.Code)
	assert.Equal(t, field, ae.Field)
}

func TestPublishValidation(t *testing.T) {
	cases := []struct {
		name        string
		mut         func(e *eventsv1.PublishedEvent)
		code, field string
	}{
		{"id without evt_", func(e *eventsv1.PublishedEvent) { e.Id = "1" }, "event_id_invalid", "events[0].id"},
		{"id with a space", func(e *eventsv1.PublishedEvent) { e.Id = "evt_ 1" }, "event_id_invalid", "events[0].id"},
		{"unknown type", func(e *eventsv1.PublishedEvent) { e.Type = "payment.exploded" }, "event_type_invalid", "events[0].type"},
		{"test type from a producer", func(e *eventsv1.PublishedEvent) { e.Type = "webhook_endpoint.test" }, "event_type_invalid", "events[0].type"},
		{"no merchant", func(e *eventsv1.PublishedEvent) { e.MerchantId = "" }, "field_required", "events[0].merchant_id"},
		{"no time", func(e *eventsv1.PublishedEvent) { e.CreatedAt = nil }, "field_required", "events[0].created_at"},
		{"no object", func(e *eventsv1.PublishedEvent) { e.ObjectId = "" }, "object_id_invalid", "events[0].object_id"},
		{"data not an object", func(e *eventsv1.PublishedEvent) { e.Data = []byte(`[1]`) }, "data_invalid", "events[0].data"},
		{"data not JSON", func(e *eventsv1.PublishedEvent) { e.Data = []byte(`{`) }, "data_invalid", "events[0].data"},
		{"data with a card number", func(e *eventsv1.PublishedEvent) { e.Data = []byte(`{"note":"4242 4242 4242 4242"}`) }, "data_contains_card_number", "events[0].data"},
		{"data too large", func(e *eventsv1.PublishedEvent) { e.Data = []byte(`{"a":"` + strings.Repeat("x", MaxData) + `"}`) }, "data_too_large", "events[0].data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, ctx := newService(t)
			_, err := svc.PublishEvents(ctx, ev(c.mut))
			requireAPIError(t, err, apierr.KindInvalidArgument, c.code, c.field)
		})
	}
	t.Run("no token", func(t *testing.T) {
		svc, _ := newService(t)
		_, err := svc.PublishEvents(context.Background(), ev(nil))
		requireAPIError(t, err, apierr.KindUnauthenticated, apierr.CodeUnauthenticated, "authorization")
	})
	t.Run("republish is a duplicate; other content is a conflict", func(t *testing.T) {
		svc, ctx := newService(t)
		r, err := svc.PublishEvents(ctx, ev(nil))
		require.NoError(t, err)
		assert.Equal(t, int32(1), r.Published)
		r, err = svc.PublishEvents(ctx, ev(func(e *eventsv1.PublishedEvent) { e.Data = []byte(`{ "id" : "pay_1" }`) }))
		require.NoError(t, err)
		assert.Equal(t, int32(1), r.Duplicates, "the same JSON, other whitespace")
		_, err = svc.PublishEvents(ctx, ev(func(e *eventsv1.PublishedEvent) { e.ObjectVersion = 2 }))
		requireAPIError(t, err, apierr.KindConflict, "event_id_reused", "events[0].id")
	})
}

func TestMerchantCallsValidation(t *testing.T) {
	svc, ctx := newService(t)
	create := func(r *eventsv1.CreateWebhookEndpointRequest) error {
		_, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: r})
		return err
	}
	cases := []struct {
		name        string
		call        func() error
		kind        apierr.Kind
		code, field string
	}{
		{"no merchant", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{Request: &eventsv1.ListEventsRequest{}})
			return err
		}, apierr.KindInvalidArgument, "field_required", "merchant_id"},
		{"page size", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: "m1", Request: &eventsv1.ListEventsRequest{PageSize: 101}})
			return err
		}, apierr.KindInvalidArgument, "page_size_invalid", "page_size"},
		{"page token", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: "m1", Request: &eventsv1.ListEventsRequest{PageToken: "nope!"}})
			return err
		}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"type filter", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: "m1", Request: &eventsv1.ListEventsRequest{Types: []string{"x"}}})
			return err
		}, apierr.KindInvalidArgument, "event_type_invalid", "types"},
		{"unknown event", func() error {
			_, err := svc.GetEvent(ctx, &eventsv1.EventLogGetEventRequest{MerchantId: "m1", Request: &eventsv1.GetEventRequest{Id: "evt_x"}})
			return err
		}, apierr.KindNotFound, "event_not_found", "id"},
		{"http url", func() error {
			return create(&eventsv1.CreateWebhookEndpointRequest{Url: "http://example.com/", Events: []string{"*"}})
		},
			apierr.KindInvalidArgument, "url_insecure", "url"},
		{"metadata url", func() error {
			return create(&eventsv1.CreateWebhookEndpointRequest{Url: "https://169.254.169.254/", Events: []string{"*"}})
		}, apierr.KindPermissionDenied, "url_address_refused", "url"},
		{"no events", func() error { return create(&eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/"}) },
			apierr.KindInvalidArgument, "field_required", "events"},
		{"bad event type", func() error {
			return create(&eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/", Events: []string{"*", "nope"}})
		}, apierr.KindInvalidArgument, "event_type_invalid", "events[1]"},
		{"unknown endpoint", func() error {
			_, err := svc.GetWebhookEndpoint(ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.GetWebhookEndpointRequest{Id: "we_x"}})
			return err
		}, apierr.KindNotFound, "webhook_endpoint_not_found", "id"},
		{"overlap too long", func() error {
			_, err := svc.RotateWebhookEndpointSecret(ctx, &eventsv1.EventLogRotateWebhookEndpointSecretRequest{MerchantId: "m1", Request: &eventsv1.RotateWebhookEndpointSecretRequest{Id: "we_x", OverlapSeconds: proto.Int64(8 * 86400)}})
			return err
		}, apierr.KindInvalidArgument, "overlap_seconds_invalid", "overlap_seconds"},
		// A NUL cannot be stored in PostgreSQL text: it reached the queries
		// and came back as 503 storage_unavailable.
		{"NUL in an event id", func() error {
			_, err := svc.GetEvent(ctx, &eventsv1.EventLogGetEventRequest{MerchantId: "m1", Request: &eventsv1.GetEventRequest{Id: "evt_\x00"}})
			return err
		}, apierr.KindNotFound, "event_not_found", "id"},
		{"NUL in an endpoint id", func() error {
			_, err := svc.GetWebhookEndpoint(ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.GetWebhookEndpointRequest{Id: "we_\x00"}})
			return err
		}, apierr.KindNotFound, "webhook_endpoint_not_found", "id"},
		{"NUL in a deleted endpoint id", func() error {
			_, err := svc.DeleteWebhookEndpoint(ctx, &eventsv1.EventLogDeleteWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.DeleteWebhookEndpointRequest{Id: "we_\x00"}})
			return err
		}, apierr.KindNotFound, "webhook_endpoint_not_found", "id"},
		{"NUL in the object filter", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: "m1", Request: &eventsv1.ListEventsRequest{ObjectId: "pay_\x00"}})
			return err
		}, apierr.KindInvalidArgument, "object_id_invalid", "object_id"},
		{"NUL in a page token", func() error {
			_, err := svc.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: "m1", Request: &eventsv1.ListEventsRequest{PageToken: EncodeCursor(store.Cursor{At: time.Unix(1_800_000_000, 0), ID: "evt_\x00"})}})
			return err
		}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"NUL in the attempts' event filter", func() error {
			_, err := svc.ListDeliveryAttempts(ctx, &eventsv1.EventLogListDeliveryAttemptsRequest{MerchantId: "m1", Request: &eventsv1.ListDeliveryAttemptsRequest{EndpointId: "we_1", EventId: "evt_\x00"}})
			return err
		}, apierr.KindInvalidArgument, "event_id_invalid", "event_id"},
		{"NUL in a redelivered event id", func() error {
			_, err := svc.RedeliverEvent(ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: "m1", Request: &eventsv1.RedeliverEventRequest{Id: "evt_\x00", EndpointId: "we_1"}})
			return err
		}, apierr.KindNotFound, "event_not_found", "id"},
		{"NUL in a description", func() error {
			return create(&eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/", Events: []string{"*"}, Description: "a\x00b"})
		}, apierr.KindInvalidArgument, "description_invalid", "description"},
		{"NUL in a published object id", func() error {
			_, err := svc.PublishEvents(ctx, ev(func(e *eventsv1.PublishedEvent) { e.ObjectId = "pay_\x00" }))
			return err
		}, apierr.KindInvalidArgument, "object_id_invalid", "events[0].object_id"},
		{"NUL in a published merchant id", func() error {
			_, err := svc.PublishEvents(ctx, ev(func(e *eventsv1.PublishedEvent) { e.MerchantId = "m\x00" }))
			return err
		}, apierr.KindInvalidArgument, "merchant_id_invalid", "events[0].merchant_id"},
		{"redeliver without endpoint", func() error {
			_, err := svc.RedeliverEvent(ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: "m1", Request: &eventsv1.RedeliverEventRequest{Id: "evt_1"}})
			return err
		}, apierr.KindInvalidArgument, "field_required", "endpoint_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireAPIError(t, c.call(), c.kind, c.code, c.field)
		})
	}
	t.Run("at most MaxEndpoints per merchant", func(t *testing.T) {
		svc, ctx := newService(t)
		for range MaxEndpoints {
			_, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m9", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
			require.NoError(t, err)
		}
		_, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m9", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
		requireAPIError(t, err, apierr.KindFailedPrecondition, "too_many_webhook_endpoints", "url")
	})
	t.Run("concurrent creations stop at MaxEndpoints", func(t *testing.T) {
		svc, ctx := newService(t)
		var wg sync.WaitGroup
		for range 3 * MaxEndpoints {
			wg.Go(func() {
				_, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m7", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
				if err != nil {
					requireAPIError(t, err, apierr.KindFailedPrecondition, "too_many_webhook_endpoints", "url")
				}
			})
		}
		wg.Wait()
		eps, err := svc.st.Endpoints(context.Background(), "m7", "", 100)
		require.NoError(t, err)
		assert.Len(t, eps, MaxEndpoints)
	})
	t.Run("redelivery to a disabled endpoint is refused, not left pending", func(t *testing.T) {
		svc, ctx := newService(t)
		_, err := svc.PublishEvents(ctx, ev(nil))
		require.NoError(t, err)
		ep, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
		require.NoError(t, err)
		setStatus := func(st string) {
			_, err := svc.UpdateWebhookEndpoint(ctx, &eventsv1.EventLogUpdateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.UpdateWebhookEndpointRequest{Id: ep.Id, Status: proto.String(st)}})
			require.NoError(t, err)
		}
		redeliver := func() error {
			_, err := svc.RedeliverEvent(ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: "m1", Request: &eventsv1.RedeliverEventRequest{Id: "evt_1", EndpointId: ep.Id}})
			return err
		}
		setStatus(store.StatusDisabled)
		requireAPIError(t, redeliver(), apierr.KindFailedPrecondition, "webhook_endpoint_disabled", "endpoint_id")
		counts, err := svc.st.DeliveryCounts(context.Background())
		require.NoError(t, err)
		assert.Zero(t, counts[store.DeliveryPending], "nothing scheduled")
		setStatus(store.StatusEnabled)
		require.NoError(t, redeliver())
	})
	t.Run("test events and redeliveries beyond the rate limit are 429 rate_limited with a retry delay", func(t *testing.T) {
		svc, ctx := newService(t)
		now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		svc.now = func() time.Time { return now }
		_, err := svc.PublishEvents(ctx, ev(nil))
		require.NoError(t, err)
		ep, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"payment.authorized"}}})
		require.NoError(t, err)
		test := func() error {
			_, err := svc.SendTestEvent(ctx, &eventsv1.EventLogSendTestEventRequest{MerchantId: "m1", Request: &eventsv1.SendTestEventRequest{Id: ep.Id}})
			return err
		}
		redeliver := func() error {
			_, err := svc.RedeliverEvent(ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: "m1", Request: &eventsv1.RedeliverEventRequest{Id: "evt_1", EndpointId: ep.Id}})
			return err
		}
		for range store.ManualBurst {
			require.NoError(t, test())
		}
		now = now.Add(20 * time.Second)
		for _, c := range []struct {
			name, field string
			call        func() error
		}{{"test event", "id", test}, {"redelivery", "endpoint_id", redeliver}} {
			err := c.call()
			requireAPIError(t, err, apierr.KindRateLimited, CodeRateLimited, c.field)
			ae := apierr.From(err)
			assert.Equal(t, 429, ae.HTTPStatus(), c.name)
			assert.Equal(t, "40", ae.RetryAfterSeconds(), c.name)
		}
		now = now.Add(40 * time.Second)
		require.NoError(t, redeliver(), "the window moved on")
	})
	t.Run("a card number in url or description is refused, nothing stored", func(t *testing.T) {
		svc, ctx := newService(t)
		ep, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
		require.NoError(t, err)
		pan := "4242 4242 4242 4242"
		cases := []struct {
			name, field string
			call        func() error
		}{
			{"create: url path", "url", func() error {
				return svcCreate(svc, ctx, &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h?c=4242424242424242", Events: []string{"*"}})
			}},
			{"create: url host", "url", func() error {
				return svcCreate(svc, ctx, &eventsv1.CreateWebhookEndpointRequest{Url: "https://4242424242424242.example.com/", Events: []string{"*"}})
			}},
			{"create: description", "description", func() error {
				return svcCreate(svc, ctx, &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}, Description: "card " + pan})
			}},
			{"update: url", "url", func() error {
				_, err := svc.UpdateWebhookEndpoint(ctx, &eventsv1.EventLogUpdateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.UpdateWebhookEndpointRequest{Id: ep.Id, Url: proto.String("https://127.0.0.1/4242-4242-4242-4242")}})
				return err
			}},
			{"update: description", "description", func() error {
				_, err := svc.UpdateWebhookEndpoint(ctx, &eventsv1.EventLogUpdateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.UpdateWebhookEndpointRequest{Id: ep.Id, Description: proto.String(pan)}})
				return err
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				requireAPIError(t, c.call(), apierr.KindInvalidArgument, CodeCardNumberInText, c.field)
			})
		}
		eps, err := svc.st.Endpoints(context.Background(), "m1", "", 100)
		require.NoError(t, err)
		require.Len(t, eps, 1)
		assert.Equal(t, "https://127.0.0.1/h", eps[0].URL)
		assert.Empty(t, eps[0].Description)
	})
	t.Run("another merchant cannot see an endpoint", func(t *testing.T) {
		ep, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.CreateWebhookEndpointRequest{Url: "https://127.0.0.1/h", Events: []string{"*"}}})
		require.NoError(t, err)
		_, err = svc.GetWebhookEndpoint(ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: "m2", Request: &eventsv1.GetWebhookEndpointRequest{Id: ep.Id}})
		requireAPIError(t, err, apierr.KindNotFound, "webhook_endpoint_not_found", "id")
		got, err := svc.GetWebhookEndpoint(ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: "m1", Request: &eventsv1.GetWebhookEndpointRequest{Id: ep.Id}})
		require.NoError(t, err)
		assert.Empty(t, got.Secret)
		stored, err := svc.st.Endpoint(context.Background(), "m1", ep.Id)
		require.NoError(t, err)
		assert.NotContains(t, stored.Secret, strings.TrimPrefix(ep.Secret, "whsec_"), "sealed at rest")
	})
}

func svcCreate(svc *Service, ctx context.Context, r *eventsv1.CreateWebhookEndpointRequest) error {
	_, err := svc.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1", Request: r})
	return err
}

// FuzzDecodeCursor: page tokens are untrusted; a decoded one re-encodes to
// itself.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(store.Cursor{At: time.Unix(1_800_000_000, 0), ID: "evt_1"}))
	f.Add("")
	f.Add("MTox")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := DecodeCursor(tok)
		if err != nil || c == nil {
			return
		}
		again, err := DecodeCursor(EncodeCursor(*c))
		require.NoError(t, err)
		assert.Equal(t, c, again)
	})
}
