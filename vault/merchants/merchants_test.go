package merchants_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/sqlite"
)

func TestCreate(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"))
	require.NoError(t, err)
	defer st.Close()
	tests := []struct {
		name, mode, prefix string
	}{
		{"test mode", apikey.Test, "sk_test_"},
		{"live mode", apikey.Live, "sk_live_"},
		{"anything else is test mode", "prod", "sk_test_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := merchants.Create(ctx, st, "Shop", []string{"https://shop.example"}, tt.mode)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(k.MerchantID, "mer_"), k.MerchantID)
			assert.True(t, strings.HasPrefix(k.SecretKey, tt.prefix), "secret key prefix")
			assert.True(t, strings.HasPrefix(k.PublishableKey, "pk_"), "publishable key prefix")
			m, err := st.GetMerchant(ctx, k.MerchantID)
			require.NoError(t, err)
			assert.Equal(t, "Shop", m.Name)
			assert.Equal(t, []string{"https://shop.example"}, m.AllowedOrigins)
			for key, kind := range map[string]string{k.SecretKey: store.KeySecret, k.PublishableKey: store.KeyPublishable} {
				got, err := st.LookupAPIKey(ctx, apikey.Hash(key))
				require.NoError(t, err, "the key is stored by its hash")
				assert.Equal(t, kind, got.Kind)
				assert.Equal(t, k.MerchantID, got.MerchantID)
			}
		})
	}
}
