package serve

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/idemkey"
)

// ErrPlaintext is returned when a listener would serve plaintext beyond
// loopback without a declared TLS-terminating proxy.
var ErrPlaintext = errors.New("plaintext listener beyond loopback")

// Listener names the settings of one listener in error messages.
type Listener struct {
	Kind    string // "REST" or "gRPC"
	TLSVars string // how to configure TLS, e.g. "OBOL_VAULTD_HTTP_TLS_CERT and OBOL_VAULTD_HTTP_TLS_KEY"
	Proxy   string // the declaration variable, e.g. "OBOL_VAULTD_HTTP_BEHIND_TLS_PROXY"
}

// vars is the prefix of a daemon's own variables, e.g. "OBOL_GATEWAYD_"
// ("OBOL_<DAEMON>_" when unknown).
func vars(prefix string) string {
	if prefix == "" {
		return "OBOL_<DAEMON>_"
	}
	return prefix
}

// RESTListener describes a daemon's REST listener; prefix is the prefix of
// the daemon's own variables (Edge.Vars, e.g. "OBOL_GATEWAYD_").
func RESTListener(prefix string) Listener {
	p := vars(prefix)
	return Listener{Kind: "REST", TLSVars: p + "HTTP_TLS_CERT and " + p + "HTTP_TLS_KEY (or " + p + "HTTP_TLS=true to reuse " + p + "TLS_CERT/" + p + "TLS_KEY)", Proxy: p + "HTTP_BEHIND_TLS_PROXY"}
}

// GRPCListener describes a daemon's gRPC listener (see RESTListener).
func GRPCListener(prefix string) Listener {
	p := vars(prefix)
	return Listener{Kind: "gRPC", TLSVars: p + "TLS_CERT and " + p + "TLS_KEY", Proxy: p + "GRPC_BEHIND_TLS_PROXY"}
}

// IsLoopback reports whether a listen address ("host:port") only accepts
// connections from this machine: an IP literal in 127.0.0.0/8 or ::1, or
// "localhost". An empty host or 0.0.0.0 listens everywhere; any other name
// is taken as non-loopback (resolving it at start would prove nothing about
// later).
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckPlaintext refuses a plaintext listener beyond loopback unless a
// TLS-terminating proxy is declared in front of it, and refuses a proxy
// declaration next to a TLS certificate (one of the two settings would be
// silently ignored).
func CheckPlaintext(l Listener, addr string, hasTLS, behindProxy bool) error {
	switch {
	case hasTLS && behindProxy:
		return fmt.Errorf("%s listener %s: %s=true and a TLS certificate are both set; choose one", l.Kind, addr, l.Proxy)
	case hasTLS || behindProxy || IsLoopback(addr):
		return nil
	}
	return fmt.Errorf("%w: the %s listener %s would carry card data and API keys in clear; set %s, or declare a TLS-terminating proxy in front with %s=true", ErrPlaintext, l.Kind, addr, l.TLSVars, l.Proxy)
}

// checkTLS applies CheckPlaintext to the bound listeners and warns loudly
// about a declared proxy.
func (s *Server) checkTLS() error {
	for _, c := range []struct {
		l      Listener
		addr   string
		tls    bool
		behind bool
	}{
		{RESTListener(s.opts.Edge.Vars), s.lnH.Addr().String(), s.opts.Edge.HTTPTLS != nil, s.opts.Edge.HTTPBehindTLSProxy},
		{GRPCListener(s.opts.Edge.Vars), s.lnG.Addr().String(), s.opts.GRPCTLS != nil, s.opts.Edge.GRPCBehindTLSProxy},
	} {
		if err := CheckPlaintext(c.l, c.addr, c.tls, c.behind); err != nil {
			return err
		}
		if c.behind {
			s.log.Warn("PLAINTEXT "+c.l.Kind+" listener: "+c.l.Proxy+"=true declares that a TLS-terminating proxy sits in front; traffic between it and this process is in clear",
				"service", s.opts.Name, "addr", c.addr)
		}
	}
	return nil
}

// keyPrefix is the non-secret prefix of the secret API key in an
// Authorization value ("" when there is no well-formed secret key).
// Publishable keys are public (they sit in checkout pages), so guessing one
// is pointless, and a limit on their prefix would let anyone switch off a
// merchant's checkout: they are limited per client address only.
func keyPrefix(authorization string) string {
	if authorization == "" {
		return ""
	}
	key, err := apikey.FromBearer(authorization)
	if err != nil || apikey.KindOf(key) != apikey.Secret {
		return ""
	}
	return apikey.Prefix(key)
}

// limitHTTP refuses attempts from an address or key prefix that failed too
// often (429, Retry-After, code rate_limited) and counts 401 answers. The
// address is checked before the request is served; the key prefix only
// decides how a failed attempt is answered, so it is read only when the
// answer is a 401: a successful request costs one read of the shared
// counter, not two.
func (s *Server) limitHTTP(next http.Handler) http.Handler {
	lim := s.limiter
	if lim == nil || !s.opts.LimitAuthREST {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := authlimit.ClientAddress(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.opts.Edge.TrustedProxies)
		prefix := keyPrefix(r.Header.Get("Authorization"))
		if err := lim.Allow(r.Context(), "http", addr, prefix); err != nil {
			writeLimited(w, err)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		fw := &failWriter{statusWriter: sw}
		next.ServeHTTP(fw, r)
		if !fw.unauthorized {
			return
		}
		// Read before this failure is counted, as Allow reads the address.
		pl := lim.PrefixLimited(r.Context(), prefix)
		lim.Failed(r.Context(), "http", addr, prefix)
		if pl != nil {
			// The key's prefix failed too often: a valid key is still
			// served, a failed attempt is answered 429 instead of 401.
			lim.Refused("http")
			writeLimited(sw, pl)
			return
		}
		sw.WriteHeader(http.StatusUnauthorized)
		_, _ = sw.Write(fw.held)
	})
}

// failWriter holds back a 401 answer (its body; the header map is shared)
// so that limitHTTP can answer the attempt with a prefix refusal instead,
// or send it as it was; every other answer passes through.
type failWriter struct {
	*statusWriter
	unauthorized bool
	wrote        bool
	held         []byte
}

func (w *failWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code == http.StatusUnauthorized {
		w.unauthorized = true
		return
	}
	w.statusWriter.WriteHeader(code)
}

func (w *failWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.unauthorized {
		if len(w.held)+len(b) <= maxHeldBody {
			w.held = append(w.held, b...)
		}
		return len(b), nil
	}
	return w.statusWriter.Write(b)
}

// maxHeldBody bounds the 401 body failWriter holds (an error answer is a
// few hundred bytes).
const maxHeldBody = 64 << 10

func writeLimited(w http.ResponseWriter, err error) {
	if l, ok := authlimit.AsLimited(err); ok {
		w.Header().Set("Retry-After", l.RetryAfterSeconds())
	}
	httpapi.WriteError(w, apierr.From(err))
}

// limitUnary is limitHTTP for gRPC (ResourceExhausted with a retry-after
// header; Unauthenticated counts a failure).
func (s *Server) limitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	lim := s.limiter
	if lim == nil || !s.opts.LimitAuthGRPC {
		return h(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	peerAddr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}
	addr := authlimit.ClientAddress(peerAddr, md.Get("x-forwarded-for"), s.opts.Edge.TrustedProxies)
	var prefix string
	if v := md.Get("authorization"); len(v) > 0 {
		prefix = keyPrefix(v[0])
	}
	refuse := func(l *authlimit.Limited) error {
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", l.RetryAfterSeconds()))
		return apierr.From(l).GRPCStatus().Err()
	}
	if err := lim.Allow(ctx, "grpc", addr, prefix); err != nil {
		if l, ok := authlimit.AsLimited(err); ok {
			return nil, refuse(l)
		}
		return nil, apierr.From(err).GRPCStatus().Err()
	}
	resp, err := h(ctx, req)
	if err != nil && status.Code(err) == codes.Unauthenticated {
		// The prefix is read only for a failed attempt (see limitHTTP).
		pl := lim.PrefixLimited(ctx, prefix)
		lim.Failed(ctx, "grpc", addr, prefix)
		if pl != nil {
			// A valid key of this prefix is still served (see Allow).
			lim.Refused("grpc")
			return nil, refuse(pl)
		}
	}
	return resp, err
}

// Scrub masks a log line's card-number-shaped digit runs
// (cardtext.Mask). The net/http server's own error log can quote what a
// client sent (a TLS client's offered protocol names, for example); every
// http.Server in Obol logs through ErrorLog, so a card number a client
// sends never reaches a log line.
func Scrub(s string) string { return cardtext.Mask(s) }

// errorLog adapts the net/http server's error log to slog, scrubbed.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Write(p []byte) (int, error) {
	e.log.Warn("http server", "detail", Scrub(strings.TrimSpace(string(p))))
	return len(p), nil
}

// ErrorLog is the ErrorLog every http.Server in Obol sets: net/http's
// messages go to l as warnings, through Scrub.
func ErrorLog(l *slog.Logger) *log.Logger { return log.New(errorLog{l}, "", 0) }

// checkIdempotencyKey refuses a malformed Idempotency-Key on every gRPC
// call of every service, with the same typed 400 (InvalidArgument) as the
// REST edge (internal/httpapi.CheckHeaders): a key that is not printable
// ASCII, too long, sent twice or shaped like a card number is never
// ignored, even by a service whose writes are idempotent by the ids in
// their bodies (riskd, ledgerd).
func checkIdempotencyKey(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if _, err := idemkey.FromContext(ctx); err != nil {
		return nil, apierr.From(err).GRPCStatus().Err()
	}
	return h(ctx, req)
}
