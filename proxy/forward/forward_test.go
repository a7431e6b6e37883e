package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const goodRoutes = `
routes:
  - name: acme
    host: api.acme.example
    paths: ["/v1/charges", "/v1/cards/*"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
      - json: card.exp_month
        value: "{{ token.exp_month }}"
        as: number
      - header: x-card-expiry
        value: "{{token.exp_month}}/{{token.exp_year}}"
  - name: formy
    host: pay.form.example:8443
    paths: ["/charge"]
    methods: [POST, PUT]
    merchants: [mer_a]
    reveal:
      - form: card[cvc]
        value: "{{token.cvc}}"
`

func TestParseRoutes(t *testing.T) {
	tab, err := Parse([]byte(goodRoutes))
	require.NoError(t, err)
	require.Len(t, tab.Routes, 2, "parsed: %+v", tab.Routes)
	require.Equal(t, "X-Card-Expiry", tab.Routes[0].Reveal[2].Header)
	require.Len(t, tab.Routes[0].Reveal[2].Fields(), 2)
	route := func(extra string) string {
		return "routes:\n  - name: r\n    host: api.x.example\n    paths: [/a]\n    methods: [POST]\n    reveal:\n      - json: card.number\n        value: \"{{token.number}}\"\n" + extra
	}
	bad := []struct{ name, yaml, want string }{
		{"not yaml", "routes: [", "route file"},
		{"unknown key", "routes:\n  - name: r\n    hosts: x\n", "field hosts not found"},
		{"no name", strings.Replace(route(""), "name: r", "name: ''", 1), "name is required"},
		{"scheme in host", strings.Replace(route(""), "host: api.x.example", "host: https://api.x.example", 1), "bare host"},
		{"wildcard host", strings.Replace(route(""), "host: api.x.example", "host: '*.x.example'", 1), "wildcards"},
		{"host with path", strings.Replace(route(""), "host: api.x.example", "host: api.x.example/v1", 1), "without a path"},
		{"upper-case host", strings.Replace(route(""), "host: api.x.example", "host: API.x.example", 1), "lower-case"},
		{"no paths", strings.Replace(route(""), "paths: [/a]", "paths: []", 1), "at least one path"},
		{"relative path", strings.Replace(route(""), "paths: [/a]", "paths: [a]", 1), "must start with /"},
		{"inner wildcard", strings.Replace(route(""), "paths: [/a]", "paths: [/a/*/b]", 1), "trailing /*"},
		{"dot dot", strings.Replace(route(""), "paths: [/a]", "paths: [/a/../b]", 1), "no .."},
		{"everything", strings.Replace(route(""), "paths: [/a]", "paths: [/*]", 1), "every path"},
		{"bad method", strings.Replace(route(""), "methods: [POST]", "methods: [post]", 1), "upper case"},
		{"bad merchant", route("    merchants: [acme]\n"), "not a merchant id"},
		{"no reveal", strings.Split(route(""), "    reveal:")[0] + "    reveal: []\n", "at least one reveal"},
		{"two locations", strings.Replace(route(""), "json: card.number", "json: card.number\n        form: x", 1), "exactly one"},
		{"unknown placeholder", strings.Replace(route(""), "token.number", "token.pan", 1), "unknown card field"},
		{"not a token placeholder", strings.Replace(route(""), "token.number", "card.number", 1), "unknown placeholder"},
		{"nothing revealed", strings.Replace(route(""), "{{token.number}}", "plain", 1), "reveals nothing"},
		{"quote in literal", strings.Replace(route(""), `"{{token.number}}"`, `'x"{{token.number}}'`, 1), "quotes"},
		{"number of the pan", strings.Replace(route(""), `value: "{{token.number}}"`, "value: \"{{token.number}}\"\n        as: number", 1), "as: number needs"},
		{"reserved header", strings.Replace(route(""), "json: card.number", "header: Authorization", 1), "gateway's"},
		{"obol header", strings.Replace(route(""), "json: card.number", "header: Obol-Destination", 1), "gateway's"},
		{"empty json segment", strings.Replace(route(""), "json: card.number", "json: card..number", 1), "empty segment"},
		{"revealed twice", route("      - json: card.number\n        value: \"{{token.number}}\"\n"), "revealed twice"},
		{"duplicate name", route("  - name: r\n    host: b.example\n    paths: [/a]\n    methods: [GET]\n    reveal:\n      - form: n\n        value: \"{{token.number}}\"\n"), "name used twice"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestMatch(t *testing.T) {
	tab, err := Parse([]byte(goodRoutes))
	require.NoError(t, err)
	cases := []struct {
		name, merchant, method, host, path, route, reason string
	}{
		{"exact path", "mer_x", "POST", "api.acme.example", "/v1/charges", "acme", ""},
		{"prefix path", "mer_x", "POST", "api.acme.example", "/v1/cards/abc", "acme", ""},
		{"prefix itself", "mer_x", "POST", "api.acme.example", "/v1/cards/", "", "does not allow this path"},
		{"other path", "mer_x", "POST", "api.acme.example", "/v1/refunds", "", "does not allow this path"},
		{"method", "mer_x", "GET", "api.acme.example", "/v1/charges", "", "route acme does not allow this method"},
		{"a method is not echoed", "mer_x", "4242424242424242", "api.acme.example", "/v1/charges", "", "route acme does not allow this method"},
		{"subdomain", "mer_x", "POST", "evil.api.acme.example", "/v1/charges", "", "no route allows this host"},
		{"suffix host", "mer_x", "POST", "api.acme.example.evil", "/v1/charges", "", "no route allows this host"},
		{"port must match", "mer_a", "POST", "pay.form.example", "/charge", "", "no route allows this host"},
		{"merchant allowed", "mer_a", "PUT", "pay.form.example:8443", "/charge", "formy", ""},
		{"another merchant's route is not named", "mer_b", "PUT", "pay.form.example:8443", "/charge", "", "no route allows this host"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r, miss := tab.Match(tt.merchant, tt.method, tt.host, tt.path)
			got := ""
			if r != nil {
				got = r.Name
			}
			require.Equal(t, tt.route, got, "reason %q", miss.Reason)
			require.Contains(t, miss.Reason, tt.reason)
			if tt.merchant != "mer_a" {
				require.NotContains(t, miss.Reason, "formy", "the reason names another merchant's route")
			}
			require.NotContains(t, miss.Reason, tt.method, "the reason echoes the method")
		})
	}
}

func TestJSONSpan(t *testing.T) {
	cases := []struct {
		name, body, path, token string
		err                     error
	}{
		{"nested", `{"amount":1,"card":{"number":"tok_abc","cvc":"x"}}`, "card.number", "tok_abc", nil},
		{"array index", `{"items":[{"pan":"tok_1"},{"pan":"tok_2"}]}`, "items.1.pan", "tok_2", nil},
		{"spaces", `{ "card" : { "number" :  "tok_abc" } }`, "card.number", "tok_abc", nil},
		{"missing", `{"card":{}}`, "card.number", "", errMissing},
		{"duplicate key", `{"card":{"number":"tok_a","number":"tok_b"}}`, "card.number", "", errDuplicate},
		{"a number there", `{"card":{"number":4242}}`, "card.number", "", errNotToken},
		{"an object there", `{"card":{"number":{"a":1}}}`, "card.number", "", errNotToken},
		{"escaped token", `{"card":{"number":"tok\u005fabc"}}`, "card.number", "", errNotToken},
		{"not a token", `{"card":{"number":"4242424242424242"}}`, "card.number", "", errNotToken},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			start, end, tok, err := jsonSpan([]byte(tt.body), tt.path)
			require.Equal(t, tt.err, err)
			require.Equal(t, tt.token, tok)
			if err == nil {
				require.Equal(t, `"`+tt.token+`"`, tt.body[start:end], "span")
			}
		})
	}
	for _, bad := range []string{`{"card":`, `{"a":1} x`, strings.Repeat("[", 100) + strings.Repeat("]", 100)} {
		_, _, _, err := jsonSpan([]byte(bad), "card.number")
		assert.Error(t, err, "%q: want a JSON error", bad)
		assert.NotEqual(t, errMissing, err, "%q: want a JSON error", bad)
	}
}

func TestFormSpan(t *testing.T) {
	cases := []struct {
		name, body, field, token string
		err                      error
	}{
		{"plain", "amount=100&card%5Bnumber%5D=tok_abc&x=1", "card[number]", "tok_abc", nil},
		{"last", "a=1&n=tok_z", "n", "tok_z", nil},
		{"missing", "a=1", "n", "", errMissing},
		{"twice", "n=tok_a&n=tok_b", "n", "", errDuplicate},
		{"empty", "n=&a=1", "n", "", errNotToken},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			start, end, tok, err := formSpan([]byte(tt.body), tt.field)
			require.Equal(t, tt.err, err)
			require.Equal(t, tt.token, tok)
			if err == nil {
				require.Equal(t, tt.token, tt.body[start:end], "span")
			}
		})
	}
}

func TestSpliceRenders(t *testing.T) {
	tab, err := Parse([]byte(goodRoutes))
	require.NoError(t, err)
	r := &tab.Routes[0]
	body := []byte(`{"card":{"number":"tok_a","exp_month":"tok_a"},"amount":5}`)
	s1, e1, _, _ := jsonSpan(body, "card.number")
	s2, e2, _, _ := jsonSpan(body, "card.exp_month")
	c := &Revealed{Number: []byte("4242424242424242"), ExpMonth: 7, ExpYear: 2031}
	out, err := splice(body, []span{{s1, e1, "tok_a", &r.Reveal[0]}, {s2, e2, "tok_a", &r.Reveal[1]}}, map[string]*Revealed{"tok_a": c})
	require.NoError(t, err)
	require.Equal(t, `{"card":{"number":"4242424242424242","exp_month":7},"amount":5}`, string(out))
	h, err := r.Reveal[2].render(nil, c)
	require.NoError(t, err, "header")
	require.Equal(t, "07/2031", string(h), "header")
	form := &tab.Routes[1].Reveal[0]
	_, err = form.render(nil, &Revealed{Number: []byte("4242424242424242")})
	require.Equal(t, errNoCVC, err, "cvc gone")
}

func TestRoutesHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(path, []byte(goodRoutes), 0o600))
	rs, err := Load(path)
	require.NoError(t, err)
	changed, err := rs.Reload()
	require.NoError(t, err)
	require.False(t, changed, "unchanged file reloaded")
	touch := func(content string, at time.Time) {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		require.NoError(t, os.Chtimes(path, at, at))
	}
	touch("routes: [\n", time.Now().Add(time.Minute))
	changed, err = rs.Reload()
	require.NoError(t, err, "bad file, first seen: not read yet")
	require.False(t, changed, "bad file, first seen")
	_, err = rs.Reload()
	require.Error(t, err, "bad file")
	require.Len(t, rs.Table().Routes, 2, "bad file: the old table stays")
	require.Equal(t, int64(1), rs.Rejected.Load(), "bad file: rejected")
	_, err = rs.Reload()
	require.NoError(t, err, "bad file, unchanged: refused once, not every reload")
	require.Equal(t, int64(1), rs.Rejected.Load(), "bad file refused once")

	// A file seen half-written (here: emptied, as a copy or an editor
	// truncates before it writes) and then complete is read only once it
	// stayed the same for two reloads: never refused or loaded half-way.
	touch("", time.Now().Add(2*time.Minute))
	changed, err = rs.Reload()
	require.NoError(t, err, "emptied file, first seen")
	require.False(t, changed, "emptied file, first seen")
	touch(strings.SplitN(goodRoutes, "  - name: formy", 2)[0], time.Now().Add(3*time.Minute))
	changed, err = rs.Reload()
	require.NoError(t, err, "good file, first seen")
	require.False(t, changed, "good file, first seen: not acted on yet")
	require.Len(t, rs.Table().Routes, 2, "good file, first seen: the old table stays")
	changed, err = rs.Reload()
	require.NoError(t, err, "good file")
	require.True(t, changed, "good file")
	require.Len(t, rs.Table().Routes, 1, "good file")
	require.Equal(t, int64(1), rs.Rejected.Load(), "the half-written file was never refused")
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err, "a missing route file loaded")
}

func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte(goodRoutes))
	f.Add([]byte("routes:\n  - name: r\n    host: h\n    paths: [/a/*]\n    methods: [GET]\n    reveal:\n      - form: a\n        value: \"x{{token.cvc}}y\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Parse(b)
		if err != nil {
			return
		}
		for _, r := range tab.Routes {
			require.NotContains(t, r.Host, "/", "accepted a bad route: %+v", r)
			require.NotContains(t, r.Host, "*", "accepted a bad route: %+v", r)
			require.NotEmpty(t, r.Reveal, "accepted a bad route: %+v", r)
			for _, rv := range r.Reveal {
				require.NotEmpty(t, rv.Fields(), "accepted a reveal of nothing: %+v", rv)
			}
		}
	})
}

func FuzzJSONSpan(f *testing.F) {
	f.Add([]byte(`{"card":{"number":"tok_abc"}}`), "card.number")
	f.Add([]byte(`[{"a":"tok_x"}]`), "0.a")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		start, end, tok, err := jsonSpan(body, path)
		if err != nil {
			return
		}
		require.True(t, isToken(tok), "span %d:%d for %q", start, end, tok)
		require.Equal(t, `"`+tok+`"`, string(body[start:end]), "span %d:%d", start, end)
	})
}

func FuzzFormSpan(f *testing.F) {
	f.Add([]byte("a=1&card%5Bnumber%5D=tok_abc"), "card[number]")
	f.Fuzz(func(t *testing.T, body []byte, field string) {
		start, end, tok, err := formSpan(body, field)
		if err != nil {
			return
		}
		require.Equal(t, tok, string(body[start:end]), "span")
		require.True(t, isToken(tok), "span for %q", tok)
	})
}

// TestTransportClass: a failed upstream exchange is reduced to a class from
// a fixed set; whatever the transport does not type is a malformed answer,
// and the class never carries the error's text.
func TestTransportClass(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Post", URL: "https://acq.example/v1", Err: err} }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", wrap(context.DeadlineExceeded), classTimeout},
		{"dns", wrap(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "acq.example"}}), classDNS},
		{"refused", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), classDial},
		{"tls record", wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), classTLS},
		{"unknown authority", wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), classTLS},
		{"tls alert", wrap(&net.OpError{Op: "remote error", Err: tls.AlertError(42)}), classTLS},
		{"closed", wrap(io.ErrUnexpectedEOF), classClosed},
		{"reset", wrap(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), classClosed},
		{"malformed header", wrap(errors.New(`net/http: malformed MIME header: missing colon: "X-Card 4242424242424242"`)), classMalformed},
		{"malformed status", wrap(fmt.Errorf("malformed HTTP status code %q", "24242424242424242")), classMalformed},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, transportClass(tt.err))
		})
	}
}
