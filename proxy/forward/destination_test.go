package forward

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDestination: what Obol-Destination may hold. Escapes of unreserved
// characters are decoded; every other escape, control and non-ASCII
// character, path parameter, dot or empty segment is refused with a typed
// error naming the header.
func TestDestination(t *testing.T) {
	ok := []struct{ name, raw, path, query, host string }{
		{"plain", "https://api.x.example/v1/charges", "/v1/charges", "", "api.x.example"},
		{"no path", "https://api.x.example", "/", "", "api.x.example"},
		{"default port", "https://API.x.example:443/a", "/a", "", "api.x.example"},
		{"escaped unreserved is decoded", "https://h.example/v1/%63harges/%7Eid", "/v1/charges/~id", "", "h.example"},
		{"a dot inside a name", "https://h.example/v1/cards/a%2Eb", "/v1/cards/a.b", "", "h.example"},
		{"query escapes kept", "https://h.example/a?q=a%20b&expand[]=x&c=%2F", "/a", "q=a%20b&expand[]=x&c=%2F", "h.example"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			u, host, e := destination([]string{tt.raw})
			require.Nil(t, e)
			assert.Equal(t, tt.path, u.Path)
			assert.Equal(t, tt.path, u.EscapedPath())
			assert.Equal(t, tt.query, u.RawQuery)
			assert.Equal(t, tt.host, host)
		})
	}
	bad := []struct{ name, raw, code, msg string }{
		{"escaped backslash", `https://h.example/v1/cards/..%5Cadmin`, "destination_invalid", "%5C"},
		{"escaped space", "https://h.example/v1/cards/a%20b", "destination_invalid", "%20"},
		{"escaped CR LF", "https://h.example/v1/cards/a%0D%0AHost:%20evil", "destination_invalid", "%0D"},
		{"escaped slash", "https://h.example/v1/cards%2F..%2Fadmin", "destination_invalid", "%2F"},
		{"escaped NUL", "https://h.example/v1/cards/a%00", "destination_invalid", "%00"},
		{"escaped non-ASCII", "https://h.example/v1/cards/%C3%A9", "destination_invalid", "%C3"},
		{"escaped percent", "https://h.example/v1/cards/%252E%252E", "destination_invalid", "%25"},
		{"malformed escape", "https://h.example/v1/cards/%2", "destination_invalid", "absolute URL"},
		{"escaped dot segment", "https://h.example/v1/cards/%2E%2E/admin", "destination_not_allowed", "dot segments"},
		{"half escaped dot segment", "https://h.example/v1/cards/.%2E", "destination_not_allowed", "dot segments"},
		{"trailing dot", "https://h.example/v1/cards/.", "destination_not_allowed", "dot segments"},
		{"empty segment", "https://h.example/v1//charges", "destination_not_allowed", "empty segments"},
		{"path parameter", "https://h.example/v1/cards/..;/admin", "destination_invalid", "path parameter"},
		{"raw backslash", `https://h.example/v1/cards/a\b`, "destination_invalid", `"\"`},
		{"raw space", "https://h.example/v1/cards/a b", "destination_invalid", "a space"},
		{"tab", "https://h.example/v1/cards/a\tb", "destination_invalid", "control character"},
		{"DEL", "https://h.example/v1/cards/a\x7fb", "destination_invalid", "control character"},
		{"non-ASCII path", "https://h.example/v1/cards/caf\u00e9", "destination_invalid", "non-ASCII"},
		{"non-ASCII query", "https://h.example/v1/charges?n=\u00e9", "destination_invalid", "non-ASCII"},
		{"escaped CR in the query", "https://h.example/v1/charges?n=a%0D%0Ab", "destination_invalid", "%0D"},
		{"quote in the query", `https://h.example/v1/charges?n="x"`, "destination_invalid", "a double quote"},
		{"fragment", "https://h.example/v1/charges#x", "destination_invalid", "fragment"},
		{"credentials", "https://u:p@h.example/v1/charges", "destination_invalid", "credentials"},
		{"http", "http://h.example/v1/charges", "destination_not_allowed", "https only"},
		{"relative", "/v1/charges", "destination_invalid", "absolute"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, e := destination([]string{tt.raw})
			require.NotNil(t, e)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, HeaderDestination, e.Field)
			assert.Contains(t, e.Message, tt.msg)
		})
	}
	_, _, e := destination(nil)
	require.NotNil(t, e)
	assert.Equal(t, "field_required", e.Code)
	_, _, e = destination([]string{"https://a.example/", "https://b.example/"})
	require.NotNil(t, e)
	assert.Equal(t, "destination_invalid", e.Code)
}

// FuzzDestination: an accepted destination's path is plain: no escape,
// no control or non-ASCII character, no dot or empty segment, no path
// parameter, and it is what the upstream request will carry.
func FuzzDestination(f *testing.F) {
	f.Add("https://h.example/v1/cards/%2E%2E/x?a=%20")
	f.Add("https://h.example/v1/%63harges")
	f.Fuzz(func(t *testing.T, raw string) {
		u, _, e := destination([]string{raw})
		if e != nil {
			return
		}
		p := u.Path
		for _, bad := range []string{"%", ";", "\\", "//", "/./", "/../"} {
			require.NotContains(t, p, bad, "accepted path %q holds %q", p, bad)
		}
		require.False(t, strings.HasSuffix(p, "/."), "accepted path %q", p)
		require.False(t, strings.HasSuffix(p, "/.."), "accepted path %q", p)
		require.True(t, strings.HasPrefix(p, "/"), "accepted path %q", p)
		for _, c := range []byte(p + u.RawQuery) {
			require.True(t, c >= 0x20 && c < 0x7f, "accepted %q", p+"?"+u.RawQuery)
		}
		require.Equal(t, p, u.EscapedPath(), "what the upstream would get")
	})
}
