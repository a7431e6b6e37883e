package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileState(t *testing.T) {
	ctx := context.Background()
	t.Run("round trip", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "risk-state.json")
		st, err := OpenFileState(path, 10)
		require.NoError(t, err)
		at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		require.NoError(t, st.PutRuleSet(ctx, RuleSetRecord{Version: "rs_1", YAML: "rules: []\n", Source: "api", Rules: 0, CreatedAt: at}))
		require.NoError(t, st.PutRuleSet(ctx, RuleSetRecord{Version: "rs_2", YAML: "rules: [x]\n", Source: "api", Rules: 1, CreatedAt: at}))
		require.NoError(t, st.AddToList(ctx, "block_ips", []string{"203.0.113.9", "203.0.113.10"}))
		require.NoError(t, st.RemoveFromList(ctx, "block_ips", []string{"203.0.113.10"}))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

		again, err := OpenFileState(path, 10)
		require.NoError(t, err)
		active, err := again.ActiveRuleSet(ctx)
		require.NoError(t, err)
		assert.Equal(t, RuleSetRecord{Version: "rs_2", YAML: "rules: [x]\n", Source: "api", Rules: 1, CreatedAt: at}, active)
		hist, err := again.ListRuleSets(ctx, 10)
		require.NoError(t, err)
		require.Len(t, hist, 2)
		assert.Equal(t, "rs_1", hist[1].Version)
		lists, err := again.Lists(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string][]string{"block_ips": {"203.0.113.9"}}, lists)
	})
	t.Run("a change that cannot be saved is undone", func(t *testing.T) {
		st, err := OpenFileState(filepath.Join(t.TempDir(), "gone", "risk-state.json"), 10)
		require.NoError(t, err)
		assert.Error(t, st.AddToList(ctx, "block_ips", []string{"203.0.113.9"}))
		lists, _ := st.Lists(ctx)
		assert.Empty(t, lists)
		assert.Error(t, st.PutRuleSet(ctx, RuleSetRecord{Version: "rs_1", YAML: "rules: []\n"}))
		_, err = st.ActiveRuleSet(ctx)
		assert.ErrorIs(t, err, ErrNotFound)
	})
	t.Run("a corrupt file is an error, not an empty state", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "risk-state.json")
		require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
		_, err := OpenFileState(path, 10)
		assert.ErrorContains(t, err, path)
	})
}
