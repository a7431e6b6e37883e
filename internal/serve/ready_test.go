package serve

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadyzOutlivesItsCaller: the readiness checks behind /readyz are
// shared (gatewayd caches one round for every caller and counts its
// failures towards its grace), so a caller that hangs up must not cancel
// them. It did: a client sending GET /readyz and closing at once (the
// REST port is the merchants' port) made every dependency check fail
// with context.Canceled, and a steady trickle of such requests kept every
// replica not ready. Cases: a caller gone before the checks ran, and one
// still there; both checks see a live context.
func TestReadyzOutlivesItsCaller(t *testing.T) {
	cases := []struct {
		name   string
		cancel bool
	}{
		{"caller gone", true},
		{"caller there", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var seen error
			ran := false
			s, err := New(context.Background(), Options{Name: "test", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
				Logger: slog.New(slog.DiscardHandler), Ready: func(ctx context.Context) error {
					ran = true
					seen = ctx.Err()
					_, hasDeadline := ctx.Deadline()
					assert.True(t, hasDeadline, "the checks are bounded")
					return seen
				}})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.lnG.Close(); _ = s.lnH.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			} else {
				defer cancel()
			}
			rec := httptest.NewRecorder()
			s.http.Handler.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil))
			require.True(t, ran, "Ready was called")
			assert.NoError(t, seen, "the checks ran with a live context")
			assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		})
	}
}
