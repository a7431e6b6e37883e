package authlimit_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/testenv"
)

func TestLimiter(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		failures  func(l *authlimit.Limiter)
		addr, pfx string
		wantScope string // "" when allowed
	}{
		{"no failures", func(*authlimit.Limiter) {}, "192.0.2.1", "sk_test_aaaa", ""},
		{"below the address limit", func(l *authlimit.Limiter) {
			for range 2 {
				l.Failed(ctx, "http", "192.0.2.1", "")
			}
		}, "192.0.2.1", "", ""},
		{"address limit reached", func(l *authlimit.Limiter) {
			for range 3 {
				l.Failed(ctx, "http", "192.0.2.1", "")
			}
		}, "192.0.2.1", "sk_test_aaaa", "address"},
		{"other address unaffected", func(l *authlimit.Limiter) {
			for range 3 {
				l.Failed(ctx, "http", "192.0.2.1", "")
			}
		}, "192.0.2.2", "", ""},
		{"prefix limit reached from many addresses", func(l *authlimit.Limiter) {
			for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
				l.Failed(ctx, "grpc", a, "sk_test_bbbb")
			}
		}, "192.0.2.9", "sk_test_bbbb", "key_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			l := authlimit.New(authlimit.Config{PerAddress: 3, PerPrefix: 5, Window: time.Minute, Now: clk.Now, Name: "t"})
			tt.failures(l)
			err := l.Allow(ctx, "http", tt.addr, tt.pfx)
			if tt.wantScope == "" {
				require.NoError(t, err)
				require.Nil(t, l.PrefixLimited(ctx, tt.pfx))
				return
			}
			if tt.wantScope == "key_prefix" {
				// A prefix over its limit never refuses up front (a valid
				// key is still served); it refuses failed attempts.
				require.NoError(t, err)
				pl := l.PrefixLimited(ctx, tt.pfx)
				require.NotNil(t, pl)
				l.Refused("http")
				err = pl
			}
			require.ErrorIs(t, err, authlimit.ErrRateLimited)
			lim, ok := authlimit.AsLimited(err)
			require.True(t, ok)
			assert.Equal(t, "60", lim.RetryAfterSeconds())
			e := apierr.From(err)
			assert.Equal(t, authlimit.CodeRateLimited, e.Code)
			assert.Equal(t, 429, e.HTTPStatus())
			assert.Equal(t, 1.0, metric(t, l, "obol_t_auth_rate_limited_total", map[string]string{"transport": "http", "scope": tt.wantScope}))
			clk.Advance(time.Minute)
			assert.NoError(t, l.Allow(ctx, "http", tt.addr, tt.pfx), "the window ended")
			assert.Nil(t, l.PrefixLimited(ctx, tt.pfx), "the window ended")
		})
	}
}

// metric reads one series of the limiter's metrics.
func metric(t *testing.T, l *authlimit.Limiter, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.Collectors()...)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	require.FailNow(t, "no series", "%s%v", name, labels)
	return 0
}

// TestLimiterRedisOutage: with the shared counter down, successful
// requests are still allowed (no new outage mode) and failed attempts are
// counted by the replica itself, so they stay limited; the store errors are
// counted in metrics.
func TestLimiterRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	l := authlimit.New(authlimit.Config{Counter: authlimit.NewRedis(rdb, "obol:test:outage:"), PerAddress: 3, Window: time.Minute, Name: "t"})
	l.Failed(ctx, "http", "192.0.2.1", "")
	n, err := rdb.Get(ctx, "obol:test:outage:{a:192.0.2.1}").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "failures go to Redis while it is up")
	r.Stop(t)
	require.NoError(t, l.Allow(ctx, "http", "192.0.2.1", ""), "an attempt is allowed with Redis down")
	for range 3 {
		l.Failed(ctx, "http", "192.0.2.1", "")
	}
	err = l.Allow(ctx, "http", "192.0.2.1", "")
	require.ErrorIs(t, err, authlimit.ErrRateLimited, "failures counted locally still limit")
	require.NoError(t, l.Allow(ctx, "http", "192.0.2.2", ""))
	assert.Positive(t, metric(t, l, "obol_t_auth_limit_store_errors_total", nil))
}

func TestClientAddress(t *testing.T) {
	trusted, err := authlimit.ParsePrefixes("10.0.0.0/8, 192.0.2.10")
	require.NoError(t, err)
	tests := []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"peer only", "198.51.100.1:5555", nil, "198.51.100.1"},
		{"untrusted peer's XFF ignored", "198.51.100.1:5555", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted proxy: right-most client", "10.1.2.3:443", []string{"203.0.113.9, 198.51.100.20"}, "198.51.100.20"},
		{"chain of trusted proxies skipped", "10.1.2.3:443", []string{"198.51.100.20, 192.0.2.10", "10.9.9.9"}, "198.51.100.20"},
		{"spoofed left-most entry not believed", "10.1.2.3:443", []string{"1.1.1.1, 198.51.100.20"}, "198.51.100.20"},
		{"malformed hop stops the walk", "10.1.2.3:443", []string{"198.51.100.20, not-an-ip"}, "10.1.2.3"},
		{"trusted proxy without XFF", "10.1.2.3:443", nil, "10.1.2.3"},
		{"IPv6 grouped by /64", "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "[::ffff:198.51.100.1]:443", nil, "198.51.100.1"},
		{"no port", "198.51.100.1", nil, "198.51.100.1"},
		{"garbage peer", "4242424242424242", nil, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, authlimit.ClientAddress(tt.peer, tt.xff, trusted))
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		name, in string
		want     []netip.Prefix
		wantErr  string
	}{
		{"empty", "", nil, ""},
		{"cidr and address", "10.0.0.0/8,192.0.2.1", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}, ""},
		{"bad entry named", "10.0.0.0/8,proxy.example", nil, `"proxy.example" is not a CIDR or an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := authlimit.ParsePrefixes(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzClientAddress: whatever the peer and X-Forwarded-For say, the
// address is a parseable IP or prefix (or "unknown") and never echoes
// other input: the limiter's Redis keys hold nothing request-shaped.
func FuzzClientAddress(f *testing.F) {
	f.Add("10.1.2.3:443", "198.51.100.20, 192.0.2.10")
	f.Add("[2001:db8::1]:1", "4242424242424242")
	f.Add("garbage", "")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		got := authlimit.ClientAddress(peer, []string{xff}, trusted)
		if got == "unknown" {
			return
		}
		_, addrErr := netip.ParseAddr(got)
		_, prefixErr := netip.ParsePrefix(got)
		ok := addrErr == nil || prefixErr == nil && strings.HasSuffix(got, "/64")
		require.True(t, ok, "ClientAddress(%q, %q) = %q: not an address", peer, xff, got)
	})
}
