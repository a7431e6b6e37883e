package server

import (
	"context"
	"strings"
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
