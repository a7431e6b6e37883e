package vaultd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/vaultd"
)

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
	require.NoError(t, err)
	defer db.Close(ctx)
	_, err = db.Exec(ctx, `UPDATE deks SET created_at = created_at - interval '2 days'`)
	require.NoError(t, err)
	s.cfg.ReencryptOlderThan, s.cfg.ReencryptEvery = 24*time.Hour, 50*time.Millisecond
	s.start()
	require.NoErrorf(t, testenv.WaitFor(20*time.Second, func() error {
		var old int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM deks WHERE created_at < now() - interval '1 day'`).Scan(&old); err != nil {
			return err
		}
		if old > 0 {
			return fmt.Errorf("%d old DEKs left", old)
		}
		return nil
	}), "%s", s.logs.Bytes())
	for _, tok := range toks {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		require.NoErrorf(t, err, "%s: %v", tok, err)
		c.Wipe()
	}
	t.Run("rejects a window shorter than the DEK lifetime", func(t *testing.T) {
		cfg := s.cfg
		cfg.ReencryptOlderThan = 30 * time.Minute
		_, err := vaultd.Start(ctx, cfg)
		require.NotNilf(t, err, "err = %v", err)
		require.Truef(t, strings.Contains(err.Error(), "OBOL_REENCRYPT_OLDER_THAN"), "err = %v", err)
	})
}
