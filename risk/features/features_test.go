package features_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/features/featurestest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMemory(t *testing.T) {
	featurestest.Run(t, func(*testing.T) features.Store { return features.NewMemory() })
}

func TestRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return features.NewRedis(rdb, "obol:risktest:"+hex.EncodeToString(b[:])+":")
	})
}

func TestAggregated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return features.NewAggregated(rdb, "obol:risktest:"+hex.EncodeToString(b[:])+":", features.AggregatedOptions{})
	})
}

// On a real Redis Cluster: the prefix's hash tag keeps every key of an
// observation (and the sync script's stream, batch and seen keys) in one
// slot, as the scripts need.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	rdb := testenv.SharedRedisCluster(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return features.NewRedis(rdb, "obol:risktest:{"+hex.EncodeToString(b[:])+"}:")
	})
}

func TestAggregatedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	rdb := testenv.SharedRedisCluster(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return features.NewAggregated(rdb, "obol:risktest:{"+hex.EncodeToString(b[:])+"}:", features.AggregatedOptions{})
	})
}
