package forward

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"mime"
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

// contentTypeOK checks the answer's Content-Type (parsed as RFC 2045
// says, mime.ParseMediaType): at most one header; a charset, when given,
// that the scanner reads (ASCII-compatible ones, and UTF-16/32 through their
// NUL padding); and not a compressed or archive type, whose bytes the
// scanner cannot read. A Content-Type that does not parse is refused.
func contentTypeOK(h http.Header) *apierr.Error {
	vs := h.Values("Content-Type")
	switch {
	case len(vs) == 0:
		return nil
	case len(vs) > 1:
		return badAnswer(CodeEncodingUnsupported, "the destination answered with more than one Content-Type; the gateway relays only answers whose charset it knows")
	}
	mt, params, err := mime.ParseMediaType(vs[0])
	if err != nil {
		return badAnswer(CodeEncodingUnsupported, "the destination answered with a Content-Type that does not parse; the gateway relays only answers whose charset it knows")
	}
	if cs, ok := params["charset"]; ok && !charsetOK(strings.ToLower(cs)) {
		return badAnswer(CodeEncodingUnsupported, "the destination answered in a charset the gateway cannot scan; it relays ASCII-compatible charsets, UTF-16 and UTF-32 only")
	}
	if compressedType(mt) {
		return badAnswer(CodeEncodingUnsupported, "the destination answered with a compressed or binary type ("+mt+"); the gateway relays only bodies it can scan")
	}
	return nil
}

func charsetOK(cs string) bool {
	switch cs {
	case "utf-8", "utf8", "us-ascii", "ascii", "latin1", "utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be":
		return true
	}
	return strings.HasPrefix(cs, "iso-8859-") || strings.HasPrefix(cs, "windows-125")
}

// compressedTypes are media types of compressed data or archives (and
// application/octet-stream, which may be any of them, brotli included,
// which has no magic number to recognise it by).
var compressedTypes = map[string]bool{
	"application/gzip": true, "application/x-gzip": true, "application/zip": true, "application/x-zip-compressed": true,
	"application/zstd": true, "application/x-zstd": true, "application/x-bzip": true, "application/x-bzip2": true,
	"application/x-xz": true, "application/x-7z-compressed": true, "application/x-compress": true, "application/x-compressed": true,
	"application/x-lzip": true, "application/x-lzma": true, "application/x-lz4": true, "application/x-brotli": true,
	"application/x-tar": true, "application/x-gtar": true, "application/vnd.rar": true, "application/x-rar-compressed": true,
	"application/java-archive": true, "application/octet-stream": true,
}

func compressedType(mt string) bool {
	if compressedTypes[mt] || strings.Contains(mt, "compress") {
		return true
	}
	for _, suf := range []string{"+gzip", "+zip", "+zstd", "+br"} {
		if strings.HasSuffix(mt, suf) {
			return true
		}
	}
	return false
}

// magics start compressed data and archives: gzip, compress (.Z), zstd,
// bzip2, xz, zip, 7z, lz4, rar, lzip.
var magics = [][]byte{{0x1f, 0x8b}, {0x1f, 0x9d}, {0x28, 0xb5, 0x2f, 0xfd}, []byte("BZh"), {0xfd, '7', 'z', 'X', 'Z', 0},
	[]byte("PK\x03\x04"), []byte("PK\x05\x06"), []byte("PK\x07\x08"), {'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, {0x04, 0x22, 0x4d, 0x18},
	[]byte("Rar!\x1a\x07"), []byte("LZIP")}

// compressedBody reports whether a (decoded) body starts as compressed
// data or an archive does: the scanner cannot read it, the merchant could
// decode it.
func compressedBody(b []byte) bool {
	for _, m := range magics {
		if bytes.HasPrefix(b, m) {
			return true
		}
	}
	// zlib: 0x78 and a check byte (the usual compression levels).
	return len(b) >= 2 && b[0] == 0x78 && (b[1] == 0x01 || b[1] == 0x5e || b[1] == 0x9c || b[1] == 0xda)
}

// readAnswer reads the upstream's body (at most max bytes on the wire and
// decoded, and at most maxRatio times the wire size once decoded past
// ratioFloor) and decodes its content coding.
func readAnswer(resp *http.Response, max, maxRatio int64) ([]byte, *apierr.Error) {
	if resp.StatusCode == http.StatusPartialContent {
		return nil, badAnswer(CodePartialContent, "the destination answered with part of a body (206); the gateway relays whole answers only, which it can scan")
	}
	if e := contentTypeOK(resp.Header); e != nil {
		return nil, e
	}
	coding, e := contentCoding(resp.Header)
	if e != nil {
		return nil, e
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		clear(raw)
		return nil, apierr.New(apierr.KindBadGateway, "upstream_unavailable", "", "the destination's answer could not be read")
	}
	if int64(len(raw)) > max {
		clear(raw)
		return nil, badAnswer(CodeResponseTooLarge, "the destination's answer is larger than the gateway relays")
	}
	if coding == "" {
		if compressedBody(raw) {
			clear(raw)
			return nil, errCompressedBody
		}
		return raw, nil
	}
	defer clear(raw)
	out, e := decode(coding, raw, max, maxRatio)
	if e == nil && compressedBody(out) {
		e = errCompressedBody
	}
	if e != nil {
		clear(out)
		return nil, e
	}
	return out, nil
}

// errCompressedBody refuses a body that is, once decoded, still compressed
// data or an archive (gzip inside gzip, gzip without Content-Encoding).
var errCompressedBody = badAnswer(CodeEncodingUnsupported, "the destination's answer is compressed data the gateway did not decode (nested or undeclared); it relays only bodies it can scan")

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
