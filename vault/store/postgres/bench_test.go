package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/stretchr/testify/require"
)

// BenchmarkCreateToken measures durable token inserts against real
// PostgreSQL (fsync and synchronous_commit on) from 32 concurrent callers.
func BenchmarkCreateToken(b *testing.B) {
	pg := testenv.SharedPostgres(b)
	s, err := postgres.Open(context.Background(), pg.NewDatabase(b, "vault", postgres.MigrateURL), postgres.Options{})
	require.NoError(b, err)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	require.NoError(b, s.CreateMerchant(ctx, store.Merchant{ID: "mer_b", Name: "b", CreatedAt: now}, nil))
	require.NoError(b, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_b", Wrapped: "vault:v1:x", KEKVersion: 1, CreatedAt: now}))
	var n atomic.Int64
	ct := make([]byte, 80)
	b.SetParallelism(16) // 2 cores × 16 = 32 callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := store.TokenRecord{Token: fmt.Sprintf("tok_%d", i), MerchantID: "mer_b", DEKID: "dek_b", Ciphertext: ct, Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fmt.Sprintf("fp_%d", i), CreatedAt: now}
			require.NoError(b, s.CreateToken(ctx, r, nil))
		}
	})
}
