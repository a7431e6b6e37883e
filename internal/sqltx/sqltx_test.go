package sqltx_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/obolpay/obol/internal/sqltx"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, `CREATE TABLE t (v INTEGER)`)
	require.NoError(t, err)
	insert := func(v int) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, v)
			return err
		}
	}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(*sql.Tx) error
		wantErr error
		want    int
	}{
		{"nil commits", insert(1), nil, 1},
		{"an error rolls back", func(tx *sql.Tx) error { _ = insert(2)(tx); return boom }, boom, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sqltx.Run(ctx, db, tt.fn)
			assert.ErrorIs(t, err, tt.wantErr)
			var n int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n))
			assert.Equal(t, tt.want, n)
		})
	}
}
