package panscan

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const bsPAN = "4111111111111111"

func each(f func(d int) string) string {
	var b strings.Builder
	for _, c := range bsPAN {
		b.WriteString(f(int(c - '0')))
	}
	return b.String()
}

func groups(sep string) string {
	return bsPAN[:4] + sep + bsPAN[4:8] + sep + bsPAN[8:12] + sep + bsPAN[12:]
}

func gzipped(s string) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return buf.Bytes()
}

func utf16leRunes(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// TestEchoed: the backstop reads a revealed number through any separator,
// script, escape or encoding listed in its doc, and not in masked text,
// other numbers or a BIN and last four.
func TestEchoed(t *testing.T) {
	echoes := []struct {
		name  string
		parts []string
	}{
		{"plain", []string{bsPAN}},
		{"entity with many digits", []string{each(func(d int) string { return fmt.Sprintf("&#00000000%d;", 48+d) })}},
		{"entity without a semicolon", []string{each(func(d int) string { return fmt.Sprintf("&#%d", 48+d) })}},
		{"hex entity", []string{each(func(d int) string { return fmt.Sprintf("&#x%x", 48+d) })}},
		{"percent-encoded fullwidth", []string{each(func(d int) string { return fmt.Sprintf("%%EF%%BC%%%02X", 0x90+d) })}},
		{"\\x-escaped fullwidth", []string{each(func(d int) string { return fmt.Sprintf(`\xef\xbc\x%02x`, 0x90+d) })}},
		{"octal", []string{each(func(d int) string { return fmt.Sprintf(`\%03o`, '0'+d) })}},
		{"double escaped", []string{each(func(d int) string { return fmt.Sprintf(`%%25%02X`, '0'+d) })}},
		{"\\U", []string{each(func(d int) string { return fmt.Sprintf(`\U%08x`, '0'+d) })}},
		{"newline", []string{groups("\n")}},
		{"crlf", []string{groups("\r\n")}},
		{"pipe", []string{groups("|")}},
		{"colon", []string{groups(":")}},
		{"en dash", []string{groups("\u2013")}},
		{"ideographic space", []string{groups("\u3000")}},
		{"zero-width space", []string{groups("\u200b")}},
		{"soft hyphen", []string{groups("\u00ad")}},
		{"many separators", []string{groups(" -- ")}},
		{"JSON array", []string{`["` + strings.Join(strings.Split(bsPAN, ""), `","`) + `"]`}},
		{"superscript", []string{each(func(d int) string { return string([]rune("⁰¹²³⁴⁵⁶⁷⁸⁹")[d]) })}},
		{"circled", []string{each(func(d int) string { return string([]rune("⓪①②③④⑤⑥⑦⑧⑨")[d]) })}},
		{"Arabic-Indic", []string{each(func(d int) string { return string(rune(0x660 + d)) })}},
		{"split across parts", []string{"X-A: ", bsPAN[:7], "\nX-B: ", bsPAN[7:]}},
		{"UTF-16LE fullwidth", []string{string(utf16leRunes(each(func(d int) string { return string(rune(0xFF10 + d)) })))}},
		{"UTF-16BE, odd offset", []string{"x" + each(func(d int) string { return "\x00" + string(rune('0'+d)) })}},
		{"EBCDIC", []string{each(func(d int) string { return string([]byte{byte(0xF0 + d)}) })}},
		{"base64 of grouped digits", []string{`{"b":"` + base64.StdEncoding.EncodeToString([]byte(groups(" "))) + `"}`}},
		{"base64 of UTF-16", []string{base64.StdEncoding.EncodeToString([]byte(utf16le(bsPAN)))}},
		{"base64 of gzip", []string{base64.StdEncoding.EncodeToString(gzipped(bsPAN))}},
		{"base64url, offset", []string{"x" + base64.RawURLEncoding.EncodeToString([]byte("::"+groups("-")))}},
		{"hex of grouped digits", []string{"h=" + hex.EncodeToString([]byte(groups(" ")))}},
		{"base64 of hex", []string{base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString([]byte(groups(".")))))}},
	}
	r := NewRedactor([][]byte{[]byte(bsPAN)}, nil)
	defer r.Wipe()
	for _, tt := range echoes {
		t.Run(tt.name, func(t *testing.T) {
			parts := make([][]byte, len(tt.parts))
			for i, p := range tt.parts {
				parts[i] = []byte(p)
			}
			assert.True(t, r.Echoed(parts...))
		})
	}
	clean := []struct{ name, text string }{
		{"masked", `{"card":"************1111","grouped":"**** **** **** 1111"}`},
		{"BIN and last four", `{"bin":"411111","last4":"1111","exp":"12/2031"}`},
		{"other numbers", `{"amount":1000,"id":"ch_3PqR7sT9uVwXyZ12","ts":1796144275}`},
		{"base64 of other text", base64.StdEncoding.EncodeToString([]byte("a quite ordinary sentence of text"))},
		{"another card", "5555555555554444"},
	}
	for _, tt := range clean {
		t.Run(tt.name, func(t *testing.T) {
			assert.False(t, r.Echoed([]byte(tt.text)))
		})
	}
	assert.False(t, NewRedactor(nil, nil).Echoed([]byte(bsPAN)), "nothing revealed, nothing to refuse")
}

// FuzzEchoed: the backstop never panics, and a revealed number written
// plainly anywhere in any text is found.
func FuzzEchoed(f *testing.F) {
	f.Add([]byte(`{"a":"&#52;&#x34;\u0034%34\064"}`), 3)
	f.Add([]byte("QUJD\xff\xfe4\x00"), 0)
	f.Fuzz(func(t *testing.T, b []byte, at int) {
		r := NewRedactor([][]byte{[]byte(bsPAN)}, nil)
		_ = r.Echoed(b)
		if at < 0 || at > len(b) {
			at = len(b)
		}
		with := append(append(append([]byte(nil), b[:at]...), bsPAN...), b[at:]...)
		require.True(t, r.Echoed(with), "missed a plain number in %q", with)
	})
}
