package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// echoEvents answers ListEvents with what the gateway parsed from the query.
type echoEvents struct {
	eventsv1.UnimplementedEventServiceServer
}

func (echoEvents) ListEvents(_ context.Context, r *eventsv1.ListEventsRequest) (*eventsv1.ListEventsResponse, error) {
	return &eventsv1.ListEventsResponse{NextPageToken: r.GetObjectId() + "|" + r.GetPageToken() + "|" + r.GetCreatedAfter().AsTime().String()}, nil
}

// TestUnknownQueryParameterRefused: a query parameter that names no field
// of the request is a typed 400 naming it, never silently ignored (?type=
// for ?types= used to list every event); one that could carry anything is
// refused without being quoted.
func TestUnknownQueryParameterRefused(t *testing.T) {
	mux := NewMux(slog.New(slog.DiscardHandler))
	require.NoError(t, eventsv1.RegisterEventServiceHandlerServer(context.Background(), mux, echoEvents{}))
	cases := []struct {
		name, query string
		status      int
		code, field string
	}{
		{"known fields", "?types=payment.captured&object_id=pay_1&page_size=5", 200, "", ""},
		{"JSON names", "?pageSize=5&objectId=pay_1", 200, "", ""},
		{"a nested field of a known message", "?created_after.seconds=5", 200, "", ""},
		{"no query", "", 200, "", ""},
		{"singular type for types", "?type=payment.captured", 400, CodeUnknownParameter, "type"},
		{"a made-up parameter", "?merchant_id=mer_other", 400, CodeUnknownParameter, "merchant_id"},
		{"a nested unknown field", "?created_after.days=1", 400, CodeUnknownParameter, "created_after.days"},
		{"map syntax on a non-map", "?bogus[x]=1", 400, CodeUnknownParameter, ""},
		{"a card number as the name", "?4242424242424242=1", 400, CodeUnknownParameter, ""},
		{"a long name", "?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", 400, CodeUnknownParameter, ""},
		{"a bad value is still invalid_parameter", "?page_size=abc", 400, CodeInvalidParameter, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/events"+c.query, nil))
			require.Equal(t, c.status, rec.Code, rec.Body.String())
			if c.status == 200 {
				return
			}
			var eb ErrorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &eb))
			assert.Equal(t, c.code, eb.Error.Code)
			assert.Equal(t, c.field, eb.Error.Field)
			assert.NotContains(t, rec.Body.String(), "4242424242424242")
			assert.NotContains(t, rec.Body.String(), "obol:", "the internal marker never shows")
		})
	}
}
