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
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// RevealToken reads the token and appends its reveal's event in one
// transaction: a token that exists is answered only with its event in the
// chain; a deleted token or another merchant's is not found and records
// nothing; an event the caller cannot build yet records nothing.
func TestRevealToken(t *testing.T) {
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
	event := func(rec store.TokenRecord) (audit.Event, bool) {
		return audit.Event{At: t0, Actor: "gateway", Action: audit.ActionDetokenize, MerchantID: rec.MerchantID, Token: rec.Token, KEKVersion: 7}, true
	}
	chainLen := func() int {
		all, err := s.ListAudit(ctx, store.AuditFilter{Limit: 10_000})
		require.NoError(t, err)
		var v audit.Verifier
		for _, e := range all {
			v.Add(e)
		}
		require.Empty(t, v.Problems)
		return len(all)
	}

	cases := []struct {
		name, merchant, token string
		event                 func(store.TokenRecord) (audit.Event, bool)
		wantErr               error
		wantRecorded          bool
	}{
		{name: "own token", merchant: "mer_a", token: "tok_1", event: event, wantRecorded: true},
		{name: "deleted token", merchant: "mer_a", token: "tok_0", event: event, wantErr: store.ErrNotFound},
		{name: "another merchant's token", merchant: "mer_b", token: "tok_1", event: event, wantErr: store.ErrNotFound},
		{name: "no such token", merchant: "mer_a", token: "tok_nope", event: event, wantErr: store.ErrNotFound},
		{name: "event not built", merchant: "mer_a", token: "tok_2", event: func(store.TokenRecord) (audit.Event, bool) { return audit.Event{}, false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := chainLen()
			rec, recorded, err := s.RevealToken(ctx, tc.merchant, tc.token, tc.event)
			after := chainLen()
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.False(t, recorded)
				assert.Equal(t, before, after, "nothing recorded")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.token, rec.Token)
			assert.Equal(t, "dek_1", rec.DEKID)
			assert.Equal(t, tc.wantRecorded, recorded)
			if !tc.wantRecorded {
				assert.Equal(t, before, after, "nothing recorded")
				return
			}
			require.Equal(t, before+1, after)
			head, err := s.AuditHead(ctx)
			require.NoError(t, err)
			assert.Equal(t, tc.token, head.Token)
			assert.Equal(t, 7, head.KEKVersion)
		})
	}

	// Concurrent reveals and plain appends share transactions; every
	// reveal answered has its own event, each caller its own record, and
	// the chain stays whole.
	before := chainLen()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		revealed = map[string]int{}
	)
	for w := range 32 {
		wg.Go(func() {
			for i := range n {
				tok := fmt.Sprintf("tok_%d", (i+w)%n)
				if w%4 == 0 {
					_, err := s.AppendAudit(ctx, []audit.Event{{At: t0, Actor: "test", Action: "other", MerchantID: "mer_a", Token: tok}})
					assert.NoError(t, err)
					continue
				}
				rec, recorded, err := s.RevealToken(ctx, "mer_a", tok, event)
				if tok == "tok_0" {
					assert.ErrorIs(t, err, store.ErrNotFound, "deleted")
					continue
				}
				if assert.NoError(t, err) && assert.True(t, recorded) {
					assert.Equal(t, tok, rec.Token)
					assert.Equal(t, []byte{byte((i + w) % n), 1, 2}, rec.Ciphertext)
					rec.Ciphertext[0] = 0xff // a caller's buffer is its own
					mu.Lock()
					revealed[tok]++
					mu.Unlock()
				}
				_, _, err = s.RevealToken(ctx, "mer_b", tok, event)
				assert.ErrorIs(t, err, store.ErrNotFound, "other merchant")
			}
		})
	}
	wg.Wait()
	all, err := s.ListAudit(ctx, store.AuditFilter{AfterSeq: int64(before), Limit: 10_000})
	require.NoError(t, err)
	got := map[string]int{}
	others := 0
	for _, e := range all {
		if e.Action == audit.ActionDetokenize {
			got[e.Token]++
		} else {
			others++
		}
	}
	assert.Equal(t, revealed, got, "one event per reveal answered")
	assert.Equal(t, 8*n, others)
	assert.Equal(t, before+len(all), chainLen())
}
