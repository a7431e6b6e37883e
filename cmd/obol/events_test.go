package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/webhook"
)

// TestDevWebhooks: obol dev serves the events API at the gateway's address
// with the merchant's secret key, forwarded to the embedded eventsd: an
// endpoint (plain http to loopback, dev only) gets a signed test event,
// the secret is shown once, the delivery attempt is listed, and bad input
// is refused with the field named.
func TestDevWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	addrs, _, sk := startDevCapturing(t)
	gw := "http://" + addrs["gateway"]
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	defer rcv.Close()
	auth := []string{"Authorization", "Bearer " + sk}
	resp, body := post(t, gw+"/v1/webhook_endpoints", `{"url":"`+rcv.URL+`/hook","events":["payment.captured"]}`, auth...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var ep struct{ ID, URL, Secret, Status string }
	require.NoError(t, json.Unmarshal(body, &ep))
	require.Regexp(t, `^whsec_`, ep.Secret)
	assert.Equal(t, "enabled", ep.Status)

	resp, body = post(t, gw+"/v1/webhook_endpoints/"+ep.ID+"/test", `{}`, auth...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var test struct{ ID, Type string }
	require.NoError(t, json.Unmarshal(body, &test))
	assert.Equal(t, "webhook_endpoint.test", test.Type)
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}))
	mu.Lock()
	r, b := got[0], bodies[0]
	mu.Unlock()
	assert.Equal(t, test.ID, r.Header.Get("webhook-id"))
	require.NoError(t, verifyWebhook(ep.Secret, r, b))

	code, _, page := send(t, "GET", gw+"/v1/webhook_endpoints/"+ep.ID, auth...)
	require.Equal(t, 200, code, "%s", page)
	assert.NotContains(t, page, ep.Secret, "the secret is shown once")
	code, _, page = send(t, "GET", gw+"/v1/events/"+test.ID, auth...)
	require.Equal(t, 200, code, "%s", page)
	assert.Contains(t, page, `"type":"webhook_endpoint.test"`)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		_, _, page = send(t, "GET", gw+"/v1/webhook_endpoints/"+ep.ID+"/attempts", auth...)
		var a struct{ Attempts []struct{ Succeeded bool } }
		if err := json.Unmarshal([]byte(page), &a); err != nil || len(a.Attempts) == 0 || !a.Attempts[0].Succeeded {
			return io.ErrUnexpectedEOF
		}
		return nil
	}), "%s", page)

	cases := []struct {
		name, path, body string
		headers          []string
		status           int
		code, field      string
	}{
		{"no key", "/v1/webhook_endpoints", `{"url":"https://example.com/","events":["*"]}`, nil, 401, "unauthenticated", "authorization"},
		{"metadata address", "/v1/webhook_endpoints", `{"url":"https://169.254.169.254/latest","events":["*"]}`, auth, 403, "url_address_refused", "url"},
		{"plain http to a public host", "/v1/webhook_endpoints", `{"url":"http://93.184.215.14/","events":["*"]}`, auth, 400, "url_insecure", "url"},
		{"unknown event type", "/v1/webhook_endpoints", `{"url":"` + rcv.URL + `","events":["payment.exploded"]}`, auth, 400, "event_type_invalid", "events[0]"},
		{"an Idempotency-Key is refused, not ignored", "/v1/webhook_endpoints", `{"url":"` + rcv.URL + `","events":["*"]}`, append([]string{"Idempotency-Key", "k1"}, auth...), 400, "idempotency_key_not_accepted", "Idempotency-Key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, gw+c.path, c.body, c.headers...)
			require.Equal(t, c.status, resp.StatusCode, "%s", body)
			var e struct{ Error struct{ Code, Field string } }
			require.NoError(t, json.Unmarshal(body, &e))
			assert.Equal(t, c.code, e.Error.Code)
			assert.Equal(t, c.field, e.Error.Field)
		})
	}
}

// verifyWebhook checks a received webhook's Standard Webhooks signature
// (body b) with secret, within 5 minutes of now.
func verifyWebhook(secret string, r *http.Request, b []byte) error {
	return webhook.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), b, time.Now(), 5*time.Minute)
}
