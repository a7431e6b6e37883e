package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// TestGroupCommitOneTransaction: a batch of concurrent token creations is
// written in one transaction (every row has the same xmin), not one by
// one; a row whose idempotency key is taken is refused alone
// (ErrIdempotencyExists) while the rest of the batch is stored, and the
// batch's idempotency records are stored with their tokens.
func TestGroupCommitOneTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	url := testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL)
	s, err := postgres.Open(ctx, url, postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, s.CreateMerchant(ctx, store.Merchant{ID: "mer_g", Name: "g", CreatedAt: now}, nil))
	require.NoError(t, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_g", Wrapped: "vault:v1:x", KEKVersion: 1, CreatedAt: now}))
	idem := func(key string) *store.IdempotencyRecord {
		return &store.IdempotencyRecord{MerchantID: "mer_g", Key: key, Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte("resp"), CreatedAt: now}
	}
	require.NoError(t, s.PutIdempotency(ctx, *idem("taken")))

	var recs []store.TokenRecord
	for i := range 4 {
		recs = append(recs, store.TokenRecord{Token: fmt.Sprintf("tok_g%d", i), MerchantID: "mer_g", DEKID: "dek_g", Ciphertext: []byte("ct"), Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fmt.Sprintf("fp_%d", i), CreatedAt: now})
	}
	errs := postgres.FlushCreates(ctx, s, recs, []*store.IdempotencyRecord{nil, idem("k1"), idem("taken"), idem("k3")})
	require.Len(t, errs, 4)
	assert.NoError(t, errs[0])
	assert.NoError(t, errs[1])
	assert.ErrorIs(t, errs[2], store.ErrIdempotencyExists)
	assert.NoError(t, errs[3])

	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(ctx) })
	var rows, xids int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM tokens WHERE merchant_id = 'mer_g'`).Scan(&rows, &xids))
	assert.Equal(t, 3, rows, "the taken key's token is not stored")
	assert.Equal(t, 1, xids, "one transaction for the batch")
	for _, k := range []string{"k1", "k3"} {
		_, err := s.GetIdempotency(ctx, "mer_g", k)
		assert.NoError(t, err, k)
	}
	_, err = s.GetToken(ctx, "mer_g", "tok_g2")
	assert.ErrorIs(t, err, store.ErrNotFound)
}
