package forward

import (
	"net/url"
	"strings"

	"github.com/obolpay/obol/internal/apierr"
)

const codeDestinationInvalid = "destination_invalid"

func notAllowed(reason string) *apierr.Error {
	return apierr.New(apierr.KindPermissionDenied, "destination_not_allowed", HeaderDestination, "the destination is not allowed by the route file: "+reason)
}

func destInvalid(msg string) *apierr.Error {
	return apierr.Invalid(codeDestinationInvalid, HeaderDestination, "Obol-Destination "+msg)
}

// Characters a destination may hold as they are (RFC 3986): unreserved,
// and the path's sub-delimiters except ";" (path parameters, which some
// servers strip before matching, "..;/"), plus ":" and "@". The query
// also allows "?", ";" and the brackets of "expand[]=…".
const (
	unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
	pathChars  = unreserved + "/!$&'()*+,=:@"
	queryChars = pathChars + "?;[]"
)

// destination parses and normalises Obol-Destination. It refuses what
// could make the upstream read another path than the one the routes
// matched: escapes other than of unreserved characters (those are
// decoded, RFC 3986 §6.2.2.2), dot and empty segments, path parameters,
// control and non-ASCII characters. In the query, escapes are kept, but
// escaped control characters are refused. Messages name the offending
// character class, never the merchant's text.
func destination(values []string) (*url.URL, string, *apierr.Error) {
	switch {
	case len(values) == 0 || values[0] == "":
		return nil, "", apierr.Invalid(apierr.CodeFieldRequired, HeaderDestination, "the Obol-Destination header is required (https://host/path)")
	case len(values) > 1:
		return nil, "", destInvalid("is given more than once")
	}
	raw := values[0]
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c < 0x20 || c == 0x7f:
			return nil, "", destInvalid("holds a control character")
		case c >= 0x80:
			return nil, "", destInvalid("holds a non-ASCII character; percent-encode it in the query, paths must be ASCII")
		}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return nil, "", destInvalid("must be an absolute URL, https://host/path")
	case u.Scheme != "https":
		return nil, "", notAllowed("https only")
	case u.User != nil || u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, "", destInvalid("may not carry credentials or a fragment")
	}
	// The path as the merchant wrote it: after "scheme://authority", up to
	// the query.
	rest := raw[strings.Index(raw, "://")+3:]
	rawPath := ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 && rest[i] == '/' {
		rawPath = rest[i:]
		if j := strings.IndexByte(rawPath, '?'); j >= 0 {
			rawPath = rawPath[:j]
		}
	}
	path, e := normalPath(rawPath)
	if e != nil {
		return nil, "", e
	}
	if e := checkQuery(u.RawQuery); e != nil {
		return nil, "", e
	}
	if strings.Contains(path, "/../") || strings.Contains(path, "/./") || strings.Contains(path, "//") || strings.HasSuffix(path, "/..") || strings.HasSuffix(path, "/.") {
		return nil, "", notAllowed("the path must be plain (no dot segments or empty segments)")
	}
	if path == "" {
		path = "/"
	}
	u.Path, u.RawPath = path, path
	host := strings.ToLower(u.Host)
	host = strings.TrimSuffix(host, ":443")
	return u, host, nil
}

// normalPath decodes escapes of unreserved characters and refuses every
// other escape and every character outside pathChars.
func normalPath(raw string) (string, *apierr.Error) {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || hexVal(raw[i+1]) < 0 || hexVal(raw[i+2]) < 0 {
				return "", destInvalid("has a malformed percent-escape in its path")
			}
			d := byte(hexVal(raw[i+1])<<4 | hexVal(raw[i+2]))
			if !strings.ContainsRune(unreserved, rune(d)) {
				return "", destInvalid("escapes a reserved or control character in its path (%" + strings.ToUpper(raw[i+1:i+3]) + "); only letters, digits and - . _ ~ may be escaped there")
			}
			b.WriteByte(d)
			i += 2
			continue
		}
		if c == ';' {
			return "", destInvalid("has a path parameter (;) in its path")
		}
		if !strings.ContainsRune(pathChars, rune(c)) {
			return "", destInvalid("has a character its path may not hold (" + strings.TrimSpace(charName(c)) + ")")
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// checkQuery refuses characters a query may not hold and escaped control
// characters (CR, LF, NUL…), which an upstream could decode into a header
// or a log line.
func checkQuery(q string) *apierr.Error {
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c == '%' {
			if i+2 >= len(q) || hexVal(q[i+1]) < 0 || hexVal(q[i+2]) < 0 {
				return destInvalid("has a malformed percent-escape in its query")
			}
			if d := hexVal(q[i+1])<<4 | hexVal(q[i+2]); d < 0x20 || d == 0x7f {
				return destInvalid("escapes a control character in its query (%" + strings.ToUpper(q[i+1:i+3]) + ")")
			}
			i += 2
			continue
		}
		if !strings.ContainsRune(queryChars, rune(c)) {
			return destInvalid("has a character its query may not hold (" + charName(c) + ")")
		}
	}
	return nil
}

func charName(c byte) string {
	switch c {
	case ' ':
		return "a space"
	case '"':
		return "a double quote"
	}
	return `"` + string(c) + `"`
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
