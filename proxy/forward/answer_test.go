package forward

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/proxy/panscan"
)

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func zl(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	_, _ = w.Write(b)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func rawDeflate(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	_, _ = w.Write(b)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func answer(status int, hdr map[string]string, body []byte) *http.Response {
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body))}
}

// TestReadAnswer: the gateway decodes what it asked for (bounded in size
// and ratio) and refuses, typed, every answer it could not scan.
func TestReadAnswer(t *testing.T) {
	plain := []byte(`{"card":{"number":"4242424242424242"}}`)
	zeros := make([]byte, 200<<10)
	ok := []struct {
		name string
		hdr  map[string]string
		body []byte
	}{
		{"identity", nil, plain},
		{"identity named", map[string]string{"Content-Encoding": "identity"}, plain},
		{"gzip", map[string]string{"Content-Encoding": "gzip"}, gz(t, plain)},
		{"x-gzip upper case", map[string]string{"Content-Encoding": " X-GZIP "}, gz(t, plain)},
		{"gzip members", map[string]string{"Content-Encoding": "gzip"}, append(gz(t, plain[:10]), gz(t, plain[10:])...)},
		{"deflate (zlib)", map[string]string{"Content-Encoding": "deflate"}, zl(t, plain)},
		{"deflate (raw)", map[string]string{"Content-Encoding": "deflate"}, rawDeflate(t, plain)},
		{"utf-16 charset", map[string]string{"Content-Type": "application/json; charset=UTF-16LE"}, plain},
		{"quoted charset", map[string]string{"Content-Type": `text/plain; charset="utf-8"`}, plain},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			out, e := readAnswer(answer(200, tt.hdr, tt.body), 1<<20, 100)
			require.Nil(t, e)
			assert.Equal(t, plain, out)
		})
	}
	bomb := gz(t, make([]byte, 4<<20))
	bad := []struct {
		name   string
		status int
		hdr    map[string]string
		body   []byte
		code   string
	}{
		{"br", 200, map[string]string{"Content-Encoding": "br"}, plain, CodeEncodingUnsupported},
		{"zstd", 200, map[string]string{"Content-Encoding": "zstd"}, plain, CodeEncodingUnsupported},
		{"compress", 200, map[string]string{"Content-Encoding": "compress"}, plain, CodeEncodingUnsupported},
		{"unknown", 200, map[string]string{"Content-Encoding": "x-obol"}, plain, CodeEncodingUnsupported},
		{"stacked", 200, map[string]string{"Content-Encoding": "gzip, gzip"}, gz(t, gz(t, plain)), CodeEncodingUnsupported},
		{"stacked over two lines", 200, map[string]string{"Content-Encoding": "gzip"}, gz(t, plain), ""},
		{"not gzip", 200, map[string]string{"Content-Encoding": "gzip"}, plain, CodeEncodingInvalid},
		{"truncated gzip", 200, map[string]string{"Content-Encoding": "gzip"}, gz(t, plain)[:20], CodeEncodingInvalid},
		{"gzip with trailing garbage", 200, map[string]string{"Content-Encoding": "gzip"}, append(gz(t, plain), "4242424242424242"...), CodeEncodingInvalid},
		{"bomb over the size cap", 200, map[string]string{"Content-Encoding": "gzip"}, bomb, CodeCompressionRatio},
		{"ratio past 64 KiB", 200, map[string]string{"Content-Encoding": "gzip"}, gz(t, zeros), CodeCompressionRatio},
		{"too large", 200, nil, make([]byte, 1<<20+1), CodeResponseTooLarge},
		{"ebcdic", 200, map[string]string{"Content-Type": "text/plain; charset=IBM037"}, plain, CodeEncodingUnsupported},
		{"charset without a value", 200, map[string]string{"Content-Type": "text/plain; charset"}, plain, CodeEncodingUnsupported},
		{"partial", 206, nil, plain[:10], CodePartialContent},
		{"gzip in gzip", 200, map[string]string{"Content-Encoding": "gzip"}, gz(t, gz(t, plain)), CodeEncodingUnsupported},
		{"gzip, identity over gzip in gzip", 200, map[string]string{"Content-Encoding": "gzip, identity"}, gz(t, gz(t, plain)), CodeEncodingUnsupported},
		{"undeclared gzip", 200, nil, gz(t, plain), CodeEncodingUnsupported},
		{"undeclared zlib", 200, nil, zl(t, plain), CodeEncodingUnsupported},
		{"zlib in deflate", 200, map[string]string{"Content-Encoding": "deflate"}, zl(t, zl(t, plain)), CodeEncodingUnsupported},
		{"undeclared zstd", 200, nil, append([]byte{0x28, 0xb5, 0x2f, 0xfd}, plain...), CodeEncodingUnsupported},
		{"undeclared bzip2", 200, nil, append([]byte("BZh9"), plain...), CodeEncodingUnsupported},
		{"undeclared xz", 200, nil, append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, plain...), CodeEncodingUnsupported},
		{"undeclared zip", 200, nil, append([]byte("PK\x03\x04"), plain...), CodeEncodingUnsupported},
		{"undeclared 7z", 200, nil, append([]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, plain...), CodeEncodingUnsupported},
		{"undeclared lz4", 200, nil, append([]byte{0x04, 0x22, 0x4d, 0x18}, plain...), CodeEncodingUnsupported},
		{"application/gzip", 200, map[string]string{"Content-Type": "application/gzip"}, plain, CodeEncodingUnsupported},
		{"application/zip", 200, map[string]string{"Content-Type": "application/zip"}, plain, CodeEncodingUnsupported},
		{"application/x-compress", 200, map[string]string{"Content-Type": "application/x-compress"}, plain, CodeEncodingUnsupported},
		{"application/octet-stream (could be brotli)", 200, map[string]string{"Content-Type": "application/octet-stream"}, plain, CodeEncodingUnsupported},
		{"+gzip suffix", 200, map[string]string{"Content-Type": "application/json+gzip"}, plain, CodeEncodingUnsupported},
		{"charset in another parameter", 200, map[string]string{"Content-Type": "text/plain; xcharset=utf-8; charset=ibm037"}, plain, CodeEncodingUnsupported},
		{"Content-Type that does not parse", 200, map[string]string{"Content-Type": "text/plain; charset=utf-8; charset=ibm037"}, plain, CodeEncodingUnsupported},
		{"two Content-Types", 200, map[string]string{"Content-Type": "application/json"}, plain, ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			resp := answer(tt.status, tt.hdr, tt.body)
			switch tt.name {
			case "stacked over two lines":
				resp.Header.Add("Content-Encoding", "br")
				tt.code = CodeEncodingUnsupported
			case "two Content-Types":
				resp.Header.Add("Content-Type", "text/plain; charset=ibm037")
				tt.code = CodeEncodingUnsupported
			}
			out, e := readAnswer(resp, 1<<20, 100)
			require.NotNil(t, e, "relayed %q", out)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, http.StatusBadGateway, e.HTTPStatus())
			assert.False(t, panscan.Contains(e.Message))
		})
	}
	// A highly compressible answer under the floor is fine: ratio checks
	// start past 64 KiB decoded.
	small := make([]byte, 60<<10)
	out, e := readAnswer(answer(200, map[string]string{"Content-Encoding": "gzip"}, gz(t, small)), 1<<20, 100)
	require.Nil(t, e)
	assert.Len(t, out, len(small))
	// The decoded cap is the size cap when the ratio allows more.
	big := bytes.Repeat([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1, 2, 3, 250, 7}, 100))), 1200)
	_, e = readAnswer(answer(200, map[string]string{"Content-Encoding": "gzip"}, gz(t, big)), int64(len(big)-1), 1<<20)
	require.NotNil(t, e)
	assert.Equal(t, CodeResponseTooLarge, e.Code)
}

// FuzzAnswerEncoded: the response path (decode, then mask): for any text
// around a revealed PAN and CVC, sent identity, gzip or deflate, in any
// form the redactor supports, what the merchant would get holds no
// decodable form of the PAN and the CVC field is masked.
func FuzzAnswerEncoded(f *testing.F) {
	f.Add([]byte(`{"a":`), []byte(`}`), uint8(0), uint8(1))
	f.Add([]byte("\x00"), []byte(`\`), uint8(2), uint8(4))
	f.Fuzz(func(t *testing.T, prefix, suffix []byte, coding, form uint8) {
		const pan, cvc = "4242424242424242", "123"
		forms := []string{pan, "4242 4242 4242 4242", jsonEsc(pan), pctEsc(pan), "4\x002\x004\x002\x004\x002\x004\x002\x004\x002\x004\x002\x004\x002\x004\x002\x00", base64.StdEncoding.EncodeToString([]byte("x" + pan))}
		fs := forms[int(form)%len(forms)]
		plain := bytes.Join([][]byte{prefix, []byte(fs), []byte(`"cvc":"` + cvc + `"`), suffix}, nil)
		body, hdr := plain, map[string]string{}
		switch coding % 3 {
		case 1:
			body, hdr["Content-Encoding"] = gz(t, plain), "gzip"
		case 2:
			body, hdr["Content-Encoding"] = zl(t, plain), "deflate"
		}
		out, e := readAnswer(answer(200, hdr, body), 1<<20, 100)
		require.Nil(t, e, "refused")
		red := redactorFor(map[string]*Revealed{"tok_a": {Number: []byte(pan), CVC: []byte(cvc)}})
		red.Redact(out)
		require.Len(t, out, len(plain))
		window := string(out[len(prefix) : len(prefix)+len(fs)])
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, unescapeSimple(window))
		require.NotContains(t, digits, pan[:8], "the PAN stays in %q", window)
		require.NotContains(t, window, base64.StdEncoding.EncodeToString([]byte("x" + pan))[4:16], "the PAN stays")
		require.Equal(t, "***", string(out[len(prefix)+len(fs)+7:len(prefix)+len(fs)+7+len(cvc)]), "the CVC stays")
	})
}

func jsonEsc(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteString(`\u00` + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
	}
	return b.String()
}

func pctEsc(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteString("%" + string("0123456789ABCDEF"[c>>4]) + string("0123456789ABCDEF"[c&15]))
	}
	return b.String()
}

// unescapeSimple undoes the \u00XX and %XX escapes of the fuzzer's forms.
func unescapeSimple(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], `\u00`) && i+6 <= len(s) && hexVal(s[i+4]) >= 0 && hexVal(s[i+5]) >= 0:
			b.WriteByte(byte(hexVal(s[i+4])<<4 | hexVal(s[i+5])))
			i += 5
		case s[i] == '%' && i+3 <= len(s) && hexVal(s[i+1]) >= 0 && hexVal(s[i+2]) >= 0:
			b.WriteByte(byte(hexVal(s[i+1])<<4 | hexVal(s[i+2])))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
