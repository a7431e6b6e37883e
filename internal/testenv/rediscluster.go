package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/redisconn"
)

// RedisCluster is a real Redis Cluster for tests: 3 primaries with one
// replica each (6 redis-server processes with cluster-enabled yes on free
// loopback ports, no persistence), cluster-node-timeout 1000 ms so that a
// killed primary's replica takes over within a few seconds.
type RedisCluster struct {
	bin   string
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	addr string
	bus  int // cluster bus port (not port+10000: that could be in the ephemeral range)
	dir  string
	proc *process
}

// ClusterNodeTimeout is the cluster-node-timeout of StartRedisCluster's nodes.
const ClusterNodeTimeout = time.Second

const clusterSlots = 16384

// StartRedisCluster starts a 6-node Redis Cluster (3 primaries, a replica
// each), waits until every node says cluster_state:ok and every primary has
// its replica connected, and stops it at the end of the test. For tests
// that kill nodes; others share SharedRedisCluster.
//
// On a loaded machine (the whole suite on two cores) a node can stall past
// the 1 s cluster-node-timeout while the cluster forms, and the six never
// agree. A cluster that did not form is stopped and started afresh, on new
// ports, up to three times; the tests' own failovers keep the short timeout.
func StartRedisCluster(tb TB) *RedisCluster {
	tb.Helper()
	var errs []string
	for attempt := range 3 {
		c, err := startCluster(filepath.Join(tb.TempDir(), strconv.Itoa(attempt)), func() int { return FreePort(tb) })
		if err == nil {
			tb.Cleanup(c.stopAll)
			return c
		}
		if c != nil {
			c.stopAll()
		}
		errs = append(errs, err.Error())
	}
	tb.Fatalf("redis cluster: did not form in 3 attempts:\n%s", strings.Join(errs, "\n--- next attempt\n"))
	return nil
}

var sharedCluster = sync.OnceValues(func() (*RedisCluster, error) {
	dir, err := sharedDir()
	if err != nil {
		return nil, err
	}
	c, err := startCluster(filepath.Join(dir, "rediscluster"), freePortNoTB)
	if c != nil {
		atExit(c.stopAll)
	}
	return c, err
})

// SharedRedisCluster returns the Redis Cluster shared by this test binary
// (started once, stopped by Main). Tests must not kill its nodes, and keep
// to keys of their own.
func SharedRedisCluster(tb TB) *RedisCluster {
	tb.Helper()
	c, err := sharedCluster()
	if err != nil {
		tb.Fatalf("shared redis cluster: %v", err)
	}
	return c
}

func startCluster(base string, port func() int) (*RedisCluster, error) {
	bin, err := findBin("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: install it (apt-get install -y redis-server)", err)
	}
	c := &RedisCluster{bin: bin}
	for i := range 6 {
		n := &clusterNode{addr: fmt.Sprintf("127.0.0.1:%d", port()), bus: port(), dir: filepath.Join(base, strconv.Itoa(i))}
		c.nodes = append(c.nodes, n)
		if err := c.start(n); err != nil {
			return c, err
		}
	}
	if err := c.create(); err != nil {
		return c, fmt.Errorf("%w\n%s", err, c.logs())
	}
	return c, nil
}

func (c *RedisCluster) start(n *clusterNode) error {
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(n.addr)
	p, err := startProcess(c.bin, []string{
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", n.dir,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(n.bus),
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
		"--cluster-require-full-coverage", "yes",
		// A replica syncs at once (the default waits 5s for more replicas).
		"--repl-diskless-sync-delay", "0",
	}, nil, n.dir)
	if err != nil {
		return err
	}
	c.mu.Lock()
	n.proc = p
	c.mu.Unlock()
	if err := WaitFor(15*time.Second, func() error {
		if !p.running() {
			return errNotRunning
		}
		return tcpOK(n.addr)
	}); err != nil {
		return fmt.Errorf("redis-server %s did not start: %w\n%s", n.addr, err, lastLines(p.out.String(), 20))
	}
	return nil
}

func (c *RedisCluster) stopAll() {
	c.mu.Lock()
	nodes := append([]*clusterNode(nil), c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		n.proc.stop()
	}
}

func (c *RedisCluster) logs() string {
	var b strings.Builder
	for _, n := range c.nodes {
		if n.proc != nil {
			fmt.Fprintf(&b, "--- %s\n%s\n", n.addr, lastLines(n.proc.out.String(), 10))
		}
	}
	return b.String()
}

func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1, PoolSize: 2, MaintNotificationsConfig: redisconn.NoMaintNotifications()})
}

func onNode(addr string, f func(ctx context.Context, c *redis.Client) error) error {
	c := nodeClient(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(ctx, c)
}

// create assigns the slots to the first three nodes, joins the six and
// makes node 3+i the replica of node i (what redis-cli --cluster create
// does, without its prompts).
func (c *RedisCluster) create() error {
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		if err := onNode(n.addr, func(ctx context.Context, r *redis.Client) error {
			id, err := r.Do(ctx, "CLUSTER", "MYID").Text()
			if err != nil {
				return err
			}
			ids[i] = id
			return r.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err()
		}); err != nil {
			return fmt.Errorf("node %s: %w", n.addr, err)
		}
	}
	per := clusterSlots / 3
	for i := range 3 {
		lo, hi := i*per, (i+1)*per-1
		if i == 2 {
			hi = clusterSlots - 1
		}
		if err := onNode(c.nodes[i].addr, func(ctx context.Context, r *redis.Client) error {
			return r.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err()
		}); err != nil {
			return fmt.Errorf("slots of %s: %w", c.nodes[i].addr, err)
		}
	}
	if err := onNode(c.nodes[0].addr, func(ctx context.Context, r *redis.Client) error {
		for _, n := range c.nodes[1:] {
			h, p, _ := net.SplitHostPort(n.addr)
			if err := r.Do(ctx, "CLUSTER", "MEET", h, p, n.bus).Err(); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("cluster meet: %w", err)
	}
	// Every node must know every other before a replica can follow its
	// primary.
	if err := WaitFor(30*time.Second, func() error {
		for _, n := range c.nodes[3:] {
			var known int
			if err := onNode(n.addr, func(ctx context.Context, r *redis.Client) error {
				s, err := r.ClusterNodes(ctx).Result()
				known = strings.Count(strings.TrimSpace(s), "\n") + 1
				return err
			}); err != nil {
				return err
			}
			if known < len(c.nodes) {
				return fmt.Errorf("%s knows %d nodes", n.addr, known)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for i := range 3 {
		if err := onNode(c.nodes[3+i].addr, func(ctx context.Context, r *redis.Client) error {
			return r.ClusterReplicate(ctx, ids[i]).Err()
		}); err != nil {
			return fmt.Errorf("replicate %s: %w", c.nodes[3+i].addr, err)
		}
	}
	return WaitFor(60*time.Second, func() error { return c.healthy(3) })
}

// nodeState is what one live node says about itself.
type nodeState struct {
	addr     string
	primary  bool
	replicas int    // connected replicas (primary)
	linkUp   bool   // master_link_status:up (replica)
	slots    []int  // first slot of each range it serves (primary)
	info     string // cluster info
}

func (c *RedisCluster) live() []*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*clusterNode
	for _, n := range c.nodes {
		if n.proc != nil && n.proc.running() {
			out = append(out, n)
		}
	}
	return out
}

func state(addr string) (nodeState, error) {
	st := nodeState{addr: addr}
	err := onNode(addr, func(ctx context.Context, r *redis.Client) error {
		info, err := r.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		st.info = info
		repl, err := r.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		st.primary = strings.Contains(repl, "role:master")
		st.linkUp = strings.Contains(repl, "master_link_status:up")
		for _, line := range strings.Split(repl, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
				st.replicas, _ = strconv.Atoi(v)
			}
		}
		if st.primary {
			nodes, err := r.ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			for _, line := range strings.Split(nodes, "\n") {
				f := strings.Fields(line)
				if len(f) < 8 || !strings.Contains(f[2], "myself") {
					continue
				}
				for _, rng := range f[8:] {
					if strings.HasPrefix(rng, "[") {
						continue
					}
					lo, _, _ := strings.Cut(rng, "-")
					if n, err := strconv.Atoi(lo); err == nil {
						st.slots = append(st.slots, n)
					}
				}
			}
		}
		return nil
	})
	return st, err
}

// healthy checks every live node says cluster_state:ok, and that there are
// 3 primaries serving slots, at least wantReplicas of them with a replica
// connected and every live replica's link up.
func (c *RedisCluster) healthy(wantReplicas int) error {
	primaries, withReplica := 0, 0
	for _, n := range c.live() {
		st, err := state(n.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", n.addr, err)
		}
		if !strings.Contains(st.info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", n.addr)
		}
		switch {
		case st.primary && len(st.slots) > 0:
			primaries++
			if st.replicas > 0 {
				withReplica++
			}
		case !st.primary && !st.linkUp:
			return fmt.Errorf("%s: replica link is not up", n.addr)
		}
	}
	if primaries != 3 {
		return fmt.Errorf("%d primaries serve slots", primaries)
	}
	if withReplica < wantReplicas {
		return fmt.Errorf("%d primaries have their replica connected", withReplica)
	}
	return nil
}

// Addrs are every node's address (live or not), in start order.
func (c *RedisCluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// URL is the cluster's redis+cluster:// URL (as Obol's services take it):
// every node as a seed.
func (c *RedisCluster) URL() string {
	addrs := c.Addrs()
	q := url.Values{}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	return "redis+cluster://" + addrs[0] + "?" + q.Encode()
}

// Primaries are the addresses of the live primaries, ordered by the first
// slot they serve (so index i keeps naming the same slot range across a
// failover).
func (c *RedisCluster) Primaries(tb TB) []string {
	tb.Helper()
	ps, err := c.primaries()
	if err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	return ps
}

func (c *RedisCluster) primaries() ([]string, error) {
	type p struct {
		addr  string
		first int
	}
	var ps []p
	for _, n := range c.live() {
		st, err := state(n.addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.addr, err)
		}
		if st.primary && len(st.slots) > 0 {
			sort.Ints(st.slots)
			ps = append(ps, p{n.addr, st.slots[0]})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].first < ps[j].first })
	out := make([]string, len(ps))
	for i, x := range ps {
		out[i] = x.addr
	}
	return out, nil
}

// PrimaryFor is the address of the live primary serving key's slot.
func (c *RedisCluster) PrimaryFor(tb TB, key string) string {
	tb.Helper()
	var addr string
	err := onNode(c.live()[0].addr, func(ctx context.Context, r *redis.Client) error {
		slot, err := r.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return err
		}
		ps, err := c.primaries()
		if err != nil {
			return err
		}
		per := int64(clusterSlots / 3)
		i := min(slot/per, 2)
		if int(i) >= len(ps) {
			return fmt.Errorf("%d primaries", len(ps))
		}
		addr = ps[i]
		return nil
	})
	if err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	return addr
}

func (c *RedisCluster) node(addr string) *clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// Kill SIGKILLs the node at addr (a primary or a replica) and returns at
// once, without waiting for the cluster to react: for tests that run
// operations during the outage. WaitPromoted waits for the failover.
func (c *RedisCluster) Kill(tb TB, addr string) {
	tb.Helper()
	n := c.node(addr)
	if n == nil || n.proc == nil || !n.proc.running() {
		tb.Fatalf("redis cluster: no live node %s", addr)
	}
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-n.proc.exited
}

// WaitPromoted waits until the cluster serves every slot again after a
// primary was killed (a replica promoted, every live node ok) and returns
// the new primaries (ordered as Primaries).
func (c *RedisCluster) WaitPromoted(tb TB) []string {
	tb.Helper()
	if err := WaitFor(30*time.Second, func() error { return c.healthy(0) }); err != nil {
		tb.Fatalf("redis cluster: no failover: %v\n%s", err, c.logs())
	}
	return c.Primaries(tb)
}

// KillPrimary SIGKILLs primary i (of Primaries), waits until its replica
// has taken over, and returns the killed address and the promoted one.
func (c *RedisCluster) KillPrimary(tb TB, i int) (killed, promoted string) {
	tb.Helper()
	ps := c.Primaries(tb)
	if i < 0 || i >= len(ps) {
		tb.Fatalf("redis cluster: primary %d of %d", i, len(ps))
	}
	killed = ps[i]
	c.Kill(tb, killed)
	now := c.WaitPromoted(tb)
	if len(now) != len(ps) || now[i] == killed {
		tb.Fatalf("redis cluster: primaries after the failover: %v", now)
	}
	return killed, now[i]
}

// Restart starts a killed node again on its port with its nodes.conf: it
// rejoins as a replica of the primary that replaced it. Waits until every
// primary has a replica connected.
func (c *RedisCluster) Restart(tb TB, addr string) {
	tb.Helper()
	n := c.node(addr)
	if n == nil || (n.proc != nil && n.proc.running()) {
		tb.Fatalf("redis cluster: %s is not a stopped node", addr)
	}
	if err := c.start(n); err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	if err := WaitFor(30*time.Second, func() error { return c.healthy(3) }); err != nil {
		tb.Fatalf("redis cluster: %s did not rejoin: %v\n%s", addr, err, c.logs())
	}
}

// Client returns a cluster client for direct inspection.
func (c *RedisCluster) Client(tb TB) *redis.ClusterClient {
	tb.Helper()
	cc := redisconn.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DialerRetries: 1, MaxRedirects: 8})
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// Dump returns every key and value on every live primary (strings; other
// types by their DUMP serialisation), for leak scans.
func (c *RedisCluster) Dump(tb TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, addr := range c.Primaries(tb) {
		r := nodeClient(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		iter := r.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			out = append(out, []byte(k))
			if v, err := r.Get(ctx, k).Bytes(); err == nil {
				out = append(out, v)
			} else if d, err := r.Dump(ctx, k).Bytes(); err == nil {
				out = append(out, d)
			}
		}
		err := iter.Err()
		cancel()
		r.Close()
		if err != nil {
			tb.Fatalf("redis scan %s: %v", addr, err)
		}
	}
	return out
}

// ReplicaOf is the address of a replica connected to the primary at addr.
func (c *RedisCluster) ReplicaOf(tb TB, primary string) string {
	tb.Helper()
	var out string
	err := onNode(primary, func(ctx context.Context, r *redis.Client) error {
		info, err := r.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if !strings.HasPrefix(line, "slave0:") {
				continue
			}
			var ip, port string
			for _, kv := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "slave0:")), ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "ip":
					ip = v
				case "port":
					port = v
				}
			}
			out = net.JoinHostPort(ip, port)
		}
		if out == "" {
			return fmt.Errorf("%s has no replica connected", primary)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	return out
}

// Pause stops the node at addr with SIGSTOP (its connections stay open,
// it answers nothing) until Resume; cleanup resumes it.
func (c *RedisCluster) Pause(tb TB, addr string) {
	tb.Helper()
	n := c.node(addr)
	if n == nil || n.proc == nil || !n.proc.running() {
		tb.Fatalf("redis cluster: no live node %s", addr)
	}
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGSTOP)
	tb.Cleanup(func() { _ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGCONT) })
}

// Resume continues a paused node.
func (c *RedisCluster) Resume(tb TB, addr string) {
	tb.Helper()
	n := c.node(addr)
	if n == nil || n.proc == nil {
		tb.Fatalf("redis cluster: no node %s", addr)
	}
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGCONT)
}

// DumpNodes is Dump for every live node, replicas included (read with
// READONLY), by address: a leak scan covers every copy Redis keeps.
func (c *RedisCluster) DumpNodes(tb TB) map[string][][]byte {
	tb.Helper()
	out := map[string][][]byte{}
	for _, n := range c.live() {
		var vals [][]byte
		err := onNode(n.addr, func(ctx context.Context, r *redis.Client) error {
			conn := r.Conn()
			defer conn.Close()
			if err := conn.ReadOnly(ctx).Err(); err != nil {
				return err
			}
			var cursor uint64
			for {
				keys, next, err := conn.Scan(ctx, cursor, "*", 1000).Result()
				if err != nil {
					return err
				}
				for _, k := range keys {
					vals = append(vals, []byte(k))
					if v, err := conn.Get(ctx, k).Bytes(); err == nil {
						vals = append(vals, v)
					} else if d, err := conn.Dump(ctx, k).Bytes(); err == nil {
						vals = append(vals, d)
					}
				}
				if cursor = next; cursor == 0 {
					return nil
				}
			}
		})
		if err != nil {
			tb.Fatalf("redis scan %s: %v", n.addr, err)
		}
		out[n.addr] = vals
	}
	return out
}
