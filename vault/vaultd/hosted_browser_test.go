package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/hosted"
	"github.com/obolpay/obol/vault/merchants"
)

// TestHostedFieldsAgainstVaultd drives the hosted card fields in headless
// Chromium against production vaultd (real Vault, PostgreSQL, Redis): a
// checkout page on its own origin tokenizes through the frame, the token's
// CVC is held in Redis, and a cardCvc element bound to the token attaches
// a fresh CVC once per client secret. The stack's leak scan then checks
// logs, metrics, the database dump and Redis for both cards.
func TestHostedFieldsAgainstVaultd(t *testing.T) {
	s := newStack(t, stackOpts{})
	integrity := hosted.New(hosted.Options{}).Integrity()[hosted.Version+"/obol.js"]
	var pk string
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><script src="%[1]s/hosted/v1/obol.js" integrity="%[2]s" crossorigin="anonymous"></script></head>
<body><div id="card"></div><div id="cvc"></div><script>
window.msgs = []; addEventListener('message', function (e) { msgs.push(JSON.stringify(e.data)); });
window.obol = Obol('%[3]s', { vaultUrl: '%[1]s' });
window.card = obol.elements().create('card');
card.on('ready', function () { window.cardReady = true; });
card.mount('#card');
window.mountCVC = function (token, secret) {
  window.cvcEl = obol.elements().create('cardCvc', { token: token, clientSecret: secret });
  cvcEl.on('ready', function () { window.cvcReady = true; });
  cvcEl.mount('#cvc');
};
window.tokenize = function (el) { return obol.createToken(el).then(function (r) { return r.error ? { error: r.error.code } : r; }); };
</script></body></html>`, s.base, integrity, pk)
	}))
	defer shop.Close()
	keys, err := merchants.Create(context.Background(), s.in.Store, "Hosted shop", []string{shop.URL}, "test")
	require.NoError(t, err)
	pk = keys.PublishableKey
	cardIn("4242424242424242", 12, 2034, "123")
	cardIn("4242424242424242", 12, 2034, "321")

	ctx := testenv.Chromium(t)
	run := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(c, steps...))
	}
	eval := func(expr string) map[string]any {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Evaluate[map[string]any](expr, chromedp.EvalAwaitPromise))
		require.NoError(t, err, expr)
		return v
	}
	wait := func(expr string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond)))
		require.NoError(t, err, expr)
	}
	typeIn := func(frameSel, input, text string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		nodes, err := chromedp.Run(c, chromedp.Nodes(chromedp.CSS(frameSel)))
		require.NoError(t, err)
		run(chromedp.SendKeys(chromedp.CSS(input), text, chromedp.FromNode(nodes[0])))
	}

	run(chromedp.Navigate(shop.URL))
	wait(`window.cardReady === true`)
	typeIn("#card iframe", "#obol-number", "4242424242424242")
	typeIn("#card iframe", "#obol-expiry", "1234")
	typeIn("#card iframe", "#obol-cvc", "123")
	got := eval(`tokenize(card)`)
	tok, _ := got["token"].(string)
	require.True(t, strings.HasPrefix(tok, "tok_"), "%v", got)
	require.Equal(t, map[string]any{"brand": "visa", "last4": "4242", "exp_month": float64(12), "exp_year": float64(2034)}, got["card"])

	// The merchant's backend sees the token with its CVC held (in Redis).
	r := s.rest(http.MethodGet, "/v1/tokens/"+tok, keys.SecretKey, nil)
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "4242", r.str("card", "last4"))

	// Card on file: a fresh CVC, once per client secret.
	mint := s.rest(http.MethodPost, "/v1/tokens/"+tok+"/cvc_client_secrets", keys.SecretKey, "{}")
	require.Equal(t, 200, mint.status, string(mint.raw))
	eval(`(mountCVC('` + tok + `', '` + mint.str("client_secret") + `'), {})`)
	wait(`window.cvcReady === true`)
	typeIn("#cvc iframe", "#obol-cvc", "321")
	got = eval(`tokenize(cvcEl)`)
	require.Equal(t, tok, got["token"], "%v", got)
	require.NotEmpty(t, got["cvc_expires_at"])
	require.Equal(t, map[string]any{"error": "client_secret_invalid"}, eval(`tokenize(cvcEl)`))

	// Messages to the frame from anything but its parent page are ignored:
	// a frame of another origin inside the page, and a same-origin child
	// of the page, each send a forged "clear"; the card stays and still
	// tokenizes (the forged messages were queued first).
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<script>parent.frames[0].postMessage({ obol: 1, ch: %q, type: 'clear' }, '*'); parent.postMessage('forged', '*');</script>`, r.URL.Query().Get("ch"))
	}))
	defer evil.Close()
	eval(`(function () {
  window.forged = false;
  addEventListener('message', function (e) { if (e.data === 'forged') window.forged = true; });
  var f = document.createElement('iframe'); f.src = '` + evil.URL + `/?ch=' + obol._ch; document.body.appendChild(f);
  return {};
})()`)
	wait(`window.forged === true`)
	eval(`(function () {
  var f = document.createElement('iframe'); document.body.appendChild(f);
  f.contentWindow.Function("parent.frames[0].postMessage({ obol: 1, ch: '" + obol._ch + "', type: 'clear' }, '*')")();
  return {};
})()`)
	got = eval(`tokenize(card)`)
	again, _ := got["token"].(string)
	require.True(t, strings.HasPrefix(again, "tok_"), "forged clear messages must be ignored: %v", got)

	msgs := eval(`({ all: msgs.join('\n') })`)["all"].(string)
	require.NotContains(t, msgs, "4242424242424242")
	require.NotContains(t, msgs, "4242 4242 4242 4242")
	require.NotContains(t, msgs, `"321"`)
	require.NotContains(t, msgs, `"123"`)
}
