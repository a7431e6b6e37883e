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

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/testenv"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
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

// TestReadVerbsRunNoDDL: obol ledger verify and obol gateway outbox read
// (and requeue in) a production database; opening it applied pending
// migrations, so a newer obol moved the schema ahead of the running
// daemons as a side effect of a check. They now run no DDL: on a schema
// behind them they refuse, naming obol migrate, and change nothing; on an
// up-to-date schema they run as a role that may only read.
func TestReadVerbsRunNoDDL(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	pg := testenv.SharedPostgres(t)
	cases := []struct {
		name    string
		migrate func(context.Context, string) error
		verb    []string
	}{
		{"ledger verify", ledgerpg.MigrateURL, []string{"ledger", "verify"}},
		{"gateway outbox list", paypg.MigrateURL, []string{"gateway", "outbox", "list"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			url := pg.NewDatabase(t, strings.ReplaceAll(tt.name, " ", "_"), tt.migrate)
			var out bytes.Buffer
			require.NoError(t, run(ctx, append(tt.verb, "--postgres-url", readOnlyRole(t, url)), &out), "%s", out.String())

			conn, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
			require.NoError(t, err)
			err = run(ctx, append(tt.verb, "--postgres-url", url), &out)
			require.ErrorIs(t, err, migrate.ErrSchemaBehind, "a schema behind is refused, not migrated")
			var n int
			require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n))
			var want int
			require.NoError(t, conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&want))
			assert.Equal(t, want, n, "nothing applied")
		})
	}
}

// readOnlyRole makes a role that may read every table of the database at
// url and nothing else, and returns url as that role.
func readOnlyRole(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "obol_reader_" + hex.EncodeToString(b[:])
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	for _, q := range []string{"CREATE ROLE " + role + " LOGIN", "GRANT CONNECT ON DATABASE " + cfg.Database + " TO " + role, "GRANT USAGE ON SCHEMA public TO " + role, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + role} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		conn.Close(ctx)
	})
	return strings.Replace(url, "://"+cfg.User+"@", "://"+role+"@", 1)
}

// TestMigrateAutoWithoutDDLRightsSaysWhatToDo: a daemon left on migrate
// auto under a role without DDL rights stopped with PostgreSQL's bare
// "permission denied for schema public"; the error now says to run obol
// migrate as the owner and start with --migrate=off.
func TestMigrateAutoWithoutDDLRightsSaysWhatToDo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	url := readOnlyRole(t, emptyDB(t))
	_, err := ledgerpg.OpenMode(ctx, url, migrate.Auto)
	require.ErrorIs(t, err, migrate.ErrNoDDLRights)
	assert.ErrorContains(t, err, "obol migrate")
	assert.ErrorContains(t, err, "permission denied", "PostgreSQL's own error is kept")
	err = run(ctx, []string{"migrate", "ledger", "--postgres-url", url}, &bytes.Buffer{})
	require.ErrorIs(t, err, migrate.ErrNoDDLRights, "obol migrate as a role without DDL rights says so too")
}
