package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/hosted"
)

var demoRe = regexp.MustCompile(`demo shop (http://\S+)`)

// devDemo is `obol dev` with its demo shop, every listener on a free port.
type devDemo struct {
	vault, gateway, shop string
	creds                map[string]string
	out                  *testenv.SyncBuffer
}

func startDevDemo(t *testing.T) *devDemo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ".obol")
	settings := filepath.Join(t.TempDir(), "ledger.yaml")
	require.NoError(t, os.WriteFile(settings, []byte("defaults: {delay_days: 0, fee_bps: 290, fee_fixed: {USD: 30}}\n"), 0o600))
	t.Setenv("OBOL_LEDGER_SETTINGS", settings)
	t.Setenv("OBOL_LEDGER_TOKEN", "")
	d := &devDemo{out: &testenv.SyncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0", "--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0",
			"--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0", "--simulator-addr", "127.0.0.1:0",
			"--demo-addr", "127.0.0.1:0", "--log-format", "json"}, d.out)
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		if demoRe.MatchString(d.out.String()) {
			return nil
		}
		return errors.New("no demo shop address printed yet")
	}), d.out.String())
	s := d.out.String()
	d.vault = "http://" + restRe.FindStringSubmatch(s)[1]
	d.gateway = "http://" + payRe.FindStringSubmatch(s)[1]
	d.shop = demoRe.FindStringSubmatch(s)[1]
	b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &d.creds))
	require.NotContains(t, s, "is not allowed for the dev merchant")
	return d
}

// netLog records every request the tab makes (page and frames).
type netLog struct {
	mu   sync.Mutex
	reqs []netReq
}

type netReq struct {
	URL, Method, Frame, Body string
}

func (n *netLog) record(ev any) {
	e, ok := ev.(*network.EventRequestWillBeSent)
	if !ok || e.Request == nil {
		return
	}
	var body strings.Builder
	for _, p := range e.Request.PostDataEntries {
		body.Write(p.Bytes)
	}
	n.mu.Lock()
	n.reqs = append(n.reqs, netReq{URL: e.Request.URL, Method: e.Request.Method, Frame: string(e.FrameID), Body: body.String()})
	n.mu.Unlock()
}

func (n *netLog) count(substr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, r := range n.reqs {
		if strings.Contains(r.URL, substr) {
			c++
		}
	}
	return c
}

func (n *netLog) all() []netReq {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.reqs)
}

// recordMessages keeps every message event the top-level page receives, as
// the page could see it, in window.__messages.
const recordMessages = `if (window === window.top) {
  window.__messages = [];
  window.addEventListener('message', function (ev) {
    try { window.__messages.push(JSON.stringify({ origin: ev.origin, data: ev.data })); } catch (e) { window.__messages.push(String(ev.data)); }
  }, true);
}`

type testCard struct {
	name, number, exp, cvc, brand, last4 string
}

// approvedCards are proxy/simulator/TESTCARDS.md's approved numbers.
var approvedCards = []testCard{
	{"visa", "4242424242424242", "12 / 34", "123", "visa", "4242"},
	{"mastercard", "5555555555554444", "11 / 33", "321", "mastercard", "4444"},
	{"mastercard 2-series", "2223003122003222", "10 / 32", "456", "mastercard", "3222"},
	{"amex", "378282246310005", "09 / 31", "1234", "amex", "0005"},
	{"discover", "6011111111111117", "08 / 30", "789", "discover", "1117"},
	{"jcb", "3566002020360505", "07 / 30", "234", "jcb", "0505"},
	{"unionpay", "6200000000000005", "06 / 30", "567", "unionpay", "0005"},
}

type browser struct {
	t   *testing.T
	ctx context.Context
	net *netLog
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, steps...))
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err, expr)
	return v
}

// waitJS polls a page expression until it is truthy.
func (b *browser) waitJS(expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond)))
	require.NoError(b.t, err, "waiting for %s", expr)
}

// open loads the shop and waits for the card element's ready event.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
	b.waitJS(`window.obolDemo && window.obolDemo.readyMs !== undefined`)
}

func (b *browser) frame() *chromedp.Node { return b.frames(1)[0] }

func (b *browser) frames(n int) []*chromedp.Node {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#card-element iframe")))
	require.NoError(b.t, err)
	require.Len(b.t, nodes, n)
	return nodes
}

func (b *browser) valueIn(f *chromedp.Node, sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel), chromedp.FromNode(f)))
	require.NoError(b.t, err)
	return v
}

// typeCard types into the frame's inputs as a user would (key events).
func (b *browser) typeCard(number, exp, cvc string) {
	b.t.Helper()
	f := b.frame()
	steps := []chromedp.Action[chromedp.Void]{}
	for _, in := range []struct{ sel, v string }{{"#obol-number", number}, {"#obol-expiry", exp}, {"#obol-cvc", cvc}} {
		if in.v != "" {
			steps = append(steps, chromedp.SendKeys(chromedp.CSS(in.sel), in.v, chromedp.FromNode(f)))
		}
	}
	b.do(steps...)
}

func (b *browser) inFrame(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel), chromedp.FromNode(b.frame())))
	require.NoError(b.t, err)
	return v
}

func (b *browser) screenshot(dir, name string, shot chromedp.Action[[]byte]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, shot)
	require.NoError(b.t, err)
	p := filepath.Join(dir, name)
	require.NoError(b.t, os.WriteFile(p, png, 0o644))
	b.t.Logf("screenshot: %s", p)
}

func newBrowser(t *testing.T) *browser {
	ctx := testenv.Chromium(t)
	b := &browser{t: t, ctx: ctx, net: &netLog{}}
	require.NoError(t, chromedp.Listen(ctx, b.net.record))
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordMessages})
	require.NoError(t, err)
	return b
}

// assertNoCardData checks the page side with the leak scanner: its DOM,
// every message it got and every request made to its own origin (the
// vault frame's own tokenize request is the only place card data may go).
func (b *browser) assertNoCardData(pan, cvc string) {
	b.t.Helper()
	dom := eval[string](b, `document.documentElement.outerHTML`)
	msgs := eval[[]string](b, `window.__messages`)
	require.NotEmpty(b.t, msgs, "the page received the frame's messages")
	// The page's own requests: every request its document made, to any
	// host (the shop's backend, obol.js and the frame page from the
	// vault), told apart from the vault frame's by the frame id.
	tree, err := chromedp.Call(b.ctx, page.GetFrameTree, cdp.Empty{})
	require.NoError(b.t, err)
	main := string(tree.FrameTree.Frame.ID)
	var pageReqs []string
	for _, r := range b.net.all() {
		if r.Frame == main {
			require.NotContains(b.t, r.URL, "/hosted/v1/tokens", "the page itself never tokenizes")
			pageReqs = append(pageReqs, r.URL+"\n"+r.Body)
		}
	}
	require.NotEmpty(b.t, pageReqs)
	s := testenv.NewLeakScanner()
	s.AddCard(pan, cvc)
	s.Scan("page DOM", []byte(dom))
	s.Scan("page messages", []byte(strings.Join(msgs, "\n")))
	s.Scan("page requests", []byte(strings.Join(pageReqs, "\n")))
	hits, _ := s.Report()
	require.Empty(b.t, hits)
	if cvc != "" {
		// A bare CVC is too short to scan for anywhere: look for it as a
		// JSON string or an element's text.
		for _, m := range msgs {
			require.NotContains(b.t, m, `"`+cvc+`"`, "message event")
		}
		require.NotContains(b.t, dom, ">"+cvc+"<")
		require.NotContains(b.t, dom, `"`+cvc+`"`)
		for _, r := range pageReqs {
			require.NotContains(b.t, r, `"`+cvc+`"`, "page request")
		}
	}
}

// TestDemoHostedFields drives the demo shop of `obol dev` in headless
// Chromium: approved test cards pay; bad input gives the server's typed
// field errors and sends nothing; the page never holds card data; the
// frame's document is unreachable from the page; forged messages are
// ignored; screenshots of the filled element and the result are kept.
func TestDemoHostedFields(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	d := startDevDemo(t)
	b := newBrowser(t)
	art := testenv.ArtifactDir(t, "hosted-fields")

	t.Run("approved cards pay", func(t *testing.T) {
		for i, c := range approvedCards {
			t.Run(c.name, func(t *testing.T) {
				b.t = t
				b.open(d.shop)
				b.typeCard(c.number, c.exp, c.cvc)
				b.waitJS(`window.obolDemo.card.state().complete === true`)
				require.Equal(t, c.brand, eval[string](b, `window.obolDemo.card.state().brand`))
				if i == 0 {
					require.Equal(t, "4242 4242 4242 4242", b.inFrame("#obol-number"), "grouped 4-4-4-4")
					b.screenshot(art, "filled-element.png", chromedp.Screenshot(chromedp.CSS("#pay")))
				}
				if c.brand == "amex" {
					require.Equal(t, "3782 822463 10005", b.inFrame("#obol-number"), "Amex grouped 4-6-5")
				}
				b.do(chromedp.Click(chromedp.CSS("#submit")))
				b.waitJS(`!document.getElementById('result').hidden`)
				require.Equal(t, "authorized", eval[string](b, `document.getElementById('result-status').textContent`))
				require.Contains(t, eval[string](b, `document.getElementById('result-card').textContent`), c.last4)
				require.Regexp(t, `^pay_`, eval[string](b, `document.getElementById('result-id').textContent`))
				b.assertNoCardData(c.number, c.cvc)
				if i == 0 {
					b.screenshot(art, "demo-result.png", chromedp.CaptureScreenshot())
				}
			})
		}
	})

	t.Run("card on file in the demo", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		b.typeCard("4242424242424242", "12 / 34", "123")
		b.do(chromedp.Click(chromedp.CSS("#submit")))
		b.waitJS(`!document.getElementById('result').hidden`)
		first := eval[string](b, `document.getElementById('result-id').textContent`)
		b.do(chromedp.Click(chromedp.CSS("#again")))
		b.waitJS(`window.obolDemo.cvcReady === true`)
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("#cvc-element iframe")))
		require.NoError(t, err)
		b.do(chromedp.SendKeys(chromedp.CSS("#obol-cvc"), "987", chromedp.FromNode(nodes[0])))
		b.screenshot(art, "card-on-file.png", chromedp.Screenshot(chromedp.CSS("main")))
		before := b.net.count("/hosted/v1/cvc")
		b.do(chromedp.Click(chromedp.CSS("#onfile-pay")))
		b.waitJS(`!document.getElementById('result').hidden && document.getElementById('result-id').textContent !== '` + first + `'`)
		require.Equal(t, "authorized", eval[string](b, `document.getElementById('result-status').textContent`))
		require.Equal(t, before+1, b.net.count("/hosted/v1/cvc"))
		b.assertNoCardData("4242424242424242", "987")
	})

	t.Run("field errors send nothing", func(t *testing.T) {
		b.t = t
		cases := []struct {
			name, number, exp, cvc, code string
		}{
			{"bad luhn", "4111111111111112", "12 / 34", "123", "number_failed_luhn"},
			{"too short", "42424242424", "12 / 34", "123", "number_invalid_length"},
			{"expired", "4242424242424242", "01 / 20", "123", "card_expired"},
			{"month 13", "4242424242424242", "13 / 30", "123", "exp_month_invalid"},
			{"short cvc", "4242424242424242", "12 / 34", "12", "cvc_invalid"},
			{"amex 3-digit cvc", "378282246310005", "12 / 34", "123", "cvc_invalid"},
			{"missing cvc", "4242424242424242", "12 / 34", "", "field_required"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				b.t = t
				b.open(d.shop)
				before := b.net.count("/hosted/v1/tokens")
				b.typeCard(c.number, c.exp, c.cvc)
				b.do(chromedp.Click(chromedp.CSS("#submit")))
				b.waitJS(`document.getElementById('card-errors').dataset.code === '` + c.code + `'`)
				require.NotEmpty(t, eval[string](b, `document.getElementById('card-errors').textContent`))
				require.Equal(t, "true", eval[string](b, `'' + document.getElementById('result').hidden`))
				require.Equal(t, before, b.net.count("/hosted/v1/tokens"), "no tokenize request")
				b.assertNoCardData(c.number, c.cvc)
			})
		}
	})

	t.Run("split fields with keyboard navigation", func(t *testing.T) {
		b.t = t
		b.open(d.shop + "/?layout=split")
		fr := b.frames(3)
		before := b.net.count("/hosted/v1/tokens")
		// Type the number into its frame; the complete number moves the
		// focus to the expiry frame, and a complete expiry to the CVC
		// frame, so the rest is typed as plain key presses.
		b.do(chromedp.SendKeys(chromedp.CSS("#obol-number"), "5555555555554444", chromedp.FromNode(fr[0])))
		// focused waits until the page's focus is in the field's frame and
		// the frame's focus is in its input.
		focused := func(typ string, f *chromedp.Node, input string) {
			b.waitJS(`document.activeElement && document.activeElement.name.indexOf('obol-` + typ + `-') === 0`)
			ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
			defer cancel()
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.activeElement && document.activeElement.id === '`+input+`'`,
				chromedp.WithPollingInFrame(f), chromedp.WithPollingInterval(20*time.Millisecond)))
			require.NoError(t, err)
		}
		focused("cardExpiry", fr[1], "obol-expiry")
		// Backspace in the empty expiry goes back to the number's frame.
		b.do(chromedp.KeyEvent(kb.Backspace))
		focused("cardNumber", fr[0], "obol-number")
		require.Equal(t, "5555 5555 5555 4444", b.valueIn(fr[0], "#obol-number"), "moving back deletes nothing")
		b.do(chromedp.SendKeys(chromedp.CSS("#obol-expiry"), "1133", chromedp.FromNode(fr[1])))
		focused("cardCvc", fr[2], "obol-cvc")
		b.do(chromedp.KeyEvent("321"))
		require.Equal(t, "5555 5555 5555 4444", b.valueIn(fr[0], "#obol-number"))
		require.Equal(t, "11 / 33", b.valueIn(fr[1], "#obol-expiry"))
		require.Equal(t, "321", b.valueIn(fr[2], "#obol-cvc"))
		require.Equal(t, "mastercard", eval[string](b, `window.obolDemo.card.state().brand`))
		b.screenshot(art, "split-fields.png", chromedp.Screenshot(chromedp.CSS("#pay")))
		b.do(chromedp.Click(chromedp.CSS("#submit")))
		b.waitJS(`!document.getElementById('result').hidden`)
		require.Equal(t, "authorized", eval[string](b, `document.getElementById('result-status').textContent`))
		require.Equal(t, before+1, b.net.count("/hosted/v1/tokens"))
		b.assertNoCardData("5555555555554444", "321")
	})

	t.Run("inputs are labelled and autofillable", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		for _, in := range []struct{ id, autocomplete, label string }{
			{"obol-number", "cc-number", "Card number"},
			{"obol-expiry", "cc-exp", "Expiration date (MM / YY)"},
			{"obol-cvc", "cc-csc", "Security code (CVC)"},
		} {
			attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.CSS("#"+in.id), chromedp.FromNode(b.frame())))
			require.NoError(t, err)
			require.Equal(t, in.autocomplete, attrs["autocomplete"], in.id)
			require.Equal(t, "numeric", attrs["inputmode"], in.id)
			require.Equal(t, "false", attrs["aria-invalid"], in.id)
			label, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`label[for="`+in.id+`"]`), chromedp.FromNode(b.frame())))
			require.NoError(t, err)
			require.Equal(t, in.label, label)
		}
		// A wrong number marks its input invalid for screen readers once
		// the user moves on (a 16-digit Visa may still grow to 19).
		b.typeCard("4111111111111112", "1", "")
		b.waitJS(`document.getElementById('card-errors').dataset.code === 'number_failed_luhn'`)
		attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.CSS("#obol-number"), chromedp.FromNode(b.frame())))
		require.NoError(t, err)
		require.Equal(t, "true", attrs["aria-invalid"])
	})

	t.Run("styles outside the allowlist are refused", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		for _, style := range []string{
			`{ base: { color: 'url(https://evil.example/x)' } }`,
			`{ base: { background: 'red' } }`,
			`{ base: { fontFamily: 'a; } body { display: none' } }`,
			`{ hover: { color: 'red' } }`,
			`{ base: { '::placeholder': { color: 'expression(alert(1))' } } }`,
		} {
			got := eval[string](b, `(function () {
  try { Obol(document.body.dataset.pk, { vaultUrl: document.body.dataset.vault }).elements().create('card', { style: `+style+` }); return 'accepted'; }
  catch (e) { return e.name + ':' + e.code; }
})()`)
			require.Equal(t, "ObolError:style_invalid", got, style)
		}
	})

	t.Run("vault origin defaults to the script's", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		require.Equal(t, d.vault, eval[string](b, `Obol(document.body.dataset.pk)._origin`))
	})

	t.Run("page cannot read the frame", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		b.typeCard("4242424242424242", "12 / 34", "123")
		got := eval[string](b, `(function () {
  var f = document.querySelector('#card-element iframe');
  var out = [];
  out.push(f.contentDocument === null ? 'contentDocument:null' : 'contentDocument:readable');
  try { var v = f.contentWindow.document.querySelector('input').value; out.push('document:read:' + v.length); } catch (e) { out.push('document:' + e.name); }
  try { out.push('frames:' + window.frames[0].location.href); } catch (e) { out.push('location:' + e.name); }
  return out.join(',');
})()`)
		require.Equal(t, "contentDocument:null,document:SecurityError,location:SecurityError", got)
	})

	t.Run("forged messages are ignored", func(t *testing.T) {
		b.t = t
		b.open(d.shop)
		b.typeCard("4242424242424242", "12 / 34", "123")
		b.waitJS(`window.obolDemo.card.state().complete === true`)
		// A message claiming to be the frame, from the page's own origin:
		// a forged result for the pending createToken, and a forged change.
		got := eval[map[string]any](b, `(function () {
  var o = window.obolDemo.obol, card = window.obolDemo.card, changes = 0;
  card.on('change', function () { changes++; });
  var p = o.createToken(card);
  window.postMessage({ obol: 1, ch: o._ch, type: 'result', id: o._seq, token: 'tok_forgedforgedforged', card: { brand: 'visa', last4: '0000' } }, '*');
  window.postMessage({ obol: 1, ch: o._ch, type: 'change', complete: false, empty: true, brand: 'amex', error: null }, '*');
  return p.then(function (r) { return { token: r.token || '', changes: changes, brand: card.state().brand }; });
})()`)
		require.NotEqual(t, "tok_forgedforgedforged", got["token"])
		require.Regexp(t, `^tok_`, got["token"])
		require.Equal(t, float64(0), got["changes"])
		require.Equal(t, "visa", got["brand"])
	})

	t.Run("origin not allowed cannot frame", func(t *testing.T) {
		b.t = t
		// The same shop page, served from an origin the publishable key
		// does not allow.
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/shop.js" {
				resp, err := http.Get(d.shop + "/shop.js")
				if err == nil {
					defer resp.Body.Close()
					w.Header().Set("Content-Type", "text/javascript")
					var buf bytes.Buffer
					_, _ = buf.ReadFrom(resp.Body)
					_, _ = w.Write(buf.Bytes())
				}
				return
			}
			fmt.Fprintf(w, `<!doctype html><html><body data-pk="%s" data-vault="%s"><div id="card-element"></div><form id="pay"><p id="card-errors"></p><button id="submit">Pay</button></form><section id="result" hidden></section>
<script src="%s/hosted/v1/obol.js"></script><script src="/shop.js"></script></body></html>`, d.creds["publishable_key"], d.vault, d.vault)
		}))
		defer evil.Close()
		before := cspViolations(t, d.vault, "frame-ancestors")
		b.do(chromedp.Navigate(evil.URL))
		b.waitJS(`!!document.querySelector('#card-element iframe')`)
		// The vault refuses the frame (403, frame-ancestors 'none') and the
		// browser reports the blocked framing to the vault.
		require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
			if cspViolations(t, d.vault, "frame-ancestors") > before {
				return nil
			}
			return errors.New("no frame-ancestors report yet")
		}))
		require.Equal(t, "undefined", eval[string](b, `'' + window.obolDemo.readyMs`), "the element never became ready")
		resp, err := http.Get(d.vault + "/hosted/v1/frame.html?pk=" + d.creds["publishable_key"] + "&origin=" + evil.URL + "&field=card")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	})

	t.Run("CVC re-collection once per client secret", func(t *testing.T) {
		b.t = t
		sk := "Bearer " + d.creds["secret_key"]
		// The merchant's backend: two cards on file, and a client secret
		// for the first one.
		tokenize := func(number string) string {
			resp, body := post(t, d.vault+"/v1/tokens", `{"card":{"number":"`+number+`","exp_month":12,"exp_year":2034}}`, "Authorization", sk)
			require.Equal(t, 200, resp.StatusCode, string(body))
			var tok struct{ Token string }
			require.NoError(t, json.Unmarshal(body, &tok))
			return tok.Token
		}
		mint := func(token string) string {
			resp, body := post(t, d.vault+"/v1/tokens/"+token+"/cvc_client_secrets", `{}`, "Authorization", sk)
			require.Equal(t, 200, resp.StatusCode, string(body))
			var cs struct {
				ClientSecret string `json:"client_secret"`
			}
			require.NoError(t, json.Unmarshal(body, &cs))
			require.NotEmpty(t, cs.ClientSecret)
			return cs.ClientSecret
		}
		// A card the other subtests do not pay with: the default rules
		// challenge a fifth payment with one card within a minute.
		tokA, tokB := tokenize("4000056655665556"), tokenize("5555555555554444")
		b.open(d.shop)
		// mountCVC mounts a cardCvc element bound to token on the shop page
		// and types the CVC into its frame.
		n := 0
		mountCVC := func(token, secret, cvc string) string {
			n++
			name := fmt.Sprintf("cof%d", n)
			eval[bool](b, `(function () {
  var box = document.createElement('div'); box.id = '`+name+`'; document.body.appendChild(box);
  var el = window.obolDemo.obol.elements().create('cardCvc', { token: '`+token+`', clientSecret: '`+secret+`' });
  window['`+name+`'] = el; el.on('ready', function () { el.isReady = true; });
  el.mount(box); return true;
})()`)
			b.waitJS(`window['` + name + `'].isReady === true`)
			ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
			defer cancel()
			nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("#"+name+" iframe")))
			require.NoError(t, err)
			b.do(chromedp.SendKeys(chromedp.CSS("#obol-cvc"), cvc, chromedp.FromNode(nodes[0])))
			return name
		}
		createToken := func(name string) map[string]any {
			return eval[map[string]any](b, `window.obolDemo.obol.createToken(window['`+name+`']).then(function (r) { return r.error ? { error: r.error.code } : r; })`)
		}
		el := mountCVC(tokA, mint(tokA), "321")
		got := createToken(el)
		require.Equal(t, tokA, got["token"], got)
		require.NotEmpty(t, got["cvc_expires_at"])
		require.Nil(t, got["card"], "a CVC re-collection tells the page nothing about the card")
		require.Equal(t, map[string]any{"error": "client_secret_invalid"}, createToken(el), "a client secret works once")
		other := mountCVC(tokB, mint(tokA), "654")
		require.Equal(t, map[string]any{"error": "client_secret_invalid"}, createToken(other), "a client secret is for its own token")
		short := mountCVC(tokA, mint(tokA), "12")
		before := b.net.count("/hosted/v1/cvc")
		require.Equal(t, map[string]any{"error": "cvc_invalid"}, createToken(short))
		require.Equal(t, before, b.net.count("/hosted/v1/cvc"), "a short CVC is refused in the frame")
		b.assertNoCardData("4000056655665556", "321")
		b.assertNoCardData("5555555555554444", "654")
		// The backend charges the card on file with its fresh CVC.
		resp, body := post(t, d.gateway+"/v1/payments", `{"token":"`+tokA+`","amount":1200,"currency":"USD"}`, "Authorization", sk, "Idempotency-Key", "cof-"+tokA)
		require.Equal(t, 200, resp.StatusCode, string(body))
		require.Contains(t, string(body), `"status":"authorized"`)
	})

	// The frames themselves never broke their own policy (styles are set
	// through the CSSOM, scripts and requests stay on the vault's origin):
	// the only violations reported are the blocked framings above.
	resp, err := http.Get(d.vault + "/metrics")
	require.NoError(t, err)
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, m := range regexp.MustCompile(`obol_vault_hosted_csp_violations_total\{directive="([^"]+)"\} (\d+)`).FindAllStringSubmatch(metrics.String(), -1) {
		if m[1] != "frame-ancestors" {
			require.Equal(t, "0", m[2], "CSP violations of %s", m[1])
		}
	}

	// Nothing obol dev logged holds a card typed into the frames.
	b.t = t
	s := testenv.NewLeakScanner()
	for _, c := range approvedCards {
		s.AddCard(c.number, c.cvc)
	}
	s.AddCard("4111111111111112", "")
	s.AddCard("4000056655665556", "321") // the card on file
	s.Scan("obol dev output", []byte(d.out.String()))
	hits, summary := s.Report()
	t.Log(summary)
	require.Empty(t, hits)
}

// cspViolations reads the vault's CSP violation counter for a directive.
func cspViolations(t *testing.T, vault, directive string) int {
	t.Helper()
	resp, err := http.Get(vault + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	m := regexp.MustCompile(`obol_vault_hosted_csp_violations_total\{directive="` + directive + `"\} (\d+)`).FindStringSubmatch(buf.String())
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// TestHostedFieldsFigures logs the closing note's figures (not assertions
// on time): obol.js size gzipped, mount-to-ready and click-to-token
// latency over 50 tokenizations against `obol dev`.
func TestHostedFieldsFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("browser figures")
	}
	js, ok := hosted.New(hosted.Options{}).Asset(hosted.Version + "/obol.js")
	require.True(t, ok)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(js)
	require.NoError(t, zw.Close())
	t.Logf("obol.js %s: %d bytes, %d bytes gzipped", hosted.Version, len(js), gz.Len())

	d := startDevDemo(t)
	b := newBrowser(t)
	var ready []float64
	for range 10 {
		b.open(d.shop)
		ready = append(ready, eval[float64](b, `window.obolDemo.readyMs`))
	}
	b.typeCard("4242424242424242", "12 / 34", "123")
	b.waitJS(`window.obolDemo.card.state().complete === true`)
	lat := eval[[]float64](b, `(async function () {
  var o = window.obolDemo.obol, card = window.obolDemo.card, out = [];
  for (var i = 0; i < 50; i++) {
    var t0 = performance.now();
    var r = await o.createToken(card);
    if (!r.token) throw new Error('tokenize failed: ' + JSON.stringify(r.error));
    out.push(performance.now() - t0);
  }
  return out;
})()`)
	require.Len(t, lat, 50)
	slices.Sort(ready)
	slices.Sort(lat)
	t.Logf("mount() to ready over %d page loads: p50 %.1f ms, max %.1f ms", len(ready), ready[len(ready)/2], ready[len(ready)-1])
	t.Logf("createToken (click to token) over %d tokenizations: p50 %.1f ms, p99 %.1f ms", len(lat), lat[len(lat)/2], lat[len(lat)*99/100])
}
