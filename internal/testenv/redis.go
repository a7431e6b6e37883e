package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/redisconn"
)

// Redis is a Redis server for tests.
type Redis struct {
	URL  string
	addr string
	dir  string
	bin  string
	proc *process
}

var sharedRedis = sync.OnceValues(func() (*Redis, error) {
	if url := os.Getenv("OBOL_TEST_REDIS_URL"); url != "" {
		return &Redis{URL: url}, nil
	}
	dir, err := sharedDir()
	if err != nil {
		return nil, err
	}
	d := filepath.Join(dir, "redis")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	r, err := newRedis(d)
	if err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	atExit(r.proc.stop)
	return r, nil
})

// SharedRedis returns the Redis shared by this test binary:
// OBOL_TEST_REDIS_URL, or a redis-server started once without persistence.
func SharedRedis(tb TB) *Redis {
	tb.Helper()
	r, err := sharedRedis()
	if err != nil {
		tb.Fatalf("shared redis: %v", err)
	}
	return r
}

// StartRedis starts a dedicated redis-server that the test may stop and
// start again on the same port (outage tests).
func StartRedis(tb TB) *Redis {
	tb.Helper()
	r, err := newRedis(tb.TempDir())
	if err != nil {
		tb.Fatalf("%v", err)
	}
	if err := r.start(); err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { r.proc.stop() })
	return r
}

func newRedis(dir string) (*Redis, error) {
	bin, err := findBin("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: install it (apt-get install -y redis-server) or set OBOL_TEST_REDIS_URL", err)
	}
	port := freePortNoTB()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &Redis{URL: "redis://" + addr + "/0", addr: addr, dir: dir, bin: bin}, nil
}

func (r *Redis) start() error {
	_, port, _ := splitHostPort(r.addr)
	p, err := startProcess(r.bin, []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir}, nil, r.dir)
	if err != nil {
		return err
	}
	r.proc = p
	if err := WaitFor(15*time.Second, func() error {
		if !p.running() {
			return errNotRunning
		}
		return tcpOK(r.addr)
	}); err != nil {
		return fmt.Errorf("redis-server did not start: %w\n%s", err, lastLines(p.out.String(), 20))
	}
	return nil
}

// Stop stops a dedicated Redis (for real: the process exits).
func (r *Redis) Stop(tb TB) {
	tb.Helper()
	if r.proc == nil {
		tb.Fatalf("this Redis was not started by the harness")
	}
	r.proc.stop()
}

// Start starts a stopped dedicated Redis on the same port.
func (r *Redis) Start(tb TB) {
	tb.Helper()
	if err := r.start(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Client returns a client for direct inspection (leak scans, TTL checks).
func (r *Redis) Client(tb TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		tb.Fatalf("redis url: %v", err)
	}
	opt.MaintNotificationsConfig = redisconn.NoMaintNotifications()
	c := redis.NewClient(opt)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Dump returns every key and value (strings; other types by their type name)
// in every database, for leak scans.
func (r *Redis) Dump(tb TB) [][]byte {
	tb.Helper()
	c := r.Client(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out [][]byte
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		out = append(out, []byte(k))
		if v, err := c.Get(ctx, k).Bytes(); err == nil {
			out = append(out, v)
		} else if d, err := c.Dump(ctx, k).Bytes(); err == nil {
			out = append(out, d)
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("redis scan: %v", err)
	}
	return out
}

func splitHostPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return addr, "", fmt.Errorf("no port in %q", addr)
}
