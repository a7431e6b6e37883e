package postgres_test

import (
	"context"
	"fmt"
	"sync"
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

// TestGroupCommitConcurrentCallers: concurrent CreateToken calls share
// transactions (two flushers, each keeping its batch open briefly while
// more tokens arrive), and each call returns only once its row is
// committed: every token is readable, from another connection, as soon as
// its call returned.
func TestGroupCommitConcurrentCallers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	url := testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL)
	s, err := postgres.Open(ctx, url, postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, s.CreateMerchant(ctx, store.Merchant{ID: "mer_c", Name: "c", CreatedAt: now}, nil))
	require.NoError(t, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_c", Wrapped: "vault:v1:x", KEKVersion: 1, CreatedAt: now}))
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(ctx) })

	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			tok := fmt.Sprintf("tok_c%d", i)
			r := store.TokenRecord{Token: tok, MerchantID: "mer_c", DEKID: "dek_c", Ciphertext: []byte("ct"), Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: "fp_" + tok, CreatedAt: now}
			if !assert.NoError(t, s.CreateToken(ctx, r, nil)) {
				return
			}
			mu.Lock() // one pgx.Conn, one query at a time
			defer mu.Unlock()
			var found int
			assert.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE token = $1`, tok).Scan(&found))
			assert.Equal(t, 1, found, "%s is committed when CreateToken returns", tok)
		})
	}
	wg.Wait()
	var rows, xids int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM tokens WHERE merchant_id = 'mer_c'`).Scan(&rows, &xids))
	assert.Equal(t, n, rows)
	assert.Less(t, xids, n, "concurrent tokens share commits")
	t.Logf("%d tokens in %d transactions", rows, xids)
}

// TestGroupCommitSetBased: a batch's tokens without an idempotency key are
// one INSERT of many rows; every column is stored as given, and a token
// that cannot be inserted (its id taken) fails alone, the others stored.
func TestGroupCommitSetBased(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL), postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, s.CreateMerchant(ctx, store.Merchant{ID: "mer_s", Name: "s", CreatedAt: now}, nil))
	require.NoError(t, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_s", Wrapped: "vault:v1:x", KEKVersion: 1, CreatedAt: now}))
	rec := func(i int) store.TokenRecord {
		return store.TokenRecord{Token: fmt.Sprintf("tok_s%d", i), MerchantID: "mer_s", DEKID: "dek_s", Ciphertext: []byte{byte(i), 9},
			Brand: "mastercard", BIN: "555555", Last4: fmt.Sprintf("%04d", i), ExpMonth: 1 + i%12, ExpYear: 2030 + i, Fingerprint: fmt.Sprintf("fp_s%d", i),
			FingerprintVersion: 1 + i%3, CreatedAt: now.Add(time.Duration(i) * time.Microsecond)}
	}
	require.NoError(t, s.CreateToken(ctx, rec(0), nil))
	cases := []struct {
		name    string
		recs    []int
		wantDup []bool
	}{
		{name: "all new", recs: []int{1, 2, 3, 4}, wantDup: []bool{false, false, false, false}},
		{name: "one id taken", recs: []int{5, 0, 6}, wantDup: []bool{false, true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var recs []store.TokenRecord
			for _, i := range tc.recs {
				recs = append(recs, rec(i))
			}
			errs := postgres.FlushCreates(ctx, s, recs, make([]*store.IdempotencyRecord, len(recs)))
			require.Len(t, errs, len(recs))
			for j, i := range tc.recs {
				if tc.wantDup[j] {
					assert.ErrorIs(t, errs[j], store.ErrDuplicate)
					continue
				}
				require.NoError(t, errs[j])
				got, err := s.GetToken(ctx, "mer_s", rec(i).Token)
				require.NoError(t, err)
				want := rec(i)
				got.CreatedAt = got.CreatedAt.UTC()
				assert.Equal(t, want, got)
			}
		})
	}
	n, err := s.CountTokens(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 7, n)
}
