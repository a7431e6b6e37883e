package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// Place says which service serves the REST paths under a prefix, and where:
// a request for such a path on another service's address is told where to
// go instead of a bare "no such endpoint".
type Place struct {
	// Prefix is a path prefix, e.g. "/v1/payments".
	Prefix string
	// What names the paths and their service, e.g. "payments are served by
	// the gateway".
	What string
	// URL is the service's REST base URL, e.g. "http://127.0.0.1:8083".
	URL string
}

var directory atomic.Pointer[[]Place]

// SetDirectory sets the process's directory of REST addresses. obol dev,
// which runs every service in one process on its own port, sets it; the
// daemons in production do not (their addresses behind a load balancer are
// not theirs to name).
func SetDirectory(ps []Place) { directory.Store(&ps) }

// wrongAddress names the right address for a path this server does not
// serve, or "".
func wrongAddress(r *http.Request) string {
	ps := directory.Load()
	if ps == nil {
		return ""
	}
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	for _, p := range *ps {
		if r.URL.Path != p.Prefix && !strings.HasPrefix(r.URL.Path, strings.TrimSuffix(p.Prefix, "/")+"/") {
			continue
		}
		if u, err := url.Parse(p.URL); err == nil && u.Host == local {
			return "" // it is this server's own path: a plain 404
		}
		return p.What + " at " + p.URL
	}
	return ""
}
