package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestParse(t *testing.T) {
	o := redisconn.Options{Var: "OBOL_REDIS_URL", ReadTimeout: time.Second, PoolSize: 8}
	tests := []struct {
		name    string
		url     string
		cluster bool
		addrs   []string
		check   func(t *testing.T, c *redisconn.Config)
		err     string
	}{
		{name: "single node", url: "redis://127.0.0.1:6379/2", addrs: []string{"127.0.0.1:6379"}, check: func(t *testing.T, c *redisconn.Config) {
			assert.Equal(t, 2, c.Single.DB)
			assert.Equal(t, time.Second, c.Single.ReadTimeout, "caller default")
			assert.Equal(t, time.Second, c.Single.WriteTimeout, "follows ReadTimeout")
			assert.Equal(t, 2*time.Second, c.Single.DialTimeout, "package default")
			assert.Equal(t, 8, c.Single.PoolSize)
			assert.Equal(t, 1, c.Single.MaxRetries)
		}},
		{name: "single node, URL parameter wins", url: "redis://h:1?read_timeout=300ms&pool_size=3", addrs: []string{"h:1"}, check: func(t *testing.T, c *redisconn.Config) {
			assert.Equal(t, 300*time.Millisecond, c.Single.ReadTimeout)
			assert.Equal(t, 3, c.Single.PoolSize)
		}},
		{name: "single node TLS", url: "rediss://u:pw@h:1/0", addrs: []string{"h:1"}, check: func(t *testing.T, c *redisconn.Config) {
			require.NotNil(t, c.Single.TLSConfig)
			assert.Equal(t, "pw", c.Single.Password)
		}},
		{name: "cluster", url: "redis+cluster://:pw@a:1?addr=b:2&addr=c:3", cluster: true, addrs: []string{"a:1", "b:2", "c:3"}, check: func(t *testing.T, c *redisconn.Config) {
			assert.Equal(t, "pw", c.Cluster.Password)
			assert.Nil(t, c.Cluster.TLSConfig)
			assert.Equal(t, 3, c.Cluster.MaxRedirects)
			assert.Equal(t, time.Second, c.Cluster.ReadTimeout)
			assert.Equal(t, 8, c.Cluster.PoolSize)
			assert.False(t, c.Cluster.ReadOnly || c.Cluster.RouteByLatency || c.Cluster.RouteRandomly, "replica reads")
		}},
		{name: "cluster TLS, database 0", url: "rediss+cluster://a:1/0?max_redirects=5", cluster: true, addrs: []string{"a:1"}, check: func(t *testing.T, c *redisconn.Config) {
			require.NotNil(t, c.Cluster.TLSConfig)
			assert.Equal(t, "a", c.Cluster.TLSConfig.ServerName)
			assert.Equal(t, 5, c.Cluster.MaxRedirects)
		}},
		{name: "scheme case-insensitive", url: "REDIS+CLUSTER://a:1", cluster: true, addrs: []string{"a:1"}},
		{name: "empty", url: "", err: "OBOL_REDIS_URL: empty"},
		{name: "unknown scheme", url: "http://a:1", err: `OBOL_REDIS_URL: scheme "http"`},
		{name: "no scheme", url: "a:1", err: "OBOL_REDIS_URL"},
		{name: "cluster database", url: "redis+cluster://a:1/3", err: "only database 0"},
		{name: "cluster replica reads", url: "redis+cluster://a:1?route_by_latency=true", err: "route_by_latency is not supported"},
		{name: "cluster read only", url: "redis+cluster://a:1?read_only=true", err: "read_only is not supported"},
		{name: "cluster bad addr", url: "redis+cluster://a:1?addr=nope", err: "unable to parse addr"},
		{name: "cluster unknown option", url: "redis+cluster://a:1?bogus=1", err: "unexpected option: bogus"},
		{name: "single unknown option", url: "redis://a:1?bogus=1", err: "unexpected option: bogus"},
		{name: "single bad database", url: "redis://a:1/x", err: "invalid database"},
		{name: "bad port, password not printed", url: "redis://u:s3cretpw@a:port/0", err: "OBOL_REDIS_URL: not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redisconn.Parse(tt.url, o)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.NotContains(t, err.Error(), "s3cretpw")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.cluster, c.Cluster != nil, "cluster")
			assert.Equal(t, tt.cluster, redisconn.IsClusterURL(tt.url), "IsClusterURL")
			assert.Equal(t, tt.addrs, c.Addrs())
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestHashTag(t *testing.T) {
	tests := []struct{ name, key, tag string }{
		{"none", "obol:risk:v:card:x", ""},
		{"tag", "obol:risk:{r}:v:card:x", "r"},
		{"first brace wins", "a{b}{c}", "b"},
		{"empty tag hashes the whole key", "a{}{c}", ""},
		{"unclosed", "a{b", ""},
		{"closing before opening", "a}b{c}", "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.tag, redisconn.HashTag(tt.key)) })
	}
}

func TestRedact(t *testing.T) {
	assert.NotContains(t, redisconn.Redact("redis+cluster://u:s3cret@a:1?addr=b:2"), "s3cret")
	assert.Equal(t, "(unparsable redis URL)", redisconn.Redact("redis://u:s3cret@a:port"))
}

func TestOpenUnreachable(t *testing.T) {
	port := testenv.FreePort(t)
	for _, scheme := range []string{"redis", "redis+cluster"} {
		t.Run(scheme, func(t *testing.T) {
			_, err := redisconn.Open(context.Background(), scheme+"://:s3cret@127.0.0.1:"+itoa(port), redisconn.Options{Var: "OBOL_X", PingTimeout: 2 * time.Second})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "OBOL_X: redis at 127.0.0.1:")
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// FuzzParse: no URL panics, and no error prints the password.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"redis://a:1/0", "rediss+cluster://u:p@a:1?addr=b:2", "redis+cluster://a:1/9", "unix:///tmp/r.sock", "%zz", "redis://u:p@[::1", "redis+cluster://a:1?addr=&addr=x"} {
		f.Add(s, "pw")
	}
	f.Fuzz(func(t *testing.T, raw, pw string) {
		if len(pw) < 6 || strings.ContainsAny(pw, "@/:?#%[]") {
			pw = "Zq8sekretZq8"
		}
		withPW := raw
		if i := strings.Index(raw, "://"); i >= 0 {
			withPW = raw[:i+3] + "u:" + pw + "@" + raw[i+3:]
		}
		for _, u := range []string{raw, withPW} {
			c, err := redisconn.Parse(u, redisconn.Options{Var: "V"})
			if err != nil {
				if !strings.Contains(raw, pw) {
					require.NotContains(t, err.Error(), pw)
				}
				require.True(t, strings.HasPrefix(err.Error(), "V: "), "error names the variable: %v", err)
				continue
			}
			require.True(t, (c.Single == nil) != (c.Cluster == nil))
			require.NotEmpty(t, c.Addrs())
		}
	})
}

type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

func TestTopologyError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"key missing", redis.Nil, false},
		{"caller gave up", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{"cluster down", redisErr("CLUSTERDOWN The cluster is down"), true},
		{"moved", redisErr("MOVED 3999 127.0.0.1:6381"), true},
		{"replica answered a write", redisErr("READONLY You can't write against a read only replica."), true},
		{"command error", redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"script error", redisErr("ERR user_script:1: boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, redisconn.TopologyError(tt.err)) })
	}
}

// TestNoMaintNotifications: every client Obol makes has go-redis's
// maintenance notifications off (their automatic mode races in v9.23.0),
// single node and cluster alike; an explicit setting is kept.
func TestNoMaintNotifications(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"single node", "redis://127.0.0.1:6379/0"},
		{"cluster", "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redisconn.Parse(tc.url, redisconn.Options{})
			require.NoError(t, err)
			var mode maintnotifications.Mode
			if c.Cluster != nil {
				require.NotNil(t, c.Cluster.MaintNotificationsConfig)
				mode = c.Cluster.MaintNotificationsConfig.Mode
			} else {
				require.NotNil(t, c.Single.MaintNotificationsConfig)
				mode = c.Single.MaintNotificationsConfig.Mode
			}
			assert.Equal(t, maintnotifications.ModeDisabled, mode)
		})
	}
	t.Run("NewClusterClient fills it in", func(t *testing.T) {
		opt := &redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}
		redisconn.NewClusterClient(opt).Close()
		require.NotNil(t, opt.MaintNotificationsConfig)
		assert.Equal(t, maintnotifications.ModeDisabled, opt.MaintNotificationsConfig.Mode)
	})
	t.Run("an explicit setting is kept", func(t *testing.T) {
		opt := &redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeAuto}}
		redisconn.NewClusterClient(opt).Close()
		assert.Equal(t, maintnotifications.ModeAuto, opt.MaintNotificationsConfig.Mode)
	})
}
