// Package authlimit limits failed API-key authentications per client address
// and per key prefix, so that keys cannot be guessed at line rate. Failures
// are counted in fixed windows in a Counter: Redis in production (shared by
// every replica), in-process in `obol dev`. Successful requests only read the
// counters; they never wait for a write, and they never fail because the
// shared counter is down (then the replica's own counters are used: see
// Limiter.Allow; after a shared-counter error the replica uses its own
// counters for a few seconds before trying Redis again). PAN-free: it sees client addresses and key prefixes (the
// non-secret first 12 characters of a key), never a key or a request body.
package authlimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/internal/apierr"
)

// Defaults: 20 failed attempts per client address and 100 per key prefix in
// 5 minutes.
const (
	DefaultPerAddress = 20
	DefaultPerPrefix  = 100
	DefaultWindow     = 5 * time.Minute
)

// CodeRateLimited is the error code of a refused attempt.
const CodeRateLimited = "rate_limited"

// Counter counts failures per key in fixed windows. A window starts with the
// first failure of a key and lasts window; the count restarts after it.
type Counter interface {
	// Get returns the failures counted for key in its running window and how
	// long the window still runs (0, 0 when none runs).
	Get(ctx context.Context, key string) (n int64, ttl time.Duration, err error)
	// Add counts one failure for key, starting a window of length window when
	// none runs, and returns the new count and the window's remaining time.
	Add(ctx context.Context, key string, window time.Duration) (n int64, ttl time.Duration, err error)
}

// Config configures a Limiter. Zero values take the defaults.
type Config struct {
	// Counter is the shared store (nil: in-process only).
	Counter    Counter
	PerAddress int64
	PerPrefix  int64
	Window     time.Duration
	// Name labels the metrics (obol_<name>_auth_...).
	Name   string
	Logger *slog.Logger
	// Now is the clock of the in-process fallback (tests).
	Now func() time.Time
	// StoreTimeout bounds each shared-counter call (default 200ms);
	// after an error the shared counter is skipped for StoreBackoff
	// (default 5s), so an outage costs requests no time.
	StoreTimeout time.Duration
	StoreBackoff time.Duration
}

// Limiter decides whether an authentication attempt may be evaluated.
type Limiter struct {
	cfg     Config
	shared  Counter
	local   *Memory
	limited *prometheus.CounterVec
	failed  *prometheus.CounterVec
	errs    prometheus.Counter
	lastLog atomic.Int64
	// downUntil (unix nanoseconds): the shared counter is skipped until then.
	downUntil atomic.Int64
}

// New returns a limiter.
func New(cfg Config) *Limiter {
	if cfg.PerAddress <= 0 {
		cfg.PerAddress = DefaultPerAddress
	}
	if cfg.PerPrefix <= 0 {
		cfg.PerPrefix = DefaultPerPrefix
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "service"
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 200 * time.Millisecond
	}
	if cfg.StoreBackoff <= 0 {
		cfg.StoreBackoff = 5 * time.Second
	}
	l := &Limiter{cfg: cfg, shared: cfg.Counter, local: NewMemory(cfg.Now)}
	l.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_" + cfg.Name + "_auth_rate_limited_total", Help: "Authentication attempts refused because of earlier failures, by transport and scope (address or key_prefix)."}, []string{"transport", "scope"})
	l.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_" + cfg.Name + "_auth_failures_total", Help: "Failed authentications counted by the limiter, by transport."}, []string{"transport"})
	l.errs = prometheus.NewCounter(prometheus.CounterOpts{Name: "obol_" + cfg.Name + "_auth_limit_store_errors_total", Help: "Shared failure-counter errors (the replica's own counters were used instead)."})
	for _, tr := range []string{"http", "grpc"} {
		l.failed.WithLabelValues(tr)
		for _, sc := range []string{"address", "key_prefix"} {
			l.limited.WithLabelValues(tr, sc)
		}
	}
	return l
}

// Collectors are the limiter's metrics.
func (l *Limiter) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.limited, l.failed, l.errs}
}

// Limited is the error of a refused attempt; RetryAfter says when to retry.
type Limited struct {
	Public     *apierr.Error
	RetryAfter time.Duration
}

func (e *Limited) Error() string { return e.Public.Error() }

// RetryAfterSeconds is the Retry-After value (whole seconds, at least 1).
func (e *Limited) RetryAfterSeconds() string {
	return strconv.FormatInt(int64(math.Max(1, math.Ceil(e.RetryAfter.Seconds()))), 10)
}

// ErrRateLimited matches every refusal with errors.Is.
var ErrRateLimited = apierr.New(apierr.KindRateLimited, CodeRateLimited, "", "too many failed authentication attempts; retry later")

func keys(addr, prefix string) []string {
	// One key per counter, each its own hash tag: every command touches one
	// key, so the form suits Redis Cluster.
	ks := []string{"{a:" + addr + "}"}
	if prefix != "" {
		ks = append(ks, "{p:"+prefix+"}")
	}
	return ks
}

// Allow returns nil when an attempt from addr may be evaluated, or a
// *Limited error when that client address failed too often. When the
// shared counter fails, the replica's own counters decide: successful
// requests never depend on Redis, and failed ones stay limited (per
// replica) during an outage.
//
// The key prefix is not checked here: a valid secret key is never refused
// because others failed with its (short, public) prefix, or anyone could
// lock a merchant out for the price of a few hundred bad requests. A prefix
// over its limit turns only failed attempts into refusals (PrefixLimited,
// Refused): the attack is visible in the metrics and the attacker gets 429s,
// while the merchant's own key keeps working. Guessing a secret key (at
// least 128 random bits) is not what the prefix limit stops; the address
// limit slows credential stuffing from any one client.
func (l *Limiter) Allow(ctx context.Context, transport, addr, prefix string) error {
	if n, ttl := l.get(ctx, "{a:"+addr+"}"); n >= l.cfg.PerAddress {
		l.limited.WithLabelValues(transport, "address").Inc()
		return &Limited{Public: ErrRateLimited, RetryAfter: ttl}
	}
	return nil
}

// PrefixLimited returns the refusal for a failed attempt with a key of
// this prefix when the prefix failed too often (nil otherwise, and for ""):
// the caller answers a failed attempt with it instead of the
// authentication error, after Refused counts it.
func (l *Limiter) PrefixLimited(ctx context.Context, prefix string) *Limited {
	if prefix == "" {
		return nil
	}
	if n, ttl := l.get(ctx, "{p:"+prefix+"}"); n >= l.cfg.PerPrefix {
		return &Limited{Public: ErrRateLimited, RetryAfter: ttl}
	}
	return nil
}

// Refused counts a failed attempt answered with a prefix refusal.
func (l *Limiter) Refused(transport string) {
	l.limited.WithLabelValues(transport, "key_prefix").Inc()
}

// Failed counts a failed authentication from addr with a key of this prefix.
func (l *Limiter) Failed(ctx context.Context, transport, addr, prefix string) {
	l.failed.WithLabelValues(transport).Inc()
	for _, k := range keys(addr, prefix) {
		if l.sharedUp() {
			cctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
			_, _, err := l.shared.Add(cctx, k, l.cfg.Window)
			cancel()
			if err == nil {
				continue
			}
			l.storeError(err)
		}
		_, _, _ = l.local.Add(ctx, k, l.cfg.Window)
	}
}

func (l *Limiter) sharedUp() bool {
	return l.shared != nil && time.Now().UnixNano() >= l.downUntil.Load()
}

// get reads the shared count, and the local one (failures counted locally
// during an outage stay effective after it); a shared-counter error leaves
// the local count.
func (l *Limiter) get(ctx context.Context, k string) (int64, time.Duration) {
	ln, lttl, _ := l.local.Get(ctx, k)
	if !l.sharedUp() {
		return ln, lttl
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
	n, ttl, err := l.shared.Get(cctx, k)
	cancel()
	if err != nil {
		l.storeError(err)
		return ln, lttl
	}
	if ln > n {
		return ln, lttl
	}
	return n, ttl
}

func (l *Limiter) storeError(err error) {
	l.errs.Inc()
	l.downUntil.Store(time.Now().Add(l.cfg.StoreBackoff).UnixNano())
	now := time.Now().Unix()
	if last := l.lastLog.Load(); now-last >= 10 && l.lastLog.CompareAndSwap(last, now) {
		l.cfg.Logger.Warn("auth failure counter unavailable; this replica counts failed attempts on its own", "err", err)
	}
}

// ClientAddress returns the address a request is limited by: the peer, or,
// when the peer is a trusted proxy, the right-most X-Forwarded-For entry
// that is not a trusted proxy. IPv6 addresses are grouped by /64 (one
// client usually holds a whole /64).
func ClientAddress(peer string, xff []string, trusted []netip.Prefix) string {
	ip, err := netip.ParseAddrPort(peer)
	var a netip.Addr
	if err == nil {
		a = ip.Addr()
	} else if a, err = netip.ParseAddr(peer); err != nil {
		return "unknown"
	}
	a = a.Unmap()
	if isTrusted(a, trusted) {
		var hops []string
		for _, h := range xff {
			hops = append(hops, strings.Split(h, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: trust nothing left of it
			}
			a = h.Unmap()
			if !isTrusted(a, trusted) {
				break
			}
		}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses (the
// trusted proxies setting).
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

var _ error = (*Limited)(nil)

// Unwrap lets errors.Is(err, ErrRateLimited) and apierr.From see the public error.
func (e *Limited) Unwrap() error { return e.Public }

// AsLimited returns the *Limited in err's chain.
func AsLimited(err error) (*Limited, bool) {
	var l *Limited
	ok := errors.As(err, &l)
	return l, ok
}
