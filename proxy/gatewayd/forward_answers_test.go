package gatewayd_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/gatewayd"
)

const (
	ansPAN = "4242424242424242"
	ansCVC = "123"
)

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// escapeDigits writes every digit as esc does (\u0034, %34, …).
func escapeDigits(b []byte, esc func(c byte) string) []byte {
	var out bytes.Buffer
	for _, c := range b {
		if c >= '0' && c <= '9' {
			out.WriteString(esc(c))
		} else {
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

func utf16LE(b []byte) []byte {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, c, 0)
	}
	return out
}

// trickyUpstream echoes the request in the many ways an upstream might
// (compressed, escaped, transcoded, in headers and trailers), by the last
// path segment.
type trickyUpstream struct {
	srv      *httptest.Server
	mu       sync.Mutex
	accepted []string // the Accept-Encoding of each request
	bomb     []byte
}

func newTrickyUpstream(t *testing.T) *trickyUpstream {
	u := &trickyUpstream{bomb: gzipBytes(make([]byte, 8<<20))}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.accepted = append(u.accepted, r.Header.Get("Accept-Encoding"))
		u.mu.Unlock()
		var req struct {
			Card struct{ Number, CVC string }
		}
		_ = json.Unmarshal(body, &req)
		pan, cvc := req.Card.Number, req.Card.CVC
		h := w.Header()
		h.Set("Content-Type", "application/json")
		mode := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		if e, ok := echoTricks[mode]; ok && pan != "" {
			body = e(h, pan)
			w.WriteHeader(201)
			_, _ = w.Write(body)
			return
		}
		switch mode {
		case "negotiate": // compresses when asked to, as servers do
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				h.Set("Content-Encoding", "gzip")
				body = gzipBytes(body)
			}
		case "deflate":
			h.Set("Content-Encoding", "deflate")
			body = zlibBytes(body)
		case "br", "zstd", "compress", "x-unknown":
			h.Set("Content-Encoding", mode)
		case "stacked":
			h.Set("Content-Encoding", "gzip, gzip")
			body = gzipBytes(gzipBytes(body))
		case "cvc-tricks": // whole values the CVC rules learnt
			h.Set("X-Cvc-Result", "cvc "+cvc)
			body = []byte(`{"cvc_check":{"value":` + cvc + `},"security_code_echo": ` + cvc + `,"cvv":[` + cvc + `],"cvc2":"` + cvc[:1] + "\u200b" + cvc[1:] + `"}`)
		case "cvc-start":
			h.Set("Content-Type", "text/plain")
			body = []byte(cvc + " M")
		case "double-gzip":
			h.Set("Content-Encoding", "gzip")
			body = gzipBytes(gzipBytes(body))
		case "gzip-identity":
			h.Set("Content-Encoding", "gzip, identity")
			body = gzipBytes(gzipBytes(body))
		case "undeclared-gzip":
			body = gzipBytes(body)
		case "gzip-type":
			h.Set("Content-Type", "application/gzip")
			body = gzipBytes(body)
		case "ebcdic-xcharset":
			h.Set("Content-Type", "text/plain; xcharset=utf-8; charset=ibm037")
		case "two-content-types":
			h["Content-Type"] = []string{"application/json; charset=utf-8", "text/plain; charset=ibm037"}
		case "unasked":
			h.Set("Content-Encoding", "gzip")
			h.Add("Content-Encoding", "br")
		case "bomb":
			h.Set("Content-Encoding", "gzip")
			body = u.bomb
		case "corrupt":
			h.Set("Content-Encoding", "gzip")
			body = append(gzipBytes(body)[:20], body...)
		case "ebcdic":
			h.Set("Content-Type", "text/plain; charset=IBM037")
		case "partial":
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body[:20])
			return
		case "json-escaped":
			body = escapeDigits(body, func(c byte) string { return fmt.Sprintf(`\u%04x`, c) })
		case "percent":
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			body = escapeDigits(body, func(c byte) string { return fmt.Sprintf("%%%02X", c) })
		case "entities":
			h.Set("Content-Type", "text/html")
			body = escapeDigits(body, func(c byte) string { return fmt.Sprintf("&#%d;", c) })
		case "grouped":
			body = []byte(fmt.Sprintf(`{"card":"%s %s %s %s","also":"%s-%s-%s-%s","cvc":%s}`, pan[:4], pan[4:8], pan[8:12], pan[12:], pan[:4], pan[4:8], pan[8:12], pan[12:], cvc))
		case "utf16":
			h.Set("Content-Type", "application/json; charset=utf-16le")
			body = utf16LE(body)
		case "base64":
			body = []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(body) + `","url":"` + base64.URLEncoding.EncodeToString([]byte("x"+pan)) + `"}`)
		case "headers":
			h.Set("Location", "https://acq.example/v1/cards/"+pan[:4]+"-"+pan[4:8]+"-"+pan[8:12]+"-"+pan[12:]+"?cvc="+cvc)
			h.Add("Set-Cookie", "card="+base64.StdEncoding.EncodeToString([]byte(pan))+"; Path=/")
			h.Add("Set-Cookie", "cvc="+cvc+"; Secure")
			h.Set("X-Echo-Pan", string(escapeDigits([]byte(pan), func(c byte) string { return fmt.Sprintf("%%%02X", c) })))
			h.Set("X-Echo-Cvc", cvc)
			h.Set("X-Echo-Check", "card check: "+r.Header.Get("X-Card-Check")) // the template's text, "12/2031 123"
			h.Set("X-"+pan, "in a header name")
			body = []byte(`{"ok":true}`)
		case "trailer":
			h.Set("Trailer", "X-Echo-Pan")
			w.WriteHeader(201)
			_, _ = w.Write(body)
			w.(http.Flusher).Flush()
			h.Set("X-Echo-Pan", pan)
			return
		}
		w.WriteHeader(201)
		_, _ = w.Write(body)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// digitRunes writes each digit of pan with f.
func digitRunes(pan string, f func(d int) string) []byte {
	var b strings.Builder
	for _, c := range pan {
		b.WriteString(f(int(c - '0')))
	}
	return []byte(b.String())
}

func joinGroups(pan, sep string) []byte {
	return []byte(`{"card":"` + pan[:4] + sep + pan[4:8] + sep + pan[8:12] + sep + pan[12:] + `"}`)
}

// echoTricks spell the revealed number in ways a merchant could read but
// the redactor does not know: the backstop refuses each (or the redactor
// masks it).
var echoTricks = map[string]func(h http.Header, pan string) []byte{
	"entity-long": func(_ http.Header, p string) []byte {
		return digitRunes(p, func(d int) string { return fmt.Sprintf("&#0000000%d;", 48+d) })
	},
	"entity-nosemi": func(_ http.Header, p string) []byte {
		return digitRunes(p, func(d int) string { return fmt.Sprintf("&#%d", 48+d) })
	},
	"percent-fullwidth": func(_ http.Header, p string) []byte {
		return digitRunes(p, func(d int) string { return fmt.Sprintf("%%EF%%BC%%%02X", 0x90+d) })
	},
	"newline":           func(_ http.Header, p string) []byte { return joinGroups(p, "\n") },
	"crlf":              func(_ http.Header, p string) []byte { return joinGroups(p, "\r\n") },
	"pipe":              func(_ http.Header, p string) []byte { return joinGroups(p, "|") },
	"colon":             func(_ http.Header, p string) []byte { return joinGroups(p, ":") },
	"en-dash":           func(_ http.Header, p string) []byte { return joinGroups(p, "\u2013") },
	"ideographic-space": func(_ http.Header, p string) []byte { return joinGroups(p, "\u3000") },
	"zero-width-space":  func(_ http.Header, p string) []byte { return joinGroups(p, "\u200b") },
	"soft-hyphen":       func(_ http.Header, p string) []byte { return joinGroups(p, "\u00ad") },
	"four-separators":   func(_ http.Header, p string) []byte { return joinGroups(p, " -- ") },
	"json-array": func(_ http.Header, p string) []byte {
		return []byte(`{"d":["` + strings.Join(strings.Split(p, ""), `","`) + `"]}`)
	},
	"base64-grouped": func(_ http.Header, p string) []byte {
		return []byte(`{"b":"` + base64.StdEncoding.EncodeToString(joinGroups(p, " ")) + `"}`)
	},
	"base64-utf16": func(_ http.Header, p string) []byte {
		return []byte(`{"b":"` + base64.StdEncoding.EncodeToString(utf16LE([]byte(p))) + `"}`)
	},
	"base64-gzip": func(_ http.Header, p string) []byte {
		return []byte(`{"b":"` + base64.StdEncoding.EncodeToString(gzipBytes([]byte(p))) + `"}`)
	},
	"hex-grouped": func(_ http.Header, p string) []byte {
		return []byte(`{"h":"` + fmt.Sprintf("%x", joinGroups(p, " ")) + `"}`)
	},
	"utf16-fullwidth": func(h http.Header, p string) []byte {
		h.Set("Content-Type", "text/plain; charset=utf-16le")
		var b []byte
		for _, c := range p {
			r := 0xFF10 + c - '0'
			b = append(b, byte(r), byte(r>>8))
		}
		return b
	},
	"superscript": func(_ http.Header, p string) []byte {
		sup := []rune("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
		return digitRunes(p, func(d int) string { return string(sup[d]) })
	},
	"circled": func(_ http.Header, p string) []byte {
		return digitRunes(p, func(d int) string {
			if d == 0 {
				return "\u24ea"
			}
			return string(rune(0x2460 + d - 1))
		})
	},
	"octal": func(_ http.Header, p string) []byte {
		return digitRunes(p, func(d int) string { return fmt.Sprintf(`\%03o`, '0'+d) })
	},
	"split-headers": func(h http.Header, p string) []byte {
		h.Set("X-Part-A", p[:8])
		h.Set("X-Part-B", p[8:])
		return []byte(`{}`)
	},
	"split-values": func(h http.Header, p string) []byte {
		h.Add("X-Part", p[:8])
		h.Add("X-Part", p[8:])
		return []byte(`{}`)
	},
}

// echoMaskable are the tricks the redactor masks (so the answer is
// relayed); every other one must be refused.
var echoMaskable = map[string]bool{"zero-width-space": true, "soft-hyphen": true}

// readable reports whether the merchant could read pan in the answer by
// keeping its digits (NFKC-normalised, escapes undone as decodable does).
func readable(h http.Header, body []byte, pan string) bool {
	var s strings.Builder
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.WriteString(k + strings.Join(h[k], ""))
	}
	s.Write(body)
	return strings.Contains(digitsOf(norm.NFKC.String(s.String())), pan)
}

var escapes = regexp.MustCompile(`\\u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}|&#[0-9]{1,7};`)

// decodable lists the forms of the PAN or CVC that a merchant could still
// decode from an answer: it undoes gzip/deflate (as a client would), the
// usual escapes, UTF-16 padding and base64, independently of the scanner.
func decodable(t *testing.T, h http.Header, body []byte) []string {
	t.Helper()
	switch h.Get("Content-Encoding") {
	case "gzip":
		if r, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, _ = io.ReadAll(r)
		}
	case "deflate":
		if r, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			body, _ = io.ReadAll(r)
		}
	}
	var texts []string
	texts = append(texts, string(body))
	for k, vs := range h {
		texts = append(texts, k+": "+strings.Join(vs, "; "))
	}
	var found []string
	for _, s := range texts {
		s = strings.ReplaceAll(s, "\x00", "")
		s = escapes.ReplaceAllStringFunc(s, func(m string) string {
			var v int
			switch {
			case strings.HasPrefix(m, `\u`):
				_, _ = fmt.Sscanf(m[2:], "%x", &v)
			case strings.HasPrefix(m, "%"):
				_, _ = fmt.Sscanf(m[1:], "%x", &v)
			default:
				_, _ = fmt.Sscanf(strings.Trim(m, "&#;"), "%d", &v)
			}
			return string(rune(v))
		})
		digits := strings.NewReplacer(" ", "", "-", "").Replace(s)
		if strings.Contains(digits, ansPAN) {
			found = append(found, "PAN in "+s)
		}
		for _, m := range []string{`"cvc":"` + ansCVC + `"`, `"cvc":` + ansCVC, "cvc=" + ansCVC, ": " + ansCVC, " " + ansCVC} {
			if strings.Contains(s, m) {
				found = append(found, "CVC in "+s)
			}
		}
		for _, w := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(`"=; ,:`, r) }) {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				if d, err := enc.DecodeString(w); err == nil && strings.Contains(string(d), ansPAN[:12]) {
					found = append(found, "base64 PAN in "+w)
				}
			}
		}
	}
	return found
}

// rawUpstream is a TLS listener that answers each request with bytes
// written by hand (by the last path segment): answers net/http would not
// write, such as malformed status lines and headers.
func rawUpstream(t *testing.T, cfg *tls.Config, answers map[string]string) string {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, answers[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]])
			}()
		}
	}()
	return ln.Addr().String()
}

// TestForwardAnswers: through the real gateway (vaultd over mTLS, an HTTPS
// upstream), the merchant only ever gets bytes the gateway scanned: it
// asks upstream for encodings it can decode whatever the merchant accepts,
// decodes them (bounded), refuses the others with a typed 502, and masks
// the revealed card number and CVC in every form it recognises, in the
// body and in the headers; trailers are not relayed.
func TestForwardAnswers(t *testing.T) {
	up := newTrickyUpstream(t)
	h, _ := url.Parse(up.srv.URL)
	gz := gzipBytes([]byte(`{"card":"` + ansPAN + `"}`))
	raw := rawUpstream(t, up.srv.TLS, map[string]string{
		"no-colon":       "HTTP/1.1 200 OK\r\nX-Card " + ansPAN + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
		"status":         "HTTP/1.1 2" + ansPAN + " OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: " + ansPAN + "x\r\nConnection: close\r\n\r\n{}",
		"te":             "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + ansPAN + "\r\nConnection: close\r\n\r\n{}",
		// A keep-alive connection that sends more after the answer: Go's
		// transport logs the bytes with the standard log package.
		"unsolicited": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}X-Card: " + ansPAN + "\r\n",
		"space-colon": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding : gzip\r\nContent-Length: " + fmt.Sprint(len(gz)) + "\r\nConnection: close\r\n\r\n" + string(gz),
	})
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(`routes:
  - name: echo
    host: `+h.Host+`
    paths: ["/v1/echo/*"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
      - json: card.cvc
        value: "{{token.cvc}}"
      - header: X-Card-Check
        value: "{{token.exp_month}}/{{token.exp_year}} {{token.cvc}}"
  - name: raw
    host: `+raw+`
    paths: ["/v1/raw/*"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
`), 0o600))
	stdlog := &testenv.SyncBuffer{}
	prevLog := log.Writer()
	log.SetOutput(stdlog)
	t.Cleanup(func() { log.SetOutput(prevLog) })
	s := start(t, func(c *gatewayd.Config, _ string) {
		c.RoutesFile = routes
		c.UpstreamTLS = up.srv.Client().Transport.(*http.Transport).TLSClientConfig
	})
	leaks := testenv.NewLeakScanner()
	leaks.AddCard(ansPAN, ansCVC)
	fwd := func(mode string) (int, http.Header, []byte) {
		t.Helper()
		tok := s.tokenize(t, ansPAN, ansCVC)
		body := `{"amount":1000,"card":{"number":"` + tok + `","cvc":"` + tok + `"}}`
		req, _ := http.NewRequest("POST", "http://"+s.gw+"/v1/forward", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.sk)
		dest := up.srv.URL + "/v1/echo/" + mode
		if m, ok := strings.CutPrefix(mode, "raw/"); ok {
			body = `{"card":{"number":"` + tok + `"}}`
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
			dest = "https://" + raw + "/v1/raw/" + m
		}
		req.Header.Set("Obol-Destination", dest)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
		req.Header.Set("X-Card-Check", tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		for k, v := range resp.Trailer {
			resp.Header["Trailer-"+k] = v
		}
		return resp.StatusCode, resp.Header, b
	}

	relayed := []struct {
		mode, want string
		redacted   string
	}{
		{"negotiate", `"cvc":"***"`, "2"},
		{"deflate", `"cvc":"***"`, "2"},
		{"json-escaped", `"cvc":"******************"`, "2"},
		{"percent", `"cvc":"*********"`, "2"},
		{"entities", `"cvc":"***************"`, "2"},
		{"grouped", `"cvc":***`, "3"},
		{"utf16", string(utf16LE([]byte(`"cvc":"***"`))), "2"},
		{"base64", `"blob":"`, "2"},
		{"headers", `{"ok":true}`, "8"},
		{"trailer", `"cvc":"***"`, "2"},
		{"cvc-tricks", `{"cvc_check":{"value":***},"security_code_echo": ***,"cvv":[***],"cvc2":"*` + "\u200b" + `**"}`, "5"},
		{"cvc-start", `*** M`, "1"},
	}
	for _, tt := range relayed {
		t.Run(tt.mode, func(t *testing.T) {
			st, hdr, out := fwd(tt.mode)
			require.Equal(t, 201, st, "%s", out)
			assert.Empty(t, hdr.Get("Content-Encoding"), "the merchant gets the scanned bytes, uncompressed")
			assert.Empty(t, decodable(t, hdr, out), "%v %q", hdr, out)
			assert.Contains(t, string(out), tt.want)
			assert.Equal(t, tt.redacted, hdr.Get("Obol-Redacted"))
			if strings.HasPrefix(tt.mode, "cvc-") {
				assert.NotContains(t, string(out), ansCVC)
				if tt.mode == "cvc-tricks" {
					assert.Equal(t, "cvc ***", hdr.Get("X-Cvc-Result"))
				}
			}
			assert.NotContains(t, hdr, "Trailer-X-Echo-Pan", "trailers are not relayed")
			leaks.Scan("answer "+tt.mode, out)
			for k, vs := range hdr {
				leaks.Scan("answer header "+tt.mode, []byte(k+": "+strings.Join(vs, "\n")))
			}
		})
	}
	up.mu.Lock()
	for _, a := range up.accepted {
		assert.Equal(t, "gzip, deflate", a, "the gateway asks upstream for what it can decode, not what the merchant accepts")
	}
	up.mu.Unlock()

	// Echoes the redactor does not recognise: refused whole by the
	// backstop (or, where the redactor learnt the form, masked).
	echoRefused := 0
	for mode := range echoTricks {
		t.Run("echo/"+mode, func(t *testing.T) {
			st, hdr, out := fwd(mode)
			leaks.Scan("echo "+mode, out)
			if st == 201 && echoMaskable[mode] {
				assert.False(t, readable(hdr, out, ansPAN), "relayed readable: %v %q", hdr, out)
				return
			}
			echoRefused++
			assert.Equal(t, 502, st, "%s", out)
			assert.Contains(t, string(out), `"code":"upstream_echoed_card"`)
		})
	}

	refused := []struct{ mode, code string }{
		{"br", "upstream_encoding_unsupported"},
		{"zstd", "upstream_encoding_unsupported"},
		{"compress", "upstream_encoding_unsupported"},
		{"x-unknown", "upstream_encoding_unsupported"},
		{"stacked", "upstream_encoding_unsupported"},
		{"unasked", "upstream_encoding_unsupported"},
		{"ebcdic", "upstream_encoding_unsupported"},
		{"bomb", "upstream_compression_ratio"},
		{"corrupt", "upstream_encoding_invalid"},
		{"partial", "upstream_partial_content"},
		// Compressed data the gateway did not decode: nested, undeclared,
		// typed or behind a header Go does not read.
		{"double-gzip", "upstream_encoding_unsupported"},
		{"gzip-identity", "upstream_encoding_unsupported"},
		{"undeclared-gzip", "upstream_encoding_unsupported"},
		{"gzip-type", "upstream_encoding_unsupported"},
		{"raw/space-colon", "upstream_encoding_unsupported"},
		// The charset is the Content-Type's parameter, of its only header.
		{"ebcdic-xcharset", "upstream_encoding_unsupported"},
		{"two-content-types", "upstream_encoding_unsupported"},
		// Answers that are not HTTP: the transport's error quotes the
		// upstream's bytes; the gateway logs only a class.
		{"raw/no-colon", "upstream_answer_malformed"},
		{"raw/status", "upstream_answer_malformed"},
		{"raw/content-length", "upstream_answer_malformed"},
		{"raw/te", "upstream_answer_malformed"},
	}
	for _, tt := range refused {
		t.Run(tt.mode, func(t *testing.T) {
			st, _, out := fwd(tt.mode)
			assert.Equal(t, 502, st)
			assert.Contains(t, string(out), `"code":"`+tt.code+`"`)
			leaks.Scan("refusal "+tt.mode, out)
		})
	}
	// Bytes after an answer on a kept-alive connection: the transport logs
	// them (log.Printf); the gateway's log masks card numbers in them.
	st, _, out := fwd("raw/unsolicited")
	require.Equal(t, 200, st, "%s", out)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if strings.Contains(stdlog.String()+s.logs.String(), "Unsolicited response") {
			return nil
		}
		return errors.New("the transport has not logged the unsolicited bytes yet")
	}))
	leaks.Scan("standard log", []byte(stdlog.String()))

	// A Range request could split a number across answers: refused, named.
	req, _ := http.NewRequest("POST", "http://"+s.gw+"/v1/forward", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+s.sk)
	req.Header.Set("Obol-Destination", up.srv.URL+"/v1/echo/negotiate")
	req.Header.Set("Range", "bytes=0-10")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, string(b), `"field":"Range"`)

	resp, err = http.Get("http://" + s.gw + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(metrics), fmt.Sprintf(`obol_gateway_forward_requests_total{outcome="answer_refused",route="echo"} %d`, 16+echoRefused))
	assert.Contains(t, string(metrics), fmt.Sprintf(`obol_gateway_forward_requests_total{outcome="forwarded",route="echo"} %d`, 12+len(echoTricks)-echoRefused))
	assert.Contains(t, string(metrics), `obol_gateway_forward_requests_total{outcome="upstream_error",route="raw"} 4`)
	assert.Contains(t, string(metrics), `obol_gateway_forward_requests_total{outcome="answer_refused",route="raw"} 1`)
	leaks.Scan("logs", s.logs.Bytes())
	leaks.Scan("metrics", metrics)
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits)
}
