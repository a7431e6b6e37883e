package panscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testPAN = "4242424242424242"
	testCVC = "123"
)

func jsonEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		b.WriteString(`\u00` + hex.EncodeToString([]byte{byte(c)}))
	}
	return b.String()
}

func percent(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}

func utf16le(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteByte(c)
		b.WriteByte(0)
	}
	return b.String()
}

func fullwidth(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(0xFF10 + c - '0')
		} else {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// TestRedactorRevealedNumber: a revealed card number is masked in every
// form the redactor documents, and the length never changes.
func TestRedactorRevealedNumber(t *testing.T) {
	cases := []struct{ name, in string }{
		{"plain", `{"pan":"4242424242424242"}`},
		{"spaced", "4242 4242 4242 4242"},
		{"dashed", "4242-4242-4242-4242"},
		{"dotted", "4242.4242.4242.4242"},
		{"odd grouping", "42 4242 - 42424 2424 2"},
		{"glued", "ref94242424242424242x"},
		{"json escaped", `{"pan":"` + jsonEscape(testPAN) + `"}`},
		{"json escaped spaced", jsonEscape("4242 4242 4242 4242")},
		{"mixed escapes", `42\u00342%34%3242&#52;2&#x34;2\x34242`},
		{"percent", "pan=" + percent(testPAN)},
		{"percent spaced", "pan=" + percent("4242 4242 4242 4242")},
		{"percent-u", "%u0034%u0032" + "42424242424242"},
		{"form plus", "pan=4242+4242+4242+4242"},
		{"utf-16le", utf16le(`{"pan":"4242424242424242"}`)},
		{"utf-16be", "\x00" + utf16le("4242 4242 4242 4242")[:37]},
		{"fullwidth", fullwidth("4242 4242 4242 4242")},
		{"hex", "x=" + hex.EncodeToString([]byte(testPAN))},
		{"HEX", "x=" + strings.ToUpper(hex.EncodeToString([]byte(testPAN)))},
		{"base64", "x=" + base64.StdEncoding.EncodeToString([]byte(testPAN))},
		{"base64 shifted 1", "x=" + base64.StdEncoding.EncodeToString([]byte("a"+testPAN))},
		{"base64 shifted 2", "x=" + base64.StdEncoding.EncodeToString([]byte("ab"+testPAN+"c"))},
		{"base64url", "x=" + base64.URLEncoding.EncodeToString([]byte(`{"n":"`+testPAN+`"}`))},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			r := NewRedactor([][]byte{[]byte(testPAN)}, nil)
			n := r.Redact(b)
			assert.Len(t, b, len(tt.in), "length kept")
			assert.GreaterOrEqual(t, n, 1, "masked: %q", b)
			assert.Empty(t, revealedForms(b), "a decodable form remains: %q", b)
		})
	}
}

// revealedForms decodes b in the simple ways and lists the ones that still
// hold the test PAN (an independent check of the redactor).
func revealedForms(b []byte) []string {
	var out []string
	strip := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 0xFF10 && r <= 0xFF19 {
				return '0' + r - 0xFF10
			}
			if strings.ContainsRune(" -.+_\x00", r) {
				return -1
			}
			return r
		}, s)
	}
	views := map[string]string{"raw": strip(string(b))}
	dec := string(b)
	for _, f := range []func(string) string{unescapeAll} {
		dec = f(dec)
	}
	views["unescaped"] = strip(dec)
	for name, v := range views {
		if strings.Contains(v, testPAN) {
			out = append(out, name)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for _, pre := range []string{"", "a", "ab"} {
			f := enc.EncodeToString([]byte(pre + testPAN))[4:16]
			if bytes.Contains(b, []byte(f)) {
				out = append(out, "base64")
			}
		}
	}
	if bytes.Contains(bytes.ToLower(b), []byte(hex.EncodeToString([]byte(testPAN)))) {
		out = append(out, "hex")
	}
	return out
}

// unescapeAll undoes \uXXXX, \xHH, %HH, %uXXXX and &#…; escapes of ASCII
// characters (written independently of the redactor's decoder).
func unescapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		try := func(prefix string, n int, base int) bool {
			if !strings.HasPrefix(s[i:], prefix) || i+len(prefix)+n > len(s) {
				return false
			}
			v := 0
			for _, c := range s[i+len(prefix) : i+len(prefix)+n] {
				d := strings.IndexRune("0123456789abcdef", c|0x20)
				if d < 0 || d >= base {
					return false
				}
				v = v*base + d
			}
			b.WriteRune(rune(v))
			i += len(prefix) + n
			return true
		}
		switch {
		case try(`\u`, 4, 16), try(`\x`, 2, 16), try("%u", 4, 16), try("%", 2, 16):
		case strings.HasPrefix(s[i:], "&#") && strings.Contains(s[i:min(len(s), i+10)], ";"):
			end := i + strings.Index(s[i:], ";")
			body, base := s[i+2:end], 10
			if strings.HasPrefix(body, "x") {
				body, base = body[1:], 16
			}
			v := 0
			okNum := body != ""
			for _, c := range body {
				d := strings.IndexRune("0123456789abcdef", c|0x20)
				if d < 0 || d >= base {
					okNum = false
				}
				v = v*base + d
			}
			if okNum {
				b.WriteRune(rune(v))
				i = end + 1
			} else {
				b.WriteByte(s[i])
				i++
			}
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// TestRedactorCVC: the revealed CVC is masked where it is a whole value and
// nowhere else.
func TestRedactorCVC(t *testing.T) {
	cases := []struct {
		name, in, out string
		header        bool
	}{
		{"json string", `{"cvc":"123"}`, `{"cvc":"***"}`, false},
		{"json number after a cvc key", `{"card":{"cvc": 123}}`, `{"card":{"cvc": ***}}`, false},
		{"json escaped", `{"cvc":"\u0031\u0032\u0033"}`, `{"cvc":"******************"}`, false},
		{"form value", "card%5Bcvc%5D=123&x=1", "card%5Bcvc%5D=***&x=1", false},
		{"form value at the end", "a=1&b=123", "a=1&b=***", false},
		{"xml element", "<cvv2>123</cvv2>", "<cvv2>***</cvv2>", false},
		{"text key", "security_code: 123.", "security_code: ***.", false},
		{"single quotes", "['123']", "['***']", false},
		{"utf-16", utf16le(`"cvc":"123"`), utf16le(`"cvc":"***"`), false},
		{"cookie", "c=123; Path=/", "c=***; Path=/", true},
		{"whole header value", " 123 ", " *** ", true},
		{"amount stays", `{"amount":123,"currency":"usd"}`, `{"amount":123,"currency":"usd"}`, false},
		{"inside a longer number stays", `{"id":"ord_91234","n":1234}`, `{"id":"ord_91234","n":1234}`, false},
		{"glued to letters stays", "x123y", "x123y", false},
		{"a decimal stays", `{"fee":"1.123"}`, `{"fee":"1.123"}`, false},
		{"a time stays", "12:123 in a sentence", "12:123 in a sentence", false},
		{"not whole in a header stays", "Tue, 01 Dec 123 GMT", "Tue, 01 Dec 123 GMT", true},
		{"nested under a cvc key", `{"cvc_check":{"value":123}}`, `{"cvc_check":{"value":***}}`, false},
		{"nested, not the first key", `{"cvcResult":{"status":"pass","code":123}}`, `{"cvcResult":{"status":"pass","code":***}}`, false},
		{"in an array under a cvc key", `{"cvv":[123]}`, `{"cvv":[***]}`, false},
		{"a one-element array", `[123]`, `[***]`, false},
		{"a key holding security code", `{"security_code_echo": 123}`, `{"security_code_echo": ***}`, false},
		{"zero-width space inside", "{\"cvc\":\"1\u200b23\"}", "{\"cvc\":\"*\u200b**\"}", false},
		{"soft hyphen inside, escaped", `{"cvc":"1\u00ad23"}`, `{"cvc":"*\u00ad**"}`, false},
		{"at the very start", "123 is the code", "*** is the code", false},
		{"the whole body", "123", "***", false},
		{"nested under another key stays", `{"status":{"value":123}}`, `{"status":{"value":123}}`, false},
		{"after a cvc object stays", `{"cvc_check":{"result":"pass"},"amount":123}`, `{"cvc_check":{"result":"pass"},"amount":123}`, false},
		{"a word holding cid stays", `{"incident":{"n":123}}`, `{"incident":{"n":123}}`, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRedactor(nil, [][]byte{[]byte(testCVC)})
			b := []byte(tt.in)
			var n int
			if tt.header {
				n = r.RedactHeader(b)
			} else {
				n = r.Redact(b)
			}
			assert.Equal(t, tt.out, string(b))
			if tt.in == tt.out {
				assert.Zero(t, n)
			} else {
				assert.Equal(t, 1, n)
			}
		})
	}
}

// TestRedactorCVCHeader: in a header whose name names a security code, the
// CVC is masked wherever it stands alone; elsewhere only a whole value is.
func TestRedactorCVCHeader(t *testing.T) {
	cases := []struct{ name, header, in, out string }{
		{"cvc header", "X-Cvc-Result", "cvc 123", "cvc ***"},
		{"camel case", "X-CvvCheck", "M (123)", "M (***)"},
		{"security code header", "X-Security-Code-Echo", "code=123,ok", "code=***,ok"},
		{"other header stays", "X-Amount", "total 123", "total 123"},
		{"glued stays", "X-Cvc-Result", "cvc 91234", "cvc 91234"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRedactor(nil, [][]byte{[]byte(testCVC)})
			b := []byte(tt.in)
			n := r.RedactHeaderValue([]byte(tt.header), b)
			assert.Equal(t, tt.out, string(b))
			assert.Equal(t, tt.in != tt.out, n > 0)
		})
	}
}

// TestRedactorLiteral: text the request sent with the CVC in it is masked
// whole where it comes back; short literals are left to the CVC rules.
func TestRedactorLiteral(t *testing.T) {
	r := NewRedactor(nil, [][]byte{[]byte(testCVC)})
	r.AddLiteral([]byte("12/2031 123"))
	r.AddLiteral([]byte(`"123"`))
	b := []byte("X-Echo: 12/2031 123; again 12/2031 123; alone 123 stays")
	assert.Equal(t, 2, r.Redact(b))
	assert.Equal(t, "X-Echo: ***********; again ***********; alone 123 stays", string(b))
	assert.Len(t, r.literal, 1)
}

func TestRedactorIgnoresBadValuesAndWipes(t *testing.T) {
	r := NewRedactor([][]byte{[]byte("4242"), []byte("42424242424242x2")}, [][]byte{[]byte("12"), []byte("12345"), []byte("1a3")})
	assert.Empty(t, r.numbers)
	assert.Empty(t, r.cvcs)
	pan := []byte(testPAN)
	r = NewRedactor([][]byte{pan}, [][]byte{[]byte(testCVC)})
	pan[0] = '9' // the redactor holds its own copy
	r.AddLiteral([]byte("12/2031 123"))
	b := []byte(testPAN)
	require.Equal(t, 1, r.Redact(b))
	r.Wipe()
	for _, s := range [][][]byte{r.numbers, r.cvcs, r.forms, r.literal} {
		for _, v := range s {
			assert.Equal(t, make([]byte, len(v)), v)
		}
	}
}

func TestRedactUnknownEncoded(t *testing.T) {
	// Numbers nothing revealed are found through escapes and UTF-16 too.
	for _, in := range []string{jsonEscape("5555555555554444"), percent("5555 5555 5555 4444"), utf16le("5555-5555-5555-4444"), fullwidth("5555555555554444")} {
		b := []byte(in)
		assert.Equal(t, 1, Redact(b), "%q", in)
		assert.NotContains(t, strings.ReplaceAll(unescapeAll(string(b)), "\x00", ""), "555555555555")
	}
	// An escape that decodes to something else does not eat the digits after it.
	b := []byte("%4242424242424242")
	assert.Equal(t, 1, Redact(b))
	assert.Equal(t, "%************4242", string(b))
}

// FuzzRedactEncoded: for any text around a revealed PAN and CVC in a form the
// redactor supports, no decodable form of the PAN remains, the CVC in its
// field is masked, the length stays, and a second pass changes nothing.
func FuzzRedactEncoded(f *testing.F) {
	f.Add([]byte(`{"a":`), []byte(`}`), uint8(0), uint8(0))
	f.Add([]byte("\x00x"), []byte("9"), uint8(3), uint8(2))
	f.Add([]byte(`\u003`), []byte("%"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, prefix, suffix []byte, enc, grp uint8) {
		groupings := []string{testPAN, "4242 4242 4242 4242", "4242-4242-4242-4242", "42.4242.42424242.42"}
		encodings := []func(string) string{
			func(s string) string { return s }, jsonEscape, percent, utf16le, fullwidth,
			func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
			func(s string) string { return hex.EncodeToString([]byte(s)) },
		}
		form := encodings[int(enc)%len(encodings)](groupings[int(grp)%len(groupings)])
		cvc := encodings[int(enc)%3](testCVC) // plain, JSON or percent escapes
		in := bytes.Join([][]byte{prefix, []byte(form), []byte(`,"cvc":"` + cvc + `",`), suffix}, nil)
		b := bytes.Clone(in)
		r := NewRedactor([][]byte{[]byte(testPAN)}, [][]byte{[]byte(testCVC)})
		r.Redact(b)
		require.Len(t, b, len(in))
		window := b[len(prefix) : len(prefix)+len(form)]
		require.Empty(t, revealedForms(window), "a form remains in %q (from %q)", window, in)
		field := b[len(prefix)+len(form)+8 : len(prefix)+len(form)+8+len(cvc)]
		require.Empty(t, strings.Trim(string(field), "*"), "the CVC stays: %q", field)
		again := bytes.Clone(b)
		r.Redact(again)
		require.Equal(t, b, again, "not idempotent")
	})
}
