package gatewayd

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/idemkey"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// eventsFront serves the merchant-facing obol.events.v1.EventService at the
// gateway's address: it authenticates the merchant's secret key (through
// vaultd, like the payment calls) and forwards the call to eventsd's
// internal EventLogService with the merchant id. Events are PAN-free; the
// gateway adds nothing to them. Without eventsd configured, or with it
// down, every call is a clear unavailable error (never a fallback).
type eventsFront struct {
	eventsv1.UnimplementedEventServiceServer
	auth   func(ctx context.Context, authz string) (string, error)
	client eventsv1.EventLogServiceClient // nil: not configured
	token  string
}

var (
	errEventsOff         = apierr.New(apierr.KindUnavailable, "events_not_configured", "", "events and webhooks are not configured on this gateway (OBOL_EVENTS_ADDR)")
	errEventsUnavailable = apierr.New(apierr.KindUnavailable, apierr.CodeUnavailable, "", "the events service is unavailable; retry")
	errEventsIdempotency = apierr.Invalid("idempotency_key_not_accepted", idemkey.Field, "the events and webhook endpoint calls take no Idempotency-Key")
)

const eventsTimeout = 10 * time.Second

// errEventsParam: a path or query value that is not valid UTF-8 (only
// REST can send one: the gRPC request would not marshal).
var errEventsParam = apierr.Invalid(httpapi.CodeInvalidParameter, "", "a path or query parameter is not valid UTF-8")

// call authenticates the merchant and runs fn against eventsd.
func call[T any](s *eventsFront, ctx context.Context, req proto.Message, fn func(ctx context.Context, merchant string, opts ...grpc.CallOption) (T, error)) (T, error) {
	var zero T
	md, _ := metadata.FromIncomingContext(ctx)
	var authz string
	if v := md.Get("authorization"); len(v) > 0 {
		authz = v[0]
	}
	merchant, err := s.auth(ctx, authz)
	if err != nil {
		return zero, err
	}
	if len(md.Get(idemkey.MD)) > 0 {
		return zero, errEventsIdempotency
	}
	if s.client == nil {
		return zero, errEventsOff
	}
	if _, err := proto.Marshal(req); err != nil {
		return zero, errEventsParam
	}
	cctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+s.token)), eventsTimeout)
	defer cancel()
	out, err := fn(cctx, merchant)
	if err != nil {
		return zero, eventsError(ctx, err)
	}
	return out, nil
}

// eventsError passes eventsd's typed errors on and turns a transport
// failure into unavailable.
func eventsError(ctx context.Context, err error) error {
	st, ok := status.FromError(err)
	if !ok || ctx.Err() != nil {
		return errEventsUnavailable
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return errEventsUnavailable
	case codes.Unauthenticated:
		// The gateway's own token was refused: a deployment error, not the
		// merchant's.
		return apierr.Wrap(apierr.KindUnavailable, apierr.CodeUnavailable, "the events service refused the gateway's token (OBOL_EVENTS_TOKEN)", err)
	}
	ae := apierr.FromStatus(st)
	if ae.Code == apierr.CodeInternal {
		// Not one of eventsd's typed errors: its text is not the merchant's.
		return apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	return ae
}

func (s *eventsFront) ListEvents(ctx context.Context, r *eventsv1.ListEventsRequest) (*eventsv1.ListEventsResponse, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.ListEventsResponse, error) {
		return s.client.ListEvents(ctx, &eventsv1.EventLogListEventsRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) GetEvent(ctx context.Context, r *eventsv1.GetEventRequest) (*eventsv1.Event, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.Event, error) {
		return s.client.GetEvent(ctx, &eventsv1.EventLogGetEventRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) CreateWebhookEndpoint(ctx context.Context, r *eventsv1.CreateWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.WebhookEndpoint, error) {
		return s.client.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) ListWebhookEndpoints(ctx context.Context, r *eventsv1.ListWebhookEndpointsRequest) (*eventsv1.ListWebhookEndpointsResponse, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.ListWebhookEndpointsResponse, error) {
		return s.client.ListWebhookEndpoints(ctx, &eventsv1.EventLogListWebhookEndpointsRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) GetWebhookEndpoint(ctx context.Context, r *eventsv1.GetWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.WebhookEndpoint, error) {
		return s.client.GetWebhookEndpoint(ctx, &eventsv1.EventLogGetWebhookEndpointRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) UpdateWebhookEndpoint(ctx context.Context, r *eventsv1.UpdateWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.WebhookEndpoint, error) {
		return s.client.UpdateWebhookEndpoint(ctx, &eventsv1.EventLogUpdateWebhookEndpointRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) DeleteWebhookEndpoint(ctx context.Context, r *eventsv1.DeleteWebhookEndpointRequest) (*eventsv1.DeleteWebhookEndpointResponse, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.DeleteWebhookEndpointResponse, error) {
		return s.client.DeleteWebhookEndpoint(ctx, &eventsv1.EventLogDeleteWebhookEndpointRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) RotateWebhookEndpointSecret(ctx context.Context, r *eventsv1.RotateWebhookEndpointSecretRequest) (*eventsv1.WebhookEndpoint, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.WebhookEndpoint, error) {
		return s.client.RotateWebhookEndpointSecret(ctx, &eventsv1.EventLogRotateWebhookEndpointSecretRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) SendTestEvent(ctx context.Context, r *eventsv1.SendTestEventRequest) (*eventsv1.Event, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.Event, error) {
		return s.client.SendTestEvent(ctx, &eventsv1.EventLogSendTestEventRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) ListDeliveryAttempts(ctx context.Context, r *eventsv1.ListDeliveryAttemptsRequest) (*eventsv1.ListDeliveryAttemptsResponse, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.ListDeliveryAttemptsResponse, error) {
		return s.client.ListDeliveryAttempts(ctx, &eventsv1.EventLogListDeliveryAttemptsRequest{MerchantId: m, Request: r}, o...)
	})
}

func (s *eventsFront) RedeliverEvent(ctx context.Context, r *eventsv1.RedeliverEventRequest) (*eventsv1.Delivery, error) {
	return call(s, ctx, r, func(ctx context.Context, m string, o ...grpc.CallOption) (*eventsv1.Delivery, error) {
		return s.client.RedeliverEvent(ctx, &eventsv1.EventLogRedeliverEventRequest{MerchantId: m, Request: r}, o...)
	})
}
