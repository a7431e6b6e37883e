// Package redisconn opens Redis from a URL, one way for every Obol service:
// a single node (redis:// or rediss://, as go-redis's ParseURL reads them)
// or a Redis Cluster (redis+cluster:// or rediss+cluster://, the rest as
// go-redis's ParseClusterURL reads it: the host is the first seed node, more
// come as addr= parameters). Callers get a redis.UniversalClient, so every
// Redis user works with both. Errors name the variable the URL came from and
// never print the password. PAN-free plumbing.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Cluster URL schemes.
const (
	SchemeCluster    = "redis+cluster"
	SchemeClusterTLS = "rediss+cluster"
)

// Options are a caller's defaults, applied where the URL sets nothing (a
// URL parameter such as read_timeout=500ms wins).
type Options struct {
	// Var names where the URL came from in errors (e.g. "OBOL_REDIS_URL").
	Var string
	// DialTimeout, ReadTimeout, WriteTimeout (defaults 2s, 2s, ReadTimeout).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is per node (default 64).
	PoolSize int
	// MaxRetries of a single-node client on network errors (default 1;
	// -1: none). A cluster client retries through MaxRedirects instead.
	MaxRetries int
	// MaxRedirects of a cluster client: MOVED/ASK and network-error retries
	// of one command (default 3). A command on a primary that went away
	// fails after them with the network error (the caller answers
	// unavailable) until the cluster promotes its replica.
	MaxRedirects int
	// PingTimeout bounds Open's check (default 5s).
	PingTimeout time.Duration
}

func (o Options) name() string {
	if o.Var == "" {
		return "redis url"
	}
	return o.Var
}

// Config is a parsed URL: exactly one of Single and Cluster is set.
type Config struct {
	Single  *redis.Options
	Cluster *redis.ClusterOptions
	v       string
}

// IsClusterURL reports whether raw selects a Redis Cluster by its scheme.
func IsClusterURL(raw string) bool {
	s, _, ok := strings.Cut(raw, "://")
	return ok && (strings.EqualFold(s, SchemeCluster) || strings.EqualFold(s, SchemeClusterTLS))
}

// Parse reads a URL into client options, with o's defaults where the URL
// is silent. A bad URL is an error naming o.Var.
func Parse(raw string, o Options) (*Config, error) {
	name := o.name()
	if raw == "" {
		return nil, fmt.Errorf("%s: empty: want a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error prints the whole URL, password included: only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: not a URL: %v", name, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", name, scrub(err.Error(), raw, u))
		}
		if opt.DialTimeout == 0 {
			opt.DialTimeout = def(o.DialTimeout, 2*time.Second)
		}
		if opt.ReadTimeout == 0 {
			opt.ReadTimeout = def(o.ReadTimeout, 2*time.Second)
		}
		if opt.WriteTimeout == 0 {
			opt.WriteTimeout = def(o.WriteTimeout, opt.ReadTimeout)
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = def(o.PoolSize, 64)
		}
		if opt.MaxRetries == 0 {
			opt.MaxRetries = def(o.MaxRetries, 1)
		}
		opt.MaintNotificationsConfig = NoMaintNotifications()
		return &Config{Single: opt, v: name}, nil
	case SchemeCluster, SchemeClusterTLS:
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("%s: a Redis Cluster has only database 0, the URL names database %q", name, scrub(p, raw, u))
		}
		q := u.Query()
		for _, k := range []string{"read_only", "route_by_latency", "route_randomly"} {
			if q.Has(k) {
				return nil, fmt.Errorf("%s: %s is not supported: Obol reads what it just wrote (use-once CVCs, counters), and a replica may lag, so every command goes to the slot's primary", name, k)
			}
		}
		u.Scheme = strings.TrimSuffix(scheme, "+cluster")
		u.Path = ""
		opt, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %s", name, scrub(err.Error(), raw, u))
		}
		if opt.DialTimeout == 0 {
			opt.DialTimeout = def(o.DialTimeout, 2*time.Second)
		}
		if opt.ReadTimeout == 0 {
			opt.ReadTimeout = def(o.ReadTimeout, 2*time.Second)
		}
		if opt.WriteTimeout == 0 {
			opt.WriteTimeout = def(o.WriteTimeout, opt.ReadTimeout)
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = def(o.PoolSize, 64)
		}
		if opt.MaxRedirects == 0 {
			opt.MaxRedirects = def(o.MaxRedirects, 3)
		}
		if opt.DialerRetries == 0 {
			// A primary that was killed refuses at once; do not spend
			// the command's time dialling it again and again.
			opt.DialerRetries = 1
		}
		opt.MaintNotificationsConfig = NoMaintNotifications()
		return &Config{Cluster: opt, v: name}, nil
	default:
		return nil, fmt.Errorf("%s: scheme %q: want redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://", name, u.Scheme)
	}
}

// scrub removes credentials from a go-redis parse error, which may quote
// parts of the URL: the parsed password, and whatever was typed between
// "://" and the next "@" (a password the parser read as something else).
func scrub(msg, raw string, u *url.URL) string {
	var secrets []string
	if p, ok := u.User.Password(); ok && p != "" {
		secrets = append(secrets, p)
	}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if userinfo, _, ok := strings.Cut(rest, "@"); ok && userinfo != "" {
			secrets = append(secrets, userinfo)
			if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
				secrets = append(secrets, pw)
			}
		}
	}
	for _, x := range secrets {
		msg = strings.ReplaceAll(msg, x, "xxxxx")
	}
	return msg
}

func def[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// Addrs are the nodes the URL names (for messages: no credentials).
func (c *Config) Addrs() []string {
	if c.Cluster != nil {
		return append([]string(nil), c.Cluster.Addrs...)
	}
	return []string{c.Single.Addr}
}

// NoMaintNotifications is the maintenance-notifications setting of every
// Obol Redis client: off. go-redis's default ("auto") asks each new
// connection for CLIENT MAINT_NOTIFICATIONS (Redis Enterprise's and Redis
// Cloud's handoff notices) and turns the feature off for the client when
// the server refuses it, as open-source Redis does; v9.23.0 does that
// with a data race between connections dialled at once (the race detector
// reported it in TestRedisClusterFailoverFallsBack). Off, no connection
// sends the command.
func NoMaintNotifications() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// NewClient returns a client (not yet connected). A cluster client
// reloads the slot map after any failure that may mean the topology changed
// (a primary refusing connections, CLUSTERDOWN, READONLY...), so commands
// reach a promoted replica as soon as the cluster has elected it, not at
// the next periodic reload.
func (c *Config) NewClient() redis.UniversalClient {
	if c.Cluster != nil {
		return NewClusterClient(c.Cluster)
	}
	return redis.NewClient(c.Single)
}

// NewClusterClient is redis.NewClusterClient plus the reload on failure
// (see Config.NewClient), a periodic reload every 5s when opt sets none, and
// no maintenance notifications when opt says nothing of them (see
// NoMaintNotifications).
func NewClusterClient(opt *redis.ClusterOptions) *redis.ClusterClient {
	if opt.ClusterStateReloadInterval == 0 {
		opt.ClusterStateReloadInterval = 5 * time.Second
	}
	if opt.MaintNotificationsConfig == nil {
		opt.MaintNotificationsConfig = NoMaintNotifications()
	}
	cc := redis.NewClusterClient(opt)
	cc.AddHook(reloadHook{cc})
	return cc
}

type reloadHook struct{ cc *redis.ClusterClient }

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadHook) check(ctx context.Context, err error) {
	if TopologyError(err) {
		// Asynchronous, and at most one reload per 200ms.
		h.cc.ReloadState(ctx)
	}
}

// TopologyError reports whether err may mean the cluster's topology
// changed: a network failure (not a context's end), or a Redis error about
// the cluster's state. redis.Nil and errors of the command itself are not.
func TopologyError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "MOVED", "ASK"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// Open parses raw, connects and checks the server (every primary of a
// cluster) answers; the error names o.Var and the addresses, never the
// password.
func Open(ctx context.Context, raw string, o Options) (redis.UniversalClient, error) {
	cfg, err := Parse(raw, o)
	if err != nil {
		return nil, err
	}
	rdb := cfg.NewClient()
	pctx, cancel := context.WithTimeout(ctx, def(o.PingTimeout, 5*time.Second))
	defer cancel()
	if err := Ping(pctx, rdb); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("%s: redis at %s is unreachable: %w", cfg.v, strings.Join(cfg.Addrs(), ","), err)
	}
	return rdb, nil
}

// Ping checks a single node answers, or that a cluster's every primary
// does and the cluster serves all its slots.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", c.Options().Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", c.Options().Addr)
		}
		return nil
	})
}

// PingFor pings the node serving key: a single node, or on a cluster the
// primary of key's slot.
func PingFor(ctx context.Context, rdb redis.UniversalClient, key string) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return err
	}
	if err := node.Ping(ctx).Err(); err != nil {
		cc.ReloadState(ctx)
		return err
	}
	return nil
}

// ReplicaWait bounds how long a write that must survive a failover waits
// for a replica's acknowledgement (WAIT 1 ReplicaWait).
const ReplicaWait = 500 * time.Millisecond

// ErrNotReplicated: a write was not acknowledged by the primary's replica
// within ReplicaWait although one is connected.
var ErrNotReplicated = errors.New("redis: the write was not acknowledged by a replica in time")

// Replicate makes a write survive the loss of its primary. The caller sent
// the write on conn (a connection to the key's primary) in a pipeline that
// ends with info = INFO replication; when a replica is connected, Replicate
// sends WAIT 1 on the same connection and fails with ErrNotReplicated
// unless the replica acknowledged within ReplicaWait. With none connected
// (its replica was just promoted, or is down) it returns at once: a replica
// that connects later copies the primary as it is after the write. Left
// out: a replica disconnected at the time of the write and promoted later
// with its older copy — Redis refuses to promote one whose data is older
// than cluster-replica-validity-factor (default 10) times
// cluster-node-timeout.
func Replicate(ctx context.Context, conn *redis.Conn, info *redis.StringCmd) error {
	s, err := info.Result()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	n := -1
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			if n, err = strconv.Atoi(v); err != nil {
				n = -1
			}
		}
	}
	if n == 0 {
		return nil
	}
	acked, err := conn.Do(ctx, "WAIT", 1, ReplicaWait.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	if acked < 1 {
		return ErrNotReplicated
	}
	return nil
}

// ReloadNow reloads a cluster client's slot map synchronously (after a
// failure of a command sent to a node directly).
func ReloadNow(ctx context.Context, cc *redis.ClusterClient) {
	_ = cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })
}

// IsCluster reports whether rdb is a cluster client.
func IsCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// HashTag is the part of key Redis Cluster hashes (the text between the
// first "{" and the next "}", when not empty), or "" when the whole key is
// hashed.
func HashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return key[i+1 : i+1+j]
}

// Redact returns raw with any password replaced (for logs); a string that
// does not parse comes back as "(unparsable redis URL)".
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable redis URL)"
	}
	return u.Redacted()
}
