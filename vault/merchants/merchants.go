// Package merchants is `obol merchants create`: a merchant of the vault
// with one secret and one publishable API key, stored hashed; the keys are
// shown once. PAN-free. PCI zone (the vault's store).
package merchants

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
)

// Keys are a new merchant's credentials; the keys are shown once.
type Keys struct {
	MerchantID     string `json:"merchant_id"`
	SecretKey      string `json:"secret_key"`
	PublishableKey string `json:"publishable_key"`
}

// Create creates a merchant with one secret and one publishable key, in
// mode apikey.Live or apikey.Test (anything else is test).
func Create(ctx context.Context, st store.Store, name string, origins []string, mode string) (Keys, error) {
	if mode != apikey.Live {
		mode = apikey.Test
	}
	id, err := envelope.RandomID(rand.Reader, "mer_")
	if err != nil {
		return Keys{}, err
	}
	now := time.Now().UTC()
	sk, skHash, skPrefix := apikey.Generate(apikey.Secret, mode)
	pk, pkHash, pkPrefix := apikey.Generate(apikey.Publishable, mode)
	err = st.CreateMerchant(ctx, store.Merchant{ID: id, Name: name, AllowedOrigins: origins, CreatedAt: now}, []store.APIKey{
		{Hash: skHash, Prefix: skPrefix, Kind: store.KeySecret, CreatedAt: now},
		{Hash: pkHash, Prefix: pkPrefix, Kind: store.KeyPublishable, CreatedAt: now},
	})
	if err != nil {
		return Keys{}, fmt.Errorf("create merchant: %w", err)
	}
	return Keys{MerchantID: id, SecretKey: sk, PublishableKey: pk}, nil
}
