// Package keystest sets up the key jobs' tests (reencrypt, refingerprint):
// the embedded default's real keyring and SQLite store, and test cards
// sealed into it. Test-only: its numbers are the simulator's test cards
// (proxy/simulator/TESTCARDS.md).
package keystest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/localkms"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/sqlite"
)

// Open opens a fresh keyring and SQLite vault store in t's temporary
// directories; the store is closed when t ends.
func Open(t *testing.T) (*localkms.Keyring, *sqlite.Store) {
	t.Helper()
	kms, err := localkms.Open(filepath.Join(t.TempDir(), "keyring"))
	require.NoError(t, err)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return kms, st
}

// StoreCard seals the test card number (expiring 12/2034) as merchant's
// token tok with env and stores it with fingerprint fp of fpVersion,
// created at.
func StoreCard(t *testing.T, env *envelope.Envelope, st *sqlite.Store, merchant, tok, number, fp string, fpVersion int, at time.Time) {
	t.Helper()
	ctx := context.Background()
	pan, err := card.ParseNumber(number)
	require.NoError(t, err)
	plain := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2034})
	dek, ct, err := env.Seal(ctx, envelope.AAD{Purpose: "card", Merchant: merchant, Token: tok}, plain)
	clear(plain)
	require.NoError(t, err)
	require.NoError(t, st.CreateToken(ctx, store.TokenRecord{Token: tok, MerchantID: merchant, DEKID: dek, Ciphertext: ct, Brand: "visa", Last4: number[len(number)-4:],
		ExpMonth: 12, ExpYear: 2034, Fingerprint: fp, FingerprintVersion: fpVersion, CreatedAt: at}, nil))
}
