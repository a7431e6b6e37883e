package connector

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSendClassifiesOutcome: only a failure before anything reached the
// acquirer (a refused dial) or a 429 is ErrNotSent; a 5xx, a connection
// lost after the request was written and a cancelled call leave the
// outcome unknown; a 409 idempotency_key_in_use is ErrInProgress.
func TestSendClassifiesOutcome(t *testing.T) {
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status); _, _ = io.WriteString(w, body) }
	}
	reset := func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close()
		}
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	hang := func(http.ResponseWriter, *http.Request) { started <- struct{}{}; <-release }
	cases := []struct {
		name       string
		handler    http.HandlerFunc // nil: nothing listens
		cancel     bool
		unavailble bool
		notSent    bool
		inProgress bool
	}{
		{name: "connection refused", unavailble: true, notSent: true},
		{name: "rate limited", handler: answer(429, `{}`), unavailble: true, notSent: true},
		{name: "server error", handler: answer(500, `{}`), unavailble: true},
		{name: "reset after the request was written", handler: reset, unavailble: true},
		{name: "cancelled in flight", handler: hang, cancel: true, unavailble: true},
		{name: "same key in use", handler: answer(409, `{"error":{"code":"idempotency_key_in_use"}}`), inProgress: true},
		{name: "other conflict", handler: answer(409, `{"error":{"code":"charge_already_captured"}}`)},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var url string
			if tt.handler == nil {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				url = "http://" + ln.Addr().String()
				require.NoError(t, ln.Close())
			} else {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				url = srv.URL
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() { <-started; cancel() }()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/x", strings.NewReader("{}"))
			require.NoError(t, err)
			_, _, err = send(&http.Client{Timeout: time.Minute}, req)
			if tt.cancel {
				close(release)
			}
			assert.Equal(t, tt.unavailble, errors.Is(err, ErrUnavailable), "ErrUnavailable: %v", err)
			assert.Equal(t, tt.notSent, errors.Is(err, ErrNotSent), "ErrNotSent: %v", err)
			assert.Equal(t, tt.inProgress, errors.Is(err, ErrInProgress), "ErrInProgress: %v", err)
		})
	}
}
