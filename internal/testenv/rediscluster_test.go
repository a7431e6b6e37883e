package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The harness's cluster: 3 primaries with a replica each; a killed
// primary's replica takes over with the data it had replicated, and the
// killed node rejoins as a replica.
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a 6-node Redis Cluster")
	}
	c := testenv.StartRedisCluster(t)
	ps := c.Primaries(t)
	require.Len(t, ps, 3)
	require.Contains(t, c.URL(), "redis+cluster://")
	rdb := c.Client(t)
	ctx := context.Background()
	for i := range 30 {
		require.NoError(t, rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err())
	}
	// The key's primary has it; WAIT makes sure its replica has too.
	key := "k7"
	owner := c.PrimaryFor(t, key)
	require.Contains(t, ps, owner)
	idx := -1
	for i, p := range ps {
		if p == owner {
			idx = i
		}
	}
	// Replicated before the kill.
	for i := range 30 {
		m, err := c.Client(t).MasterForKey(ctx, fmt.Sprintf("k%d", i))
		require.NoError(t, err)
		require.NoError(t, m.Do(ctx, "WAIT", 1, 2000).Err())
	}
	start := time.Now()
	killed, promoted := c.KillPrimary(t, idx)
	t.Logf("failover of %s to %s took %s", killed, promoted, time.Since(start).Round(time.Millisecond))
	assert.Equal(t, owner, killed)
	assert.NotEqual(t, killed, promoted)
	assert.Equal(t, promoted, c.PrimaryFor(t, key))
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		return rdb.Get(ctx, key).Err()
	}), "the key is served by the promoted replica")
	for i := range 30 {
		v, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int()
		require.NoError(t, err)
		assert.Equal(t, i, v)
	}
	c.Restart(t, killed)
	assert.Len(t, c.Primaries(t), 3)
	assert.NotContains(t, c.Primaries(t), killed, "the restarted node is a replica")
	assert.NotEmpty(t, c.Dump(t))
}

// DumpNodes reads every node, replicas included: a value written through
// the cluster is found on its primary and on that primary's replica.
func TestRedisClusterDumpNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a 6-node Redis Cluster")
	}
	c := testenv.StartRedisCluster(t)
	rdb := c.Client(t)
	ctx := context.Background()
	const key, val = "dump-me", "needle-4242"
	require.NoError(t, rdb.Set(ctx, key, val, 0).Err())
	m, err := rdb.MasterForKey(ctx, key)
	require.NoError(t, err)
	require.NoError(t, m.Do(ctx, "WAIT", 1, 2000).Err())
	primary := c.PrimaryFor(t, key)
	replica := c.ReplicaOf(t, primary)
	nodes := c.DumpNodes(t)
	assert.Len(t, nodes, 6)
	var holders []string
	for addr, kvs := range nodes {
		for _, kv := range kvs {
			if string(kv) == val {
				holders = append(holders, addr)
			}
		}
	}
	assert.ElementsMatch(t, []string{primary, replica}, holders, "the value is on its primary and its replica only")
}
