//go:build unix

package migrate

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenSQLiteOwnerOnly: the embedded default's database files (tokens,
// payments, ledgers) are the owner's only. They used to be created under
// the umask, 0644: readable by every local user.
func TestOpenSQLiteOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	migrations := fstest.MapFS{"m/0001_t.sql": {Data: []byte("CREATE TABLE t (v text);")}}
	check := func(t *testing.T, path string) {
		t.Helper()
		db, err := OpenSQLite(context.Background(), path, migrations, "m")
		require.NoError(t, err)
		defer db.Close()
		_, err = db.Exec(`INSERT INTO t (v) VALUES ('x')`)
		require.NoError(t, err)
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			require.NoError(t, err, p)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), p)
		}
	}
	t.Run("new file", func(t *testing.T) {
		check(t, filepath.Join(t.TempDir(), "new.db"))
	})
	t.Run("a file left 0644 is tightened", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "old.db")
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			require.NoError(t, os.WriteFile(p, nil, 0o644))
		}
		check(t, path)
	})
}
