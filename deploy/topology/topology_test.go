package topology_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/deploy/topology"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/simulator"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestTopology starts the reference layout, checks every component, and
// runs payments through HAProxy: each is tokenized, authorized, captured
// and partly refunded once, and both gateway replicas' sweepers deliver
// the ledger events exactly once.
func TestTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("the reference topology: builds the daemons, starts 3 Vault nodes, 2 PostgreSQL servers, HAProxy and 10 daemons")
	}
	began := time.Now()
	topo := topology.Start(t, topology.Options{})
	t.Logf("topology up in %s", time.Since(began).Round(time.Millisecond))
	phase := time.Now()
	lap := func(what string) {
		t.Logf("%s in %s", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}

	t.Run("vault raft has three peers and HAProxy routes to the leader", func(t *testing.T) {
		peers, err := topo.VaultRaftPeers()
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"node0", "node1", "node2"}, peers)
		leader, err := topo.VaultLeader()
		require.NoError(t, err)
		resp, err := http.Get(topo.VaultAddr + "/v1/sys/leader")
		require.NoError(t, err)
		defer resp.Body.Close()
		var l struct {
			IsSelf        bool   `json:"is_self"`
			LeaderAddress string `json:"leader_address"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
		assert.True(t, l.IsSelf, "the node behind HAProxy is the leader")
		assert.Equal(t, "http://"+topo.VaultNode(leader).Addr, l.LeaderAddress)
		st, err := topo.HAProxyServers()
		require.NoError(t, err)
		for i := range topology.VaultNodes {
			name := topo.VaultNode(i).Name
			assert.Equal(t, i == leader, strings.HasPrefix(st["vault/"+name], "UP"), "haproxy vault/%s is %s", name, st["vault/"+name])
		}
	})
	t.Run("postgres standby is synchronous", func(t *testing.T) {
		state, err := topo.ReplicationState()
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"obol_standby": "sync"}, state)
		for db, url := range topo.PostgresURLs {
			assert.Contains(t, url, "target_session_attrs=read-write", db)
			assert.Equal(t, 1, strings.Count(strings.SplitN(url, "/", 4)[2], ","), "%s: two hosts", db)
		}
	})
	t.Run("redis cluster is ok with 3 primaries, a replica each", func(t *testing.T) {
		checkRedisCluster(t, topo)
		assert.True(t, strings.HasPrefix(topo.RedisURL, "redis+cluster://"), "the daemons get the cluster URL")
		assert.Equal(t, 5, strings.Count(topo.RedisURL, "addr="), "every node is a seed")
		for _, p := range append(append(append([]*topology.Process{}, topo.Vaultd()...), topo.Gatewayd()...), topo.Riskd()...) {
			assert.Contains(t, p.Args(), topo.RedisURL, "%s uses the cluster", p.Name)
		}
		for _, p := range topo.Riskd() {
			assert.Contains(t, p.Args(), topology.RiskKeyPrefix, "%s's key prefix is hash-tagged", p.Name)
		}
		require.NoError(t, topo.Redis().Client(t).Ping(context.Background()).Err())
	})
	t.Run("every replica is ready and in HAProxy", func(t *testing.T) {
		st, err := topo.HAProxyServers()
		require.NoError(t, err)
		for _, p := range topo.Services() {
			if p.Name == "acquirer-sim" {
				continue
			}
			resp, err := http.Get("http://" + p.HTTPAddr + "/readyz")
			require.NoError(t, err, p.Name)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s /readyz", p.Name)
		}
		for _, g := range [][]*topology.Process{topo.Vaultd(), topo.Gatewayd(), topo.Riskd(), topo.Ledgerd(), topo.Eventsd()} {
			require.Len(t, g, topology.Replicas)
			for _, p := range g {
				svc, _, _ := strings.Cut(p.Name, "-")
				assert.True(t, strings.HasPrefix(st[svc+"_grpc/"+p.Name], "UP"), "haproxy %s_grpc/%s: %s", svc, p.Name, st[svc+"_grpc/"+p.Name])
			}
		}
	})
	lap("component checks")

	// Payments through HAProxy: round robin spreads them over both
	// replicas of vaultd and gatewayd.
	const n = 6
	leaks := testenv.NewLeakScanner()
	var ids []string
	pay := func(t *testing.T, i int) {
		t.Helper()
		pan, cvc := randomVisa(t), fmt.Sprintf("%03d", 100+i)
		leaks.AddCard(pan, cvc)
		var tok struct{ Token string }
		post(t, topo, topo.VaultdURL+"/v1/tokens", fmt.Sprintf("topo-tok-%d", i),
			fmt.Sprintf(`{"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":%q}}`, pan, time.Now().Year()+3, cvc), &tok)
		require.NotEmpty(t, tok.Token)
		var p struct{ ID, Status string }
		post(t, topo, topo.GatewayURL+"/v1/payments", fmt.Sprintf("topo-auth-%d", i),
			fmt.Sprintf(`{"token":%q,"amount":%d,"currency":"USD","capture":false}`, tok.Token, 1000+i), &p)
		require.Equal(t, "authorized", p.Status)
		ids = append(ids, p.ID)
		post(t, topo, topo.GatewayURL+"/v1/payments/"+p.ID+"/capture", fmt.Sprintf("topo-cap-%d", i), `{}`, &p)
		require.Equal(t, "captured", p.Status)
		var r struct{ Status string }
		post(t, topo, topo.GatewayURL+"/v1/payments/"+p.ID+"/refunds", fmt.Sprintf("topo-ref-%d", i), `{"amount":250,"reason":"topology"}`, &r)
		require.Equal(t, "partially_refunded", r.Status)
	}
	for i := range n {
		pay(t, i)
	}
	lap(fmt.Sprintf("%d payments tokenized, authorized, captured and refunded", len(ids)))

	// The fault methods the drills use, once each, with a payment after
	// each (clients retry 503s with the same key).
	t.Run("the vault leader is killed: a standby takes over; the node rejoins", func(t *testing.T) {
		leader, err := topo.VaultLeader()
		require.NoError(t, err)
		require.NoError(t, topo.KillVaultNode(leader))
		took, err := topo.WaitVaultActive(60 * time.Second)
		require.NoError(t, err)
		t.Logf("vault active again through haproxy %s after the leader's SIGKILL", took.Round(time.Millisecond))
		next, err := topo.VaultLeader()
		require.NoError(t, err)
		assert.NotEqual(t, leader, next)
		require.NoError(t, topo.RotateKEK(), "KEK rotation with the stock vault CLI on the new leader")
		pay(t, n)
		require.NoError(t, topo.RestartVaultNode(leader))
		peers, err := topo.VaultRaftPeers()
		require.NoError(t, err)
		assert.Len(t, peers, topology.VaultNodes)
	})
	lap("vault leader failover")
	t.Run("a gateway and a vaultd replica are killed: haproxy sends to the others", func(t *testing.T) {
		gw, vd := topo.Gatewayd()[0], topo.Vaultd()[1]
		gw.Kill()
		vd.Kill()
		assert.False(t, gw.Running())
		pay(t, n+1)
		require.NoError(t, gw.Start())
		require.NoError(t, vd.Start())
		assert.Equal(t, 2, gw.Starts())
	})
	lap("replica kills")
	t.Run("the redis primary of riskd's slot is killed: its replica is promoted; the node rejoins", func(t *testing.T) {
		f, err := topo.KillRedisPrimary("")
		require.NoError(t, err)
		assert.NotEqual(t, f.Killed, f.Promoted)
		t.Logf("redis: %s promoted %s after the SIGKILL of %s; rejoined in %s", f.Promoted, f.Promotion.Round(time.Millisecond), f.Killed, f.Rejoin.Round(time.Millisecond))
		pay(t, n+2)
		checkRedisCluster(t, topo)
		assert.Equal(t, f.Promoted, topo.Redis().PrimaryFor(t, topology.RiskKeyPrefix), "the promoted replica serves riskd's slot")
	})
	lap("redis primary failover")
	t.Run("postgres primary killed, standby promoted", func(t *testing.T) {
		require.NoError(t, topo.FailoverPostgres())
		pay(t, n+3)
		state, err := topo.ReplicationState()
		require.NoError(t, err)
		assert.Empty(t, state, "no standby left after the failover")
	})
	lap("postgres failover")

	// Both gateways' sweepers deliver the outbox; the ledger holds each
	// event once.
	gw := connect(t, topo.PostgresURLs["gateway"])
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		var left int
		if err := gw.QueryRow(context.Background(), `SELECT count(*) FROM ledger_outbox`).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d ledger events still in the outbox", left)
		}
		return nil
	}))
	lap("outbox delivered")
	led := connect(t, topo.PostgresURLs["ledger"])
	counts := map[string]map[string]int{}
	rows, err := led.Query(context.Background(), `SELECT metadata->>'payment_id', metadata->>'type' FROM transactions WHERE metadata ? 'payment_id'`)
	require.NoError(t, err)
	for rows.Next() {
		var pay, typ string
		require.NoError(t, rows.Scan(&pay, &typ))
		if counts[pay] == nil {
			counts[pay] = map[string]int{}
		}
		counts[pay][typ]++
	}
	require.NoError(t, rows.Err())
	for _, id := range ids {
		assert.Equal(t, map[string]int{"authorization": 1, "capture": 1, "refund": 1}, counts[id], "ledger transactions of %s", id)
	}
	resp, err := topo.HTTP.Get(topo.SimulatorURL + "/v1/authorizations")
	require.NoError(t, err)
	var l simulator.Listing
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
	resp.Body.Close()
	byRef := map[string]int{}
	for _, a := range l.Authorizations {
		byRef[a.Reference]++
		assert.Equal(t, 1, a.RefundCount, "acquirer refunds of %s", a.Reference)
	}
	for _, id := range ids {
		assert.Equal(t, 1, byRef[id], "acquirer authorizations of %s", id)
	}
	out, err := exec.Command(filepath.Join(topo.Bin, "obol"), "ledger", "verify", "--postgres-url", topo.PostgresURLs["ledger"]).CombinedOutput()
	assert.NoError(t, err, "obol ledger verify: %s", out)
	lap("ledger, acquirer and verify checked")

	// No PAN in any process's output.
	outputs := topo.Outputs()
	for _, p := range topo.Processes() {
		assert.NotEmpty(t, outputs[p.Name], "%s's output is captured", p.Name)
	}
	for name, b := range outputs {
		leaks.Scan(name, b)
	}
	for key := range topology.Databases {
		dump, err := topo.DumpDatabase(key)
		require.NoError(t, err)
		leaks.Scan("database "+key, dump)
	}
	nodes := topo.Redis().DumpNodes(t)
	assert.Len(t, nodes, 6, "every redis node is scanned")
	for addr, kvs := range nodes {
		for _, kv := range kvs {
			leaks.Scan("redis "+addr, kv)
		}
	}
	hits, summary := leaks.Report()
	assert.Empty(t, hits, summary)
}

// checkRedisCluster: every node says cluster_state:ok, and CLUSTER NODES
// (on every node) shows 3 primaries serving slots, each with exactly one
// connected replica and no node flagged failing. Gossip settles within a
// few node timeouts after a failover: it polls.
func checkRedisCluster(t *testing.T, topo *topology.Topology) {
	t.Helper()
	addrs := topo.Redis().Addrs()
	require.Len(t, addrs, 6)
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		for _, a := range addrs {
			if err := redisNodeView(a); err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
		}
		return nil
	}))
}

func redisNodeView(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("cluster_state is not ok")
	}
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return err
	}
	primaries := map[string]bool{}
	replicas := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return fmt.Errorf("cluster nodes line %q", line)
		}
		if strings.Contains(f[2], "fail") || f[7] != "connected" {
			return fmt.Errorf("node %s is %s, link %s", f[1], f[2], f[7])
		}
		switch {
		case strings.Contains(f[2], "master"):
			if len(f) == 8 {
				return fmt.Errorf("primary %s serves no slot", f[1])
			}
			primaries[f[0]] = true
		case strings.Contains(f[2], "slave"):
			replicas[f[3]]++
		}
	}
	if len(primaries) != 3 || len(replicas) != 3 {
		return fmt.Errorf("%d primaries, replicas of %d primaries:\n%s", len(primaries), len(replicas), nodes)
	}
	for id := range primaries {
		if replicas[id] != 1 {
			return fmt.Errorf("primary %s has %d replicas:\n%s", id, replicas[id], nodes)
		}
	}
	return nil
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// post sends a merchant request with an Idempotency-Key, retrying the
// same key on 503 (a replica starting) until a deadline, and decodes a
// 200 answer into out.
func post(t *testing.T, topo *topology.Topology, url, key, body string, out any) {
	t.Helper()
	var last string
	var answer []byte
	err := testenv.WaitFor(30*time.Second, func() error {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+topo.SecretKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := topo.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer = b
		last = fmt.Sprintf("HTTP %d %.300s", resp.StatusCode, b)
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("%s", last)
		}
		return nil
	})
	require.NoError(t, err, "POST %s", url)
	require.True(t, strings.HasPrefix(last, "HTTP 200"), "POST %s: %s", url, last)
	require.NoError(t, json.Unmarshal(answer, out))
}

// randomVisa is a random Luhn-valid Visa number outside the simulator's
// special test numbers (so it approves).
func randomVisa(t *testing.T) string {
	for {
		d := make([]int, 16)
		d[0] = 4
		for i := 1; i < 15; i++ {
			n, err := rand.Int(rand.Reader, big.NewInt(10))
			require.NoError(t, err)
			d[i] = int(n.Int64())
		}
		sum := 0
		for i := 14; i >= 0; i-- {
			v := d[i]
			if (14-i)%2 == 0 {
				v *= 2
				if v > 9 {
					v -= 9
				}
			}
			sum += v
		}
		d[15] = (10 - sum%10) % 10
		var s strings.Builder
		for _, x := range d {
			s.WriteByte(byte('0' + x))
		}
		if !strings.HasPrefix(s.String(), "4000000000") {
			return s.String()
		}
	}
}
