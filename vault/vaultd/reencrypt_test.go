package vaultd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/vaultd"
)

// TestReencrypt: two days after the cards were tokenized (simulated with
// vaultd stopped, by moving the DEKs' creation time back), the job re-seals
// every card under a new DEK and destroys the DEKs that then protect
// nothing; vaultd starts again and every card still detokenizes. DEKs too
// young to destroy safely are kept.
func TestReencrypt(t *testing.T) {
	s := newStack(t, stackOpts{dekMaxUses: 3})
	ctx := context.Background()
	var toks []string
	for _, n := range []string{"4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "3566002020360505", "6200000000000005", "2223003122003222"} {
		r := s.tokenize(s.a.SecretKey, cardIn(n, 12, expYear, ""))
		if r.status != 200 {
			t.Fatalf("tokenize: %s", r.raw)
		}
		toks = append(toks, r.str("token"))
	}
	before, _ := s.in.Store.DEKStats(ctx)
	if len(before) < 3 {
		t.Fatalf("want several DEKs (max 3 uses each), got %d", len(before))
	}
	kms, err := transit.New(s.cfg.Vault)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("young DEKs are not destroyed", func(t *testing.T) {
		res, err := vaultd.Reencrypt(ctx, envelope.New(kms, s.in.Store, envelope.Config{}), s.in.Store, vaultd.ReencryptOptions{OlderThan: time.Nanosecond, Destroy: true}, nil)
		if err != nil || res.Destroyed != 0 {
			t.Fatalf("%+v %v: DEKs younger than the margin must survive", res, err)
		}
	})
	s.stop()
	db, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `UPDATE deks SET created_at = created_at - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	// The job runs on its own connection, as `obol keys reencrypt` does.
	st, err := postgres.Open(ctx, s.dbURL, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deks, _ := st.DEKStats(ctx)
	res, err := vaultd.Reencrypt(ctx, envelope.New(kms, st, envelope.Config{}), st, vaultd.ReencryptOptions{OlderThan: 24 * time.Hour, Destroy: true, Batch: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reencrypted != len(toks) || res.Destroyed != int64(len(deks)) {
		t.Fatalf("result %+v; want %d re-encrypted and %d DEKs destroyed", res, len(toks), len(deks))
	}
	after, _ := st.DEKStats(ctx)
	if len(after) != 1 || after[0].Tokens != int64(len(toks)) {
		t.Fatalf("DEKs after: %+v", after)
	}
	s.start()
	for _, tok := range toks {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		if err != nil {
			t.Fatalf("%s after re-encryption: %v", tok, err)
		}
		c.Wipe()
	}
	again, err := vaultd.Reencrypt(ctx, envelope.New(kms, s.in.Store, envelope.Config{}), s.in.Store, vaultd.ReencryptOptions{OlderThan: 24 * time.Hour}, nil)
	if err != nil || again.Reencrypted != 0 {
		t.Fatalf("second run: %+v %v; want nothing left to do", again, err)
	}
}

// TestBackgroundReencrypt: with OBOL_REENCRYPT_OLDER_THAN set, vaultd itself
// re-seals cards under old DEKs and destroys them, after a restart that
// (like two days passing) finds the DEKs old.
func TestBackgroundReencrypt(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	var toks []string
	for _, n := range []string{"4242424242424242", "5555555555554444", "378282246310005"} {
		toks = append(toks, s.tokenize(s.a.SecretKey, cardIn(n, 12, expYear, "")).str("token"))
	}
	s.stop()
	db, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `UPDATE deks SET created_at = created_at - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	s.cfg.ReencryptOlderThan, s.cfg.ReencryptEvery = 24*time.Hour, 50*time.Millisecond
	s.start()
	if err := testenv.WaitFor(20*time.Second, func() error {
		var old int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM deks WHERE created_at < now() - interval '1 day'`).Scan(&old); err != nil {
			return err
		}
		if old > 0 {
			return fmt.Errorf("%d old DEKs left", old)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, s.logs.Bytes())
	}
	for _, tok := range toks {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		if err != nil {
			t.Fatalf("%s: %v", tok, err)
		}
		c.Wipe()
	}
	t.Run("rejects a window shorter than the DEK lifetime", func(t *testing.T) {
		cfg := s.cfg
		cfg.ReencryptOlderThan = 30 * time.Minute
		if _, err := vaultd.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "OBOL_REENCRYPT_OLDER_THAN") {
			t.Fatalf("err = %v", err)
		}
	})
}
