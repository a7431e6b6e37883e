package gatewayd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/idemkey"
	"github.com/obolpay/obol/ledger/events/eventsd"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// TestEventsFront: the gateway forwards the merchant's events calls to
// eventsd with the merchant id it authenticated (the stub stands for
// vaultd's key check), passes eventsd's typed errors on, refuses an
// Idempotency-Key, and fails closed when eventsd is not configured, down,
// or refuses the gateway's token.
func TestEventsFront(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	in, err := eventsd.Start(ctx, eventsd.Config{SQLitePath: filepath.Join(t.TempDir(), "events.db"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Token: "evs_test", SealKey: bytes.Repeat([]byte{1}, 32), DevLoopback: true})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done; in.Close() })
	dialTo := func(addr string) eventsv1.EventLogServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return eventsv1.NewEventLogServiceClient(conn)
	}
	auth := func(_ context.Context, authz string) (string, error) {
		switch authz {
		case "Bearer sk_test_a":
			return "mer_a", nil
		case "Bearer sk_test_b":
			return "mer_b", nil
		}
		return "", apierr.ErrUnauthenticated
	}
	front := &eventsFront{auth: auth, client: dialTo(in.Server.GRPCAddr()), token: "evs_test"}
	as := func(key string, kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(append([]string{"authorization", "Bearer " + key}, kv...)...))
	}
	ep, err := front.CreateWebhookEndpoint(as("sk_test_a"), &eventsv1.CreateWebhookEndpointRequest{Url: "http://127.0.0.1:9/hook", Events: []string{"*"}})
	require.NoError(t, err)
	got, err := front.GetWebhookEndpoint(as("sk_test_a"), &eventsv1.GetWebhookEndpointRequest{Id: ep.Id})
	require.NoError(t, err)
	assert.Equal(t, ep.Url, got.Url)

	cases := []struct {
		name        string
		f           *eventsFront
		ctx         context.Context
		kind        apierr.Kind
		code, field string
	}{
		{"another merchant's endpoint", front, as("sk_test_b"), apierr.KindNotFound, "webhook_endpoint_not_found", "id"},
		{"no key", front, context.Background(), apierr.KindUnauthenticated, apierr.CodeUnauthenticated, ""},
		{"an Idempotency-Key", front, as("sk_test_a", idemkey.MD, "k1"), apierr.KindInvalidArgument, "idempotency_key_not_accepted", idemkey.Field},
		{"not configured", &eventsFront{auth: auth}, as("sk_test_a"), apierr.KindUnavailable, "events_not_configured", ""},
		{"eventsd down", &eventsFront{auth: auth, client: dialTo("127.0.0.1:1"), token: "evs_test"}, as("sk_test_a"), apierr.KindUnavailable, apierr.CodeUnavailable, ""},
		{"the gateway's token refused", &eventsFront{auth: auth, client: dialTo(in.Server.GRPCAddr()), token: "wrong"}, as("sk_test_a"), apierr.KindUnavailable, apierr.CodeUnavailable, ""},
	}
	t.Run("a path value that is not UTF-8 is a typed 400, not eventsd's marshal error", func(t *testing.T) {
		_, err := front.GetEvent(as("sk_test_a"), &eventsv1.GetEventRequest{Id: "evt_\xff"})
		ae := apierr.From(err)
		require.NotNil(t, ae)
		assert.Equal(t, apierr.KindInvalidArgument, ae.Kind, "%v", err)
		assert.Equal(t, "invalid_parameter", ae.Code)
		assert.NotContains(t, ae.Message, "grpc")
	})
	t.Run("test events beyond eventsd's rate limit are a 429 rate_limited with Retry-After", func(t *testing.T) {
		var err error
		for range 11 {
			if _, err = front.SendTestEvent(as("sk_test_a"), &eventsv1.SendTestEventRequest{Id: ep.Id}); err != nil {
				break
			}
		}
		ae := apierr.From(err)
		require.NotNil(t, ae)
		assert.Equal(t, apierr.KindRateLimited, ae.Kind, "%v", err)
		assert.Equal(t, "rate_limited", ae.Code)
		assert.Equal(t, "id", ae.Field)
		w := httptest.NewRecorder()
		httpapi.WriteError(w, ae)
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.NotEmpty(t, w.Header().Get("Retry-After"), "the delay survives the hop from eventsd")
	})
	t.Run("an untyped eventsd error is an internal error without its text", func(t *testing.T) {
		f := &eventsFront{auth: auth, client: untypedFailure{}, token: "evs_test"}
		_, err := f.GetWebhookEndpoint(as("sk_test_a"), &eventsv1.GetWebhookEndpointRequest{Id: ep.Id})
		ae := apierr.From(err)
		require.NotNil(t, ae)
		assert.Equal(t, apierr.KindInternal, ae.Kind)
		assert.Equal(t, apierr.CodeInternal, ae.Code)
		assert.NotContains(t, ae.Message, "pq: relation")
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.f.GetWebhookEndpoint(c.ctx, &eventsv1.GetWebhookEndpointRequest{Id: ep.Id})
			ae := apierr.From(err)
			require.NotNil(t, ae)
			assert.Equal(t, c.kind, ae.Kind, "%v", err)
			assert.Equal(t, c.code, ae.Code)
			if c.field != "" {
				assert.Equal(t, c.field, ae.Field)
			}
		})
	}
}

// untypedFailure is an eventsd answering an error without Obol's details.
type untypedFailure struct{ eventsv1.EventLogServiceClient }

func (untypedFailure) GetWebhookEndpoint(context.Context, *eventsv1.EventLogGetWebhookEndpointRequest, ...grpc.CallOption) (*eventsv1.WebhookEndpoint, error) {
	return nil, status.Error(codes.Internal, "pq: relation \"endpoints\" does not exist")
}
