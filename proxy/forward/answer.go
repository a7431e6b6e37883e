package forward

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/obolpay/obol/internal/apierr"
)

// The gateway asks every upstream for these encodings (whatever the
// merchant's Accept-Encoding says), decodes them, scans the plain text and
// answers the merchant uncompressed.
const acceptEncoding = "gzip, deflate"

// ratioFloor is the decoded size under which the compression ratio is not
// checked (small answers compress well and are cheap anyway).
const ratioFloor = 64 << 10

// Refusals of an upstream answer (502; outcome answer_refused).
const (
	CodeEncodingUnsupported = "upstream_encoding_unsupported"
	CodeEncodingInvalid     = "upstream_encoding_invalid"
	CodeCompressionRatio    = "upstream_compression_ratio"
	CodeResponseTooLarge    = "upstream_response_too_large"
	CodePartialContent      = "upstream_partial_content"
)

func badAnswer(code, msg string) *apierr.Error {
	return apierr.New(apierr.KindBadGateway, code, "", msg)
}

// contentCoding reads the answer's Content-Encoding: "" (identity), "gzip"
// or "deflate". Anything else (br, zstd, compress, an unknown name, or two
// codings stacked) is refused: the gateway can scan only what it can
// decode, and it asked for nothing else.
func contentCoding(h http.Header) (string, *apierr.Error) {
	var codings []string
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return "", nil
	case len(codings) > 1:
		return "", badAnswer(CodeEncodingUnsupported, "the destination answered with stacked content codings; the gateway relays only answers it can scan (identity, gzip or deflate)")
	}
	switch codings[0] {
	case "gzip", "x-gzip":
		return "gzip", nil
	case "deflate":
		return "deflate", nil
	}
	return "", badAnswer(CodeEncodingUnsupported, "the destination answered with a content coding the gateway did not ask for and cannot scan; it relays identity, gzip or deflate only")
}

// scannableCharsets are the charsets whose digits the scanner reads
// (ASCII-compatible ones, and UTF-16/32 through their NUL padding).
func charsetOK(contentType string) bool {
	ct := strings.ToLower(contentType)
	i := strings.Index(ct, "charset")
	if i < 0 {
		return true
	}
	rest := strings.TrimLeft(ct[i+len("charset"):], " \t")
	rest, ok := strings.CutPrefix(rest, "=")
	if !ok {
		return false
	}
	rest = strings.Trim(strings.TrimLeft(rest, " \t"), `"'`)
	if j := strings.IndexAny(rest, `;, "'`); j >= 0 {
		rest = rest[:j]
	}
	switch rest {
	case "utf-8", "utf8", "us-ascii", "ascii", "latin1", "utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be":
		return true
	}
	return strings.HasPrefix(rest, "iso-8859-") || strings.HasPrefix(rest, "windows-125")
}

// readAnswer reads the upstream's body (at most max bytes on the wire and
// decoded, and at most maxRatio times the wire size once decoded past
// ratioFloor) and decodes its content coding.
func readAnswer(resp *http.Response, max, maxRatio int64) ([]byte, *apierr.Error) {
	if resp.StatusCode == http.StatusPartialContent {
		return nil, badAnswer(CodePartialContent, "the destination answered with part of a body (206); the gateway relays whole answers only, which it can scan")
	}
	if !charsetOK(resp.Header.Get("Content-Type")) {
		return nil, badAnswer(CodeEncodingUnsupported, "the destination answered in a charset the gateway cannot scan; it relays ASCII-compatible charsets, UTF-16 and UTF-32 only")
	}
	coding, e := contentCoding(resp.Header)
	if e != nil {
		return nil, e
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		wipe(raw)
		return nil, apierr.New(apierr.KindBadGateway, "upstream_unavailable", "", "the destination's answer could not be read")
	}
	if int64(len(raw)) > max {
		wipe(raw)
		return nil, badAnswer(CodeResponseTooLarge, "the destination's answer is larger than the gateway relays")
	}
	if coding == "" {
		return raw, nil
	}
	defer wipe(raw)
	out, e := decode(coding, raw, max, maxRatio)
	if e != nil {
		wipe(out)
		return nil, e
	}
	return out, nil
}

func decode(coding string, raw []byte, max, maxRatio int64) ([]byte, *apierr.Error) {
	limit, byRatio := max, false
	if r := int64(len(raw)) * maxRatio; r < max {
		limit, byRatio = r, true
		if limit < ratioFloor {
			limit, byRatio = min(ratioFloor, max), ratioFloor < max
		}
	}
	var rd io.Reader
	var err error
	switch coding {
	case "gzip":
		rd, err = gzip.NewReader(bytes.NewReader(raw))
	default:
		// deflate means zlib (RFC 9110); some servers send raw deflate.
		rd, err = zlib.NewReader(bytes.NewReader(raw))
		if errors.Is(err, zlib.ErrHeader) {
			rd, err = flate.NewReader(bytes.NewReader(raw)), nil
		}
	}
	if err != nil {
		return nil, badAnswer(CodeEncodingInvalid, "the destination's "+coding+" answer could not be decoded")
	}
	out, err := io.ReadAll(io.LimitReader(rd, limit+1))
	switch {
	case int64(len(out)) > limit && byRatio:
		return out, badAnswer(CodeCompressionRatio, "the destination's "+coding+" answer expands more than the gateway allows (a decompression bomb?)")
	case int64(len(out)) > limit:
		return out, badAnswer(CodeResponseTooLarge, "the destination's answer, decoded, is larger than the gateway relays")
	case err != nil:
		return out, badAnswer(CodeEncodingInvalid, "the destination's "+coding+" answer could not be decoded")
	}
	return out, nil
}
