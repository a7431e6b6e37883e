// Package storetest is the conformance suite every vault backend runs
// (PostgreSQL and SQLite), so the two never drift. PAN-free: it stores
// opaque ciphertext bytes.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run runs the suite; newStore returns an empty, migrated store per call.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"merchant and keys round trip", testMerchants},
		{"duplicate merchant id rejected whole", testDuplicateMerchant},
		{"origins", testOrigins},
		{"deks round trip", testDEKs},
		{"token round trip and isolation", testTokens},
		{"fingerprint lookup returns oldest", testFingerprint},
		{"delete", testDelete},
		{"idempotency record atomic with token", testIdempotentCreate},
		{"concurrent same idempotency key creates one token", testIdempotentRace},
		{"put idempotency", testPutIdempotency},
		{"one failing create in a concurrent burst fails alone", testBurstIsolation},
		{"rewrap bookkeeping", testRewrap},
		{"audit chain", testAudit},
		{"re-encryption bookkeeping", testReencryptBookkeeping},
		{"fingerprint versions", testFingerprintVersions},
		{"concurrent deduped creates make one token", testDedupedRace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustMerchant(t *testing.T, s store.Store, id string) {
	t.Helper()
	require.NoError(t, s.CreateMerchant(ctx(t), store.Merchant{ID: id, Name: "M " + id, CreatedAt: t0}, []store.APIKey{
		{Hash: []byte("hash-sk-" + id), Prefix: "sk_test_" + id, Kind: store.KeySecret, CreatedAt: t0},
	}), "create merchant")
}

func mustDEK(t *testing.T, s store.Store, id string) {
	t.Helper()
	require.NoError(t, s.InsertDEK(ctx(t), envelope.DEKRecord{ID: id, Wrapped: "vault:v1:abc", KEKVersion: 1, CreatedAt: t0}), "insert dek")
}

func token(id, merchant, fp string, at time.Time) store.TokenRecord {
	return store.TokenRecord{Token: id, MerchantID: merchant, DEKID: "dek_1", Ciphertext: []byte{1, 2, 3, 0, 255}, Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fp, CreatedAt: at}
}

func testMerchants(t *testing.T, s store.Store) {
	c := ctx(t)
	require.NoError(t, s.CreateMerchant(c, store.Merchant{ID: "mer_a", Name: "A", AllowedOrigins: []string{"https://a.example"}, CreatedAt: t0}, []store.APIKey{
		{Hash: []byte("h1"), Prefix: "sk_test_aaaa", Kind: store.KeySecret, CreatedAt: t0},
		{Hash: []byte("h2"), Prefix: "pk_test_aaaa", Kind: store.KeyPublishable, CreatedAt: t0},
	}))
	m, err := s.GetMerchant(c, "mer_a")
	require.NoError(t, err)
	assert.Equal(t, "A", m.Name)
	assert.Equal(t, []string{"https://a.example"}, m.AllowedOrigins)
	assert.WithinDuration(t, t0, m.CreatedAt, 0)
	k, err := s.LookupAPIKey(c, []byte("h2"))
	require.NoError(t, err)
	assert.Equal(t, "mer_a", k.MerchantID)
	assert.Equal(t, store.KeyPublishable, k.Kind)
	assert.Equal(t, "pk_test_aaaa", k.Prefix)
	_, err = s.LookupAPIKey(c, []byte("nope"))
	require.ErrorIs(t, err, store.ErrNotFound, "unknown key")
	_, err = s.GetMerchant(c, "mer_nope")
	require.ErrorIs(t, err, store.ErrNotFound, "unknown merchant")
}

func testDuplicateMerchant(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	err := s.CreateMerchant(ctx(t), store.Merchant{ID: "mer_a", Name: "again", CreatedAt: t0}, []store.APIKey{{Hash: []byte("other"), Prefix: "x", Kind: store.KeySecret, CreatedAt: t0}})
	require.ErrorIs(t, err, store.ErrDuplicate, "duplicate merchant")
	_, err = s.LookupAPIKey(ctx(t), []byte("other"))
	require.ErrorIs(t, err, store.ErrNotFound, "key of rejected merchant was stored")
}

func testOrigins(t *testing.T, s store.Store) {
	c := ctx(t)
	require.NoError(t, s.CreateMerchant(c, store.Merchant{ID: "mer_o", Name: "O", AllowedOrigins: []string{"https://shop.example", "http://localhost:3000"}, CreatedAt: t0}, nil))
	for origin, want := range map[string]bool{"https://shop.example": true, "http://localhost:3000": true, "https://evil.example": false, "": false} {
		got, err := s.OriginAllowed(c, origin)
		if assert.NoError(t, err, "OriginAllowed(%q)", origin) {
			assert.Equal(t, want, got, "OriginAllowed(%q)", origin)
		}
	}
}

func testDEKs(t *testing.T, s store.Store) {
	mustDEK(t, s, "dek_1")
	d, err := s.GetDEK(ctx(t), "dek_1")
	require.NoError(t, err)
	assert.Equal(t, "vault:v1:abc", d.Wrapped)
	assert.Equal(t, 1, d.KEKVersion)
	assert.WithinDuration(t, t0, d.CreatedAt, 0)
	require.ErrorIs(t, s.InsertDEK(ctx(t), envelope.DEKRecord{ID: "dek_1", Wrapped: "x", CreatedAt: t0}), store.ErrDuplicate, "duplicate dek")
	_, err = s.GetDEK(ctx(t), "dek_nope")
	require.ErrorIs(t, err, store.ErrNotFound, "unknown dek")
}

func testTokens(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustMerchant(t, s, "mer_b")
	mustDEK(t, s, "dek_1")
	want := token("tok_1", "mer_a", "fp_1", t0)
	require.NoError(t, s.CreateToken(ctx(t), want, nil))
	got, err := s.GetToken(ctx(t), "mer_a", "tok_1")
	require.NoError(t, err)
	assert.Equal(t, want.Ciphertext, got.Ciphertext)
	assert.Equal(t, "visa", got.Brand)
	assert.Equal(t, "424242", got.BIN)
	assert.Equal(t, "4242", got.Last4)
	assert.Equal(t, 12, got.ExpMonth)
	assert.Equal(t, 2030, got.ExpYear)
	assert.Equal(t, "fp_1", got.Fingerprint)
	assert.Equal(t, "dek_1", got.DEKID)
	assert.WithinDuration(t, t0, got.CreatedAt, 0)
	_, err = s.GetToken(ctx(t), "mer_b", "tok_1")
	require.ErrorIs(t, err, store.ErrNotFound, "other merchant read")
	require.ErrorIs(t, s.CreateToken(ctx(t), want, nil), store.ErrDuplicate, "duplicate token")
	n, err := s.CountTokens(ctx(t))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "CountTokens")
}

func testFingerprint(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustMerchant(t, s, "mer_b")
	mustDEK(t, s, "dek_1")
	for _, r := range []store.TokenRecord{
		token("tok_new", "mer_a", "fp_x", t0.Add(time.Minute)),
		token("tok_old", "mer_a", "fp_x", t0),
		token("tok_b", "mer_b", "fp_y", t0),
	} {
		require.NoError(t, s.CreateToken(ctx(t), r, nil))
	}
	got, err := s.FindTokenByFingerprint(ctx(t), "mer_a", "fp_x")
	require.NoError(t, err)
	assert.Equal(t, "tok_old", got.Token, "FindTokenByFingerprint")
	_, err = s.FindTokenByFingerprint(ctx(t), "mer_a", "fp_y")
	require.ErrorIs(t, err, store.ErrNotFound, "cross-merchant fingerprint")
}

func testDelete(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustMerchant(t, s, "mer_b")
	mustDEK(t, s, "dek_1")
	require.NoError(t, s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), nil))
	require.ErrorIs(t, s.DeleteToken(ctx(t), "mer_b", "tok_1"), store.ErrNotFound, "other merchant delete")
	require.NoError(t, s.DeleteToken(ctx(t), "mer_a", "tok_1"))
	_, err := s.GetToken(ctx(t), "mer_a", "tok_1")
	require.ErrorIs(t, err, store.ErrNotFound, "read after delete")
	require.ErrorIs(t, s.DeleteToken(ctx(t), "mer_a", "tok_1"), store.ErrNotFound, "second delete")
}

func testIdempotentCreate(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	idem := &store.IdempotencyRecord{MerchantID: "mer_a", Key: "k1", Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte("resp-1"), CreatedAt: t0}
	require.NoError(t, s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), idem))
	require.ErrorIs(t, s.CreateToken(ctx(t), token("tok_2", "mer_a", "fp", t0), idem), store.ErrIdempotencyExists, "second create with same key")
	_, err := s.GetToken(ctx(t), "mer_a", "tok_2")
	require.ErrorIs(t, err, store.ErrNotFound, "token of a rejected idempotent create was stored")
	rec, err := s.GetIdempotency(ctx(t), "mer_a", "k1")
	require.NoError(t, err)
	assert.Equal(t, "resp-1", string(rec.Response))
	assert.Equal(t, "mac", string(rec.RequestMAC))
	assert.Equal(t, "tokenize", rec.Operation)
	_, err = s.GetIdempotency(ctx(t), "mer_b", "k1")
	require.ErrorIs(t, err, store.ErrNotFound, "idempotency keys must be per merchant")
	// A failed token insert leaves no idempotency record behind.
	bad := &store.IdempotencyRecord{MerchantID: "mer_a", Key: "k2", Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte("r"), CreatedAt: t0}
	require.ErrorIs(t, s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), bad), store.ErrDuplicate, "duplicate token with new key")
	_, err = s.GetIdempotency(ctx(t), "mer_a", "k2")
	require.ErrorIs(t, err, store.ErrNotFound, "half-written idempotency record")
}

func testIdempotentRace(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			idem := &store.IdempotencyRecord{MerchantID: "mer_a", Key: "race", Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte(fmt.Sprint(i)), CreatedAt: t0}
			errs[i] = s.CreateToken(ctx(t), token(fmt.Sprintf("tok_%d", i), "mer_a", "fp", t0), idem)
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, store.ErrIdempotencyExists)
	}
	c, _ := s.CountTokens(ctx(t))
	assert.Equal(t, 1, ok, "creates that succeeded")
	assert.EqualValues(t, 1, c, "tokens stored")
}

func testPutIdempotency(t *testing.T, s store.Store) {
	r := store.IdempotencyRecord{MerchantID: "mer_a", Key: "k", Operation: "delete_token", RequestMAC: []byte("m"), Response: []byte("r"), CreatedAt: t0}
	require.NoError(t, s.PutIdempotency(ctx(t), r))
	require.ErrorIs(t, s.PutIdempotency(ctx(t), r), store.ErrIdempotencyExists, "second put")
}

func testBurstIsolation(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	require.NoError(t, s.CreateToken(ctx(t), token("tok_taken", "mer_a", "fp", t0), nil))
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("tok_burst_%d", i)
			var idem *store.IdempotencyRecord
			if i%2 == 0 {
				idem = &store.IdempotencyRecord{MerchantID: "mer_a", Key: fmt.Sprintf("burst-%d", i), Operation: "tokenize", RequestMAC: []byte("m"), Response: []byte("r"), CreatedAt: t0}
			}
			if i == 7 {
				id = "tok_taken" // a duplicate: must fail without taking the others down
			}
			errs[i] = s.CreateToken(ctx(t), token(id, "mer_a", "fp", t0), idem)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			require.ErrorIs(t, err, store.ErrDuplicate, "duplicate token")
			continue
		}
		require.NoError(t, err, "create %d failed because of another item", i)
	}
	c, _ := s.CountTokens(ctx(t))
	assert.EqualValues(t, n, c, "tokens stored")
}

func testRewrap(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	c := ctx(t)
	for i, v := range []int{1, 1, 2, 3} {
		require.NoError(t, s.InsertDEK(c, envelope.DEKRecord{ID: fmt.Sprintf("dek_%d", i), Wrapped: fmt.Sprintf("vault:v%d:w%d", v, i), KEKVersion: v, CreatedAt: t0}))
	}
	for i := 0; i < 3; i++ {
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", "fp", t0)
		r.DEKID = "dek_0"
		require.NoError(t, s.CreateToken(c, r, nil))
	}
	page1, err := s.DEKsBelowVersion(c, 3, "", 2)
	require.NoError(t, err)
	require.Len(t, page1, 2, "page 1")
	assert.Equal(t, "dek_0", page1[0].ID)
	assert.Equal(t, "dek_1", page1[1].ID)
	page2, err := s.DEKsBelowVersion(c, 3, page1[1].ID, 2)
	require.NoError(t, err)
	require.Len(t, page2, 1, "page 2")
	assert.Equal(t, "dek_2", page2[0].ID)
	require.NoError(t, s.RewrapDEK(c, "dek_0", "vault:v1:w0", "vault:v3:new", 3))
	require.ErrorIs(t, s.RewrapDEK(c, "dek_0", "vault:v1:w0", "vault:v3:again", 3), store.ErrNotFound, "stale compare-and-set")
	d, _ := s.GetDEK(c, "dek_0")
	assert.Equal(t, "vault:v3:new", d.Wrapped, "after rewrap")
	assert.Equal(t, 3, d.KEKVersion, "after rewrap")
	stats, err := s.KeyStats(c)
	require.NoError(t, err)
	want := []store.KeyStat{{KEKVersion: 1, DEKs: 1}, {KEKVersion: 2, DEKs: 1}, {KEKVersion: 3, DEKs: 2, Tokens: 3}}
	assert.Equal(t, want, stats, "KeyStats")
}

func testAudit(t *testing.T, s store.Store) {
	c := ctx(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := "mer_a"
			if i%2 == 1 {
				m = "mer_b"
			}
			_, err := s.AppendAudit(c, []audit.Event{{At: t0, Actor: "test", Action: audit.ActionDetokenize, MerchantID: m, Token: fmt.Sprintf("tok_%d", i), DestinationHost: "acq.example"}})
			assert.NoError(t, err) // not require: this runs off the test goroutine
		}(i)
	}
	wg.Wait()
	all, err := s.ListAudit(c, store.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, all, 20, "ListAudit")
	var v audit.Verifier
	for _, e := range all {
		v.Add(e)
	}
	require.Empty(t, v.Problems, "concurrent appends broke the chain")
	seq, _ := v.Head()
	require.EqualValues(t, 20, seq, "head seq")
	h, err := s.AuditHead(c)
	require.NoError(t, err)
	assert.EqualValues(t, 20, h.Seq, "AuditHead")
	assert.Equal(t, string(all[19].Hash), string(h.Hash), "AuditHead")
	b, _ := s.ListAudit(c, store.AuditFilter{MerchantID: "mer_b"})
	page, _ := s.ListAudit(c, store.AuditFilter{AfterSeq: 15, Limit: 3})
	one, _ := s.ListAudit(c, store.AuditFilter{Token: "tok_3"})
	assert.Len(t, b, 10, "merchant filter")
	if assert.Len(t, page, 3, "page") {
		assert.EqualValues(t, 16, page[0].Seq, "page")
	}
	if assert.Len(t, one, 1, "token filter") {
		assert.Equal(t, "acq.example", one[0].DestinationHost, "token filter")
	}
}

func testReencryptBookkeeping(t *testing.T, s store.Store) {
	c := ctx(t)
	mustMerchant(t, s, "mer_a")
	old, fresh := t0.Add(-48*time.Hour), t0
	for id, at := range map[string]time.Time{"dek_old": old, "dek_unused": old, "dek_new": fresh} {
		require.NoError(t, s.InsertDEK(c, envelope.DEKRecord{ID: id, Wrapped: "w", KEKVersion: 1, CreatedAt: at}))
	}
	for i, dek := range []string{"dek_old", "dek_old", "dek_new"} {
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", "fp", t0)
		r.DEKID = dek
		require.NoError(t, s.CreateToken(c, r, nil))
	}
	got, err := s.TokensUnderOldDEKs(c, t0.Add(-time.Hour), "", 10)
	require.NoError(t, err)
	require.Len(t, got, 2, "TokensUnderOldDEKs")
	assert.Equal(t, "tok_0", got[0].Token)
	assert.Equal(t, "tok_1", got[1].Token)
	require.NoError(t, s.ReplaceCiphertext(c, "tok_0", "dek_old", "dek_new", []byte("ct2")))
	require.ErrorIs(t, s.ReplaceCiphertext(c, "tok_0", "dek_old", "dek_new", []byte("ct3")), store.ErrNotFound, "stale compare-and-set")
	r, _ := s.GetToken(c, "mer_a", "tok_0")
	assert.Equal(t, "dek_new", r.DEKID, "after replace")
	assert.Equal(t, "ct2", string(r.Ciphertext), "after replace")
	n, err := s.DestroyDEKs(c, t0.Add(-time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "DestroyDEKs: want only the unused old DEK")
	stats, _ := s.DEKStats(c)
	require.Len(t, stats, 2, "DEKStats")
	assert.Equal(t, "dek_old", stats[0].ID)
	assert.EqualValues(t, 1, stats[0].Tokens)
	assert.Equal(t, "dek_new", stats[1].ID)
	assert.EqualValues(t, 2, stats[1].Tokens)
}

func testFingerprintVersions(t *testing.T, s store.Store) {
	c := ctx(t)
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	for i, v := range []int{0, 1, 2} { // 0: an old record written before versions (defaults to 1)
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", fmt.Sprintf("fp_%d", i), t0)
		r.FingerprintVersion = v
		require.NoError(t, s.CreateToken(c, r, nil))
	}
	r, _ := s.GetToken(c, "mer_a", "tok_0")
	require.Equal(t, 1, r.FingerprintVersion, "default fingerprint version")
	below, err := s.TokensWithFingerprintBelow(c, 2, "", 10)
	require.NoError(t, err)
	require.Len(t, below, 2, "TokensWithFingerprintBelow")
	assert.Equal(t, "tok_0", below[0].Token)
	assert.Equal(t, "tok_1", below[1].Token)
	require.NoError(t, s.UpdateFingerprint(c, "tok_0", "fp_0", "fp_0_v2", 2))
	require.ErrorIs(t, s.UpdateFingerprint(c, "tok_0", "fp_0", "fp_again", 2), store.ErrNotFound, "stale compare-and-set")
	r, err = s.FindTokenByFingerprint(c, "mer_a", "fp_0_v2")
	require.NoError(t, err, "lookup by the rewritten fingerprint")
	assert.Equal(t, "tok_0", r.Token, "lookup by the rewritten fingerprint")
	assert.Equal(t, 2, r.FingerprintVersion, "lookup by the rewritten fingerprint")
}

func testDedupedRace(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	const n = 16
	var wg sync.WaitGroup
	created := make([]bool, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			existing, err := s.CreateTokenDeduped(ctx(t), token(fmt.Sprintf("tok_%d", i), "mer_a", "fp_same", t0), nil)
			errs[i], created[i] = err, err == nil && existing == nil
		}(i)
	}
	wg.Wait()
	made := 0
	for i := range created {
		require.NoError(t, errs[i], "call %d", i)
		if created[i] {
			made++
		}
	}
	c, _ := s.CountTokens(ctx(t))
	assert.Equal(t, 1, made, "tokens created")
	assert.EqualValues(t, 1, c, "tokens stored")
}
