package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
)

// TestAuditVerbsAsAuditorRole: obol audit list and verify run as the role
// policies/postgres/obol-auditor.sql makes, as that file says ("Used with:
// obol audit list|verify --postgres-url postgres://obol_auditor@…"). They
// did not: opening the vault database ran its migrations, and the
// auditor, rightly without DDL rights, got "migrate: permission denied for
// schema public". The audit verbs now run no DDL (migrate off), and the
// role may read the schema's version.
func TestAuditVerbsAsAuditorRole(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	pg := testenv.SharedPostgres(t)
	url := pg.NewDatabase(t, "vault", vaultpg.MigrateURL)
	sqlText, err := os.ReadFile("../../policies/postgres/obol-auditor.sql")
	require.NoError(t, err)
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "obol_auditor_" + hex.EncodeToString(b[:])
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	sqlText = []byte(strings.NewReplacer("obol_auditor", role, "obol_vault", cfg.Database).Replace(string(sqlText)))
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, string(sqlText))
	require.NoError(t, err, "the policy file applies as the owner")
	t.Cleanup(func() {
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		conn.Close(ctx)
	})
	auditorURL := strings.Replace(url, "://"+cfg.User+"@", "://"+role+"@", 1)
	require.NotEqual(t, url, auditorURL)

	for _, verb := range [][]string{{"audit", "list"}, {"audit", "verify"}} {
		t.Run(strings.Join(verb, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(ctx, append(verb, "--postgres-url", auditorURL), &out)
			require.NoError(t, err, "%s", out.String())
		})
	}
	t.Run("the auditor still reads no cards", func(t *testing.T) {
		ac, err := pgx.Connect(ctx, auditorURL)
		require.NoError(t, err)
		defer ac.Close(ctx)
		var n int
		err = ac.QueryRow(ctx, "SELECT count(*) FROM tokens").Scan(&n)
		assert.ErrorContains(t, err, "permission denied")
	})
}
