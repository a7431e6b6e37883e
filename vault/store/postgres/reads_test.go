package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// Concurrent token reads share queries; each still gets its own record,
// never another merchant's token, and a deleted token is not found.
func TestGetTokenConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL), postgres.Options{MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, m := range []string{"mer_a", "mer_b"} {
		require.NoError(t, s.CreateMerchant(ctx, store.Merchant{ID: m, Name: m, CreatedAt: t0}, nil))
	}
	require.NoError(t, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_1", Wrapped: "vault:v1:abc", KEKVersion: 1, CreatedAt: t0}))
	const n = 16
	for i := range n {
		require.NoError(t, s.CreateToken(ctx, store.TokenRecord{Token: fmt.Sprintf("tok_%d", i), MerchantID: "mer_a", DEKID: "dek_1",
			Ciphertext: []byte{byte(i), 1, 2}, Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fmt.Sprintf("fp_%d", i), CreatedAt: t0}, nil))
	}
	require.NoError(t, s.DeleteToken(ctx, "mer_a", "tok_0"))

	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range n {
				tok := fmt.Sprintf("tok_%d", (i+w)%n)
				rec, err := s.GetToken(ctx, "mer_a", tok)
				if tok == "tok_0" {
					assert.ErrorIs(t, err, store.ErrNotFound, "deleted")
				} else if assert.NoError(t, err) {
					assert.Equal(t, tok, rec.Token)
					assert.Equal(t, []byte{byte((i + w) % n), 1, 2}, rec.Ciphertext)
					rec.Ciphertext[0] = 0xff // a caller's buffer is its own
				}
				_, err = s.GetToken(ctx, "mer_b", tok)
				assert.ErrorIs(t, err, store.ErrNotFound, "other merchant")
			}
		})
	}
	wg.Wait()
}
