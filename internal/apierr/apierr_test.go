package apierr

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestKindTable: every kind has one HTTP status, one gRPC code and a name,
// and survives a hop between services (GRPCStatus, then FromStatus) with
// its HTTP status intact, every time: kinds that share a gRPC code (503 and
// 502, 413 and 429) used to come back at random.
func TestKindTable(t *testing.T) {
	want := map[Kind]struct {
		http int
		grpc codes.Code
	}{
		KindInternal:           {http.StatusInternalServerError, codes.Internal},
		KindInvalidArgument:    {http.StatusBadRequest, codes.InvalidArgument},
		KindNotFound:           {http.StatusNotFound, codes.NotFound},
		KindUnauthenticated:    {http.StatusUnauthorized, codes.Unauthenticated},
		KindPermissionDenied:   {http.StatusForbidden, codes.PermissionDenied},
		KindConflict:           {http.StatusConflict, codes.AlreadyExists},
		KindTooLarge:           {http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		KindUnavailable:        {http.StatusServiceUnavailable, codes.Unavailable},
		KindFailedPrecondition: {http.StatusConflict, codes.FailedPrecondition},
		KindRateLimited:        {http.StatusTooManyRequests, codes.ResourceExhausted},
		KindMethodNotAllowed:   {http.StatusMethodNotAllowed, codes.Unimplemented},
		KindBadGateway:         {http.StatusBadGateway, codes.Unavailable},
		KindGatewayTimeout:     {http.StatusGatewayTimeout, codes.DeadlineExceeded},
	}
	require.Len(t, want, int(kindCount), "a kind was added: give it a row here and in kindTable")
	names := map[string]Kind{}
	for k := Kind(0); k < kindCount; k++ {
		t.Run(k.String(), func(t *testing.T) {
			w, ok := want[k]
			require.True(t, ok, "kind %d has no expected row", int(k))
			e := New(k, "some_code", "some_field", "message")
			assert.Equal(t, w.http, e.HTTPStatus())
			assert.Equal(t, w.grpc, e.GRPCCode())
			require.NotEmpty(t, k.String())
			prev, dup := names[k.String()]
			require.False(t, dup, "kind name %q used by %d too", k.String(), int(prev))
			names[k.String()] = k
			for range 64 { // map iteration order would show within a few rounds
				got := FromStatus(e.GRPCStatus())
				require.Equal(t, k, got.Kind)
				require.Equal(t, w.http, got.HTTPStatus())
				require.Equal(t, "some_code", got.Code)
				require.Equal(t, "some_field", got.Field)
				require.Equal(t, "message", got.Message)
			}
		})
	}
	assert.Equal(t, http.StatusInternalServerError, New(Kind(99), "x", "", "m").HTTPStatus(), "an unknown kind is internal")
}

// TestFromStatusWithoutObolDetails: a status grpc-go or a non-Obol peer made
// maps by its code alone, through one explicit row per code.
func TestFromStatusWithoutObolDetails(t *testing.T) {
	cases := []struct {
		name string
		code codes.Code
		kind Kind
		http int
		mc   string
	}{
		{"ok is a bug", codes.OK, KindInternal, 500, CodeInternal},
		{"canceled", codes.Canceled, KindUnavailable, 503, CodeUnavailable},
		{"unknown", codes.Unknown, KindInternal, 500, CodeInternal},
		{"invalid argument", codes.InvalidArgument, KindInvalidArgument, 400, CodeInternal},
		{"deadline exceeded", codes.DeadlineExceeded, KindUnavailable, 503, CodeUnavailable},
		{"not found", codes.NotFound, KindNotFound, 404, CodeInternal},
		{"already exists", codes.AlreadyExists, KindConflict, 409, CodeInternal},
		{"permission denied", codes.PermissionDenied, KindPermissionDenied, 403, CodeInternal},
		{"resource exhausted", codes.ResourceExhausted, KindTooLarge, 413, CodeInternal},
		{"failed precondition", codes.FailedPrecondition, KindFailedPrecondition, 409, CodeInternal},
		{"aborted", codes.Aborted, KindConflict, 409, CodeInternal},
		{"out of range", codes.OutOfRange, KindInvalidArgument, 400, CodeInternal},
		{"unimplemented", codes.Unimplemented, KindMethodNotAllowed, 405, CodeInternal},
		{"internal", codes.Internal, KindInternal, 500, CodeInternal},
		{"unavailable (e.g. grpc-go's connection refused)", codes.Unavailable, KindUnavailable, 503, CodeUnavailable},
		{"data loss", codes.DataLoss, KindInternal, 500, CodeInternal},
		{"unauthenticated", codes.Unauthenticated, KindUnauthenticated, 401, CodeInternal},
	}
	require.Len(t, cases, len(codeKind))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 16 {
				got := FromStatus(status.New(tc.code, "m"))
				require.Equal(t, tc.kind, got.Kind)
				require.Equal(t, tc.http, got.HTTPStatus())
				require.Equal(t, tc.mc, got.Code)
			}
		})
	}
}

// TestRetryAfter: a retry delay is given in whole seconds, rounded up, and
// survives a hop between services.
func TestRetryAfter(t *testing.T) {
	cases := []struct {
		name  string
		after time.Duration
		want  string
	}{
		{"unset", 0, ""},
		{"under a second is 1", time.Millisecond, "1"},
		{"rounded up", 2*time.Second + time.Microsecond, "3"},
		{"whole", 30 * time.Second, "30"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(KindRateLimited, "rate_limited", "id", "slow down")
			e.RetryAfter = tc.after
			assert.Equal(t, tc.want, e.RetryAfterSeconds())
			got := FromStatus(e.GRPCStatus())
			assert.Equal(t, http.StatusTooManyRequests, got.HTTPStatus())
			assert.Equal(t, "rate_limited", got.Code)
			assert.Equal(t, tc.want, got.RetryAfterSeconds())
		})
	}
}
