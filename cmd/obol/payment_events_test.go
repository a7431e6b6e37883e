package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// TestDevPaymentWebhooks: in obol dev, the gateway's payment and refund
// events (written to its outbox with each state change, relayed to the
// embedded eventsd) reach a merchant endpoint as signed webhooks that the
// Standard Webhooks check verifies: a payment authorized and captured in
// one request is payment.authorized and payment.captured, a refund is
// refund.created, each once by webhook-id.
func TestDevPaymentWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	dir := filepath.Join(t.TempDir(), ".obol")
	addrs, logs, sk := startDevCapturingIn(t, dir)
	gw, vault := "http://"+addrs["gateway"], "http://"+addrs["vault"]
	auth := []string{"Authorization", "Bearer " + sk}
	var mu sync.Mutex
	type delivery struct {
		id, typ string
		ok      bool
		body    []byte
	}
	var got []delivery
	var secret string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev struct{ Type string }
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		err := verifyWebhook(secret, r, b)
		got = append(got, delivery{r.Header.Get("webhook-id"), ev.Type, err == nil, b})
		mu.Unlock()
	}))
	defer rcv.Close()
	resp, body := post(t, gw+"/v1/webhook_endpoints", `{"url":"`+rcv.URL+`/hook","events":["payment.authorized","payment.captured","refund.created"]}`, auth...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var ep struct{ Secret string }
	require.NoError(t, json.Unmarshal(body, &ep))
	mu.Lock()
	secret = ep.Secret
	mu.Unlock()

	resp, body = post(t, vault+"/v1/tokens", `{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2034,"cvc":"123"}}`, auth...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var tok struct{ Token string }
	require.NoError(t, json.Unmarshal(body, &tok))
	resp, body = post(t, gw+"/v1/payments", `{"token":"`+tok.Token+`","amount":2500,"currency":"USD","capture":true}`, append([]string{"Idempotency-Key", "events-order-1"}, auth...)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pay struct{ ID, Status string }
	require.NoError(t, json.Unmarshal(body, &pay))
	require.Equal(t, "captured", pay.Status)
	resp, body = post(t, gw+"/v1/payments/"+pay.ID+"/refunds", `{"amount":500}`, append([]string{"Idempotency-Key", "events-refund-1"}, auth...)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	want := map[string]int{"payment.authorized": 1, "payment.captured": 1, "refund.created": 1}
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		ids, n := map[string]bool{}, map[string]int{}
		for _, d := range got {
			if !ids[d.id] {
				ids[d.id] = true
				n[d.typ]++
			}
		}
		if fmt.Sprint(n) != fmt.Sprint(want) {
			return errors.New("webhooks so far: " + fmt.Sprint(n))
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	// The card and its CVC are in no webhook body, no log line and no file
	// of the data dir (events.db and the gateway's event_outbox included).
	leaks := testenv.NewLeakScanner()
	leaks.AddCard("4242424242424242", "123")
	for _, d := range got {
		assert.True(t, d.ok, "delivery %s (%s) verifies with the endpoint's secret", d.id, d.typ)
		leaks.Scan("webhook "+d.typ, d.body)
	}
	leaks.Scan("obol dev logs", []byte(logs.String()))
	require.NoError(t, filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		leaks.Scan(filepath.Base(path), b)
		return err
	}))
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "leaks")
}
