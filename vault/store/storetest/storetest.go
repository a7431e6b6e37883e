// Package storetest is the conformance suite every vault backend runs
// (PostgreSQL and SQLite), so the two never drift. PAN-free: it stores
// opaque ciphertext bytes.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
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
	if err := s.CreateMerchant(ctx(t), store.Merchant{ID: id, Name: "M " + id, CreatedAt: t0}, []store.APIKey{
		{Hash: []byte("hash-sk-" + id), Prefix: "sk_test_" + id, Kind: store.KeySecret, CreatedAt: t0},
	}); err != nil {
		t.Fatalf("create merchant: %v", err)
	}
}

func mustDEK(t *testing.T, s store.Store, id string) {
	t.Helper()
	if err := s.InsertDEK(ctx(t), envelope.DEKRecord{ID: id, Wrapped: "vault:v1:abc", KEKVersion: 1, CreatedAt: t0}); err != nil {
		t.Fatalf("insert dek: %v", err)
	}
}

func token(id, merchant, fp string, at time.Time) store.TokenRecord {
	return store.TokenRecord{Token: id, MerchantID: merchant, DEKID: "dek_1", Ciphertext: []byte{1, 2, 3, 0, 255}, Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fp, CreatedAt: at}
}

func testMerchants(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.CreateMerchant(c, store.Merchant{ID: "mer_a", Name: "A", AllowedOrigins: []string{"https://a.example"}, CreatedAt: t0}, []store.APIKey{
		{Hash: []byte("h1"), Prefix: "sk_test_aaaa", Kind: store.KeySecret, CreatedAt: t0},
		{Hash: []byte("h2"), Prefix: "pk_test_aaaa", Kind: store.KeyPublishable, CreatedAt: t0},
	}); err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMerchant(c, "mer_a")
	if err != nil || m.Name != "A" || len(m.AllowedOrigins) != 1 || m.AllowedOrigins[0] != "https://a.example" || !m.CreatedAt.Equal(t0) {
		t.Fatalf("GetMerchant = %+v, %v", m, err)
	}
	k, err := s.LookupAPIKey(c, []byte("h2"))
	if err != nil || k.MerchantID != "mer_a" || k.Kind != store.KeyPublishable || k.Prefix != "pk_test_aaaa" {
		t.Fatalf("LookupAPIKey = %+v, %v", k, err)
	}
	if _, err := s.LookupAPIKey(c, []byte("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := s.GetMerchant(c, "mer_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown merchant: %v", err)
	}
}

func testDuplicateMerchant(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	err := s.CreateMerchant(ctx(t), store.Merchant{ID: "mer_a", Name: "again", CreatedAt: t0}, []store.APIKey{{Hash: []byte("other"), Prefix: "x", Kind: store.KeySecret, CreatedAt: t0}})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate merchant: %v", err)
	}
	if _, err := s.LookupAPIKey(ctx(t), []byte("other")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of rejected merchant was stored: %v", err)
	}
}

func testOrigins(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.CreateMerchant(c, store.Merchant{ID: "mer_o", Name: "O", AllowedOrigins: []string{"https://shop.example", "http://localhost:3000"}, CreatedAt: t0}, nil); err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{"https://shop.example": true, "http://localhost:3000": true, "https://evil.example": false, "": false} {
		got, err := s.OriginAllowed(c, origin)
		if err != nil || got != want {
			t.Errorf("OriginAllowed(%q) = %v, %v; want %v", origin, got, err, want)
		}
	}
}

func testDEKs(t *testing.T, s store.Store) {
	mustDEK(t, s, "dek_1")
	d, err := s.GetDEK(ctx(t), "dek_1")
	if err != nil || d.Wrapped != "vault:v1:abc" || d.KEKVersion != 1 || !d.CreatedAt.Equal(t0) {
		t.Fatalf("GetDEK = %+v, %v", d, err)
	}
	if err := s.InsertDEK(ctx(t), envelope.DEKRecord{ID: "dek_1", Wrapped: "x", CreatedAt: t0}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate dek: %v", err)
	}
	if _, err := s.GetDEK(ctx(t), "dek_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown dek: %v", err)
	}
}

func testTokens(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustMerchant(t, s, "mer_b")
	mustDEK(t, s, "dek_1")
	want := token("tok_1", "mer_a", "fp_1", t0)
	if err := s.CreateToken(ctx(t), want, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetToken(ctx(t), "mer_a", "tok_1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Ciphertext, want.Ciphertext) || got.Brand != "visa" || got.BIN != "424242" || got.Last4 != "4242" ||
		got.ExpMonth != 12 || got.ExpYear != 2030 || got.Fingerprint != "fp_1" || got.DEKID != "dek_1" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("GetToken = %+v", got)
	}
	if _, err := s.GetToken(ctx(t), "mer_b", "tok_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other merchant read: %v", err)
	}
	if err := s.CreateToken(ctx(t), want, nil); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate token: %v", err)
	}
	if n, err := s.CountTokens(ctx(t)); err != nil || n != 1 {
		t.Fatalf("CountTokens = %d, %v", n, err)
	}
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
		if err := s.CreateToken(ctx(t), r, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.FindTokenByFingerprint(ctx(t), "mer_a", "fp_x")
	if err != nil || got.Token != "tok_old" {
		t.Fatalf("FindTokenByFingerprint = %s, %v; want tok_old", got.Token, err)
	}
	if _, err := s.FindTokenByFingerprint(ctx(t), "mer_a", "fp_y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cross-merchant fingerprint: %v", err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustMerchant(t, s, "mer_b")
	mustDEK(t, s, "dek_1")
	if err := s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken(ctx(t), "mer_b", "tok_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other merchant delete: %v", err)
	}
	if err := s.DeleteToken(ctx(t), "mer_a", "tok_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetToken(ctx(t), "mer_a", "tok_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read after delete: %v", err)
	}
	if err := s.DeleteToken(ctx(t), "mer_a", "tok_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func testIdempotentCreate(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	idem := &store.IdempotencyRecord{MerchantID: "mer_a", Key: "k1", Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte("resp-1"), CreatedAt: t0}
	if err := s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), idem); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(t), token("tok_2", "mer_a", "fp", t0), idem); !errors.Is(err, store.ErrIdempotencyExists) {
		t.Fatalf("second create with same key: %v", err)
	}
	if _, err := s.GetToken(ctx(t), "mer_a", "tok_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token of a rejected idempotent create was stored: %v", err)
	}
	rec, err := s.GetIdempotency(ctx(t), "mer_a", "k1")
	if err != nil || string(rec.Response) != "resp-1" || string(rec.RequestMAC) != "mac" || rec.Operation != "tokenize" {
		t.Fatalf("GetIdempotency = %+v, %v", rec, err)
	}
	if _, err := s.GetIdempotency(ctx(t), "mer_b", "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idempotency keys must be per merchant: %v", err)
	}
	// A failed token insert leaves no idempotency record behind.
	bad := &store.IdempotencyRecord{MerchantID: "mer_a", Key: "k2", Operation: "tokenize", RequestMAC: []byte("mac"), Response: []byte("r"), CreatedAt: t0}
	if err := s.CreateToken(ctx(t), token("tok_1", "mer_a", "fp", t0), bad); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate token with new key: %v", err)
	}
	if _, err := s.GetIdempotency(ctx(t), "mer_a", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("half-written idempotency record: %v", err)
	}
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
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrIdempotencyExists):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if c, _ := s.CountTokens(ctx(t)); ok != 1 || c != 1 {
		t.Fatalf("%d creates succeeded and %d tokens exist; want exactly 1", ok, c)
	}
}

func testPutIdempotency(t *testing.T, s store.Store) {
	r := store.IdempotencyRecord{MerchantID: "mer_a", Key: "k", Operation: "delete_token", RequestMAC: []byte("m"), Response: []byte("r"), CreatedAt: t0}
	if err := s.PutIdempotency(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIdempotency(ctx(t), r); !errors.Is(err, store.ErrIdempotencyExists) {
		t.Fatalf("second put: %v", err)
	}
}

func testBurstIsolation(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	if err := s.CreateToken(ctx(t), token("tok_taken", "mer_a", "fp", t0), nil); err != nil {
		t.Fatal(err)
	}
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
			if !errors.Is(err, store.ErrDuplicate) {
				t.Fatalf("duplicate token: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("create %d failed because of another item: %v", i, err)
		}
	}
	if c, _ := s.CountTokens(ctx(t)); c != n {
		t.Fatalf("%d tokens; want %d", c, n)
	}
}

func testRewrap(t *testing.T, s store.Store) {
	mustMerchant(t, s, "mer_a")
	c := ctx(t)
	for i, v := range []int{1, 1, 2, 3} {
		if err := s.InsertDEK(c, envelope.DEKRecord{ID: fmt.Sprintf("dek_%d", i), Wrapped: fmt.Sprintf("vault:v%d:w%d", v, i), KEKVersion: v, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", "fp", t0)
		r.DEKID = "dek_0"
		if err := s.CreateToken(c, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	page1, err := s.DEKsBelowVersion(c, 3, "", 2)
	if err != nil || len(page1) != 2 || page1[0].ID != "dek_0" || page1[1].ID != "dek_1" {
		t.Fatalf("page 1 = %+v, %v", page1, err)
	}
	page2, err := s.DEKsBelowVersion(c, 3, page1[1].ID, 2)
	if err != nil || len(page2) != 1 || page2[0].ID != "dek_2" {
		t.Fatalf("page 2 = %+v, %v", page2, err)
	}
	if err := s.RewrapDEK(c, "dek_0", "vault:v1:w0", "vault:v3:new", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.RewrapDEK(c, "dek_0", "vault:v1:w0", "vault:v3:again", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale compare-and-set: %v", err)
	}
	d, _ := s.GetDEK(c, "dek_0")
	if d.Wrapped != "vault:v3:new" || d.KEKVersion != 3 {
		t.Fatalf("after rewrap: %+v", d)
	}
	stats, err := s.KeyStats(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.KeyStat{{KEKVersion: 1, DEKs: 1}, {KEKVersion: 2, DEKs: 1}, {KEKVersion: 3, DEKs: 2, Tokens: 3}}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Fatalf("KeyStats = %v, want %v", stats, want)
	}
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
			if _, err := s.AppendAudit(c, []audit.Event{{At: t0, Actor: "test", Action: audit.ActionDetokenize, MerchantID: m, Token: fmt.Sprintf("tok_%d", i), DestinationHost: "acq.example"}}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	all, err := s.ListAudit(c, store.AuditFilter{})
	if err != nil || len(all) != 20 {
		t.Fatalf("ListAudit = %d events, %v", len(all), err)
	}
	var v audit.Verifier
	for _, e := range all {
		v.Add(e)
	}
	if len(v.Problems) != 0 {
		t.Fatalf("concurrent appends broke the chain: %v", v.Problems)
	}
	if seq, _ := v.Head(); seq != 20 {
		t.Fatalf("head seq %d", seq)
	}
	if h, err := s.AuditHead(c); err != nil || h.Seq != 20 || string(h.Hash) != string(all[19].Hash) {
		t.Fatalf("AuditHead = %d, %v", h.Seq, err)
	}
	b, _ := s.ListAudit(c, store.AuditFilter{MerchantID: "mer_b"})
	page, _ := s.ListAudit(c, store.AuditFilter{AfterSeq: 15, Limit: 3})
	one, _ := s.ListAudit(c, store.AuditFilter{Token: "tok_3"})
	if len(b) != 10 || len(page) != 3 || page[0].Seq != 16 || len(one) != 1 || one[0].DestinationHost != "acq.example" {
		t.Fatalf("filters: merchant %d, page %v, token %d", len(b), page, len(one))
	}
}

func testReencryptBookkeeping(t *testing.T, s store.Store) {
	c := ctx(t)
	mustMerchant(t, s, "mer_a")
	old, fresh := t0.Add(-48*time.Hour), t0
	for id, at := range map[string]time.Time{"dek_old": old, "dek_unused": old, "dek_new": fresh} {
		if err := s.InsertDEK(c, envelope.DEKRecord{ID: id, Wrapped: "w", KEKVersion: 1, CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	for i, dek := range []string{"dek_old", "dek_old", "dek_new"} {
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", "fp", t0)
		r.DEKID = dek
		if err := s.CreateToken(c, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.TokensUnderOldDEKs(c, t0.Add(-time.Hour), "", 10)
	if err != nil || len(got) != 2 || got[0].Token != "tok_0" || got[1].Token != "tok_1" {
		t.Fatalf("TokensUnderOldDEKs = %v, %v", got, err)
	}
	if err := s.ReplaceCiphertext(c, "tok_0", "dek_old", "dek_new", []byte("ct2")); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceCiphertext(c, "tok_0", "dek_old", "dek_new", []byte("ct3")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale compare-and-set: %v", err)
	}
	if r, _ := s.GetToken(c, "mer_a", "tok_0"); r.DEKID != "dek_new" || string(r.Ciphertext) != "ct2" {
		t.Fatalf("after replace: %+v", r)
	}
	n, err := s.DestroyDEKs(c, t0.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DestroyDEKs = %d, %v; want only the unused old DEK", n, err)
	}
	stats, _ := s.DEKStats(c)
	if len(stats) != 2 || stats[0].ID != "dek_old" || stats[0].Tokens != 1 || stats[1].ID != "dek_new" || stats[1].Tokens != 2 {
		t.Fatalf("DEKStats = %+v", stats)
	}
}

func testFingerprintVersions(t *testing.T, s store.Store) {
	c := ctx(t)
	mustMerchant(t, s, "mer_a")
	mustDEK(t, s, "dek_1")
	for i, v := range []int{0, 1, 2} { // 0: an old record written before versions (defaults to 1)
		r := token(fmt.Sprintf("tok_%d", i), "mer_a", fmt.Sprintf("fp_%d", i), t0)
		r.FingerprintVersion = v
		if err := s.CreateToken(c, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := s.GetToken(c, "mer_a", "tok_0"); r.FingerprintVersion != 1 {
		t.Fatalf("default fingerprint version %d", r.FingerprintVersion)
	}
	below, err := s.TokensWithFingerprintBelow(c, 2, "", 10)
	if err != nil || len(below) != 2 || below[0].Token != "tok_0" || below[1].Token != "tok_1" {
		t.Fatalf("TokensWithFingerprintBelow = %v, %v", below, err)
	}
	if err := s.UpdateFingerprint(c, "tok_0", "fp_0", "fp_0_v2", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateFingerprint(c, "tok_0", "fp_0", "fp_again", 2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale compare-and-set: %v", err)
	}
	if r, err := s.FindTokenByFingerprint(c, "mer_a", "fp_0_v2"); err != nil || r.Token != "tok_0" || r.FingerprintVersion != 2 {
		t.Fatalf("lookup by the rewritten fingerprint: %+v %v", r, err)
	}
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
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if created[i] {
			made++
		}
	}
	if c, _ := s.CountTokens(ctx(t)); made != 1 || c != 1 {
		t.Fatalf("%d created, %d stored; want exactly 1", made, c)
	}
}
