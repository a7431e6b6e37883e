// Package apikey generates, parses and hashes merchant API keys:
// secret keys (sk_test_…/sk_live_…) that may do everything, and publishable
// keys (pk_test_…/pk_live_…) that may only tokenize from a checkout page.
// Keys carry 256 bits of randomness; only their SHA-256 hash is stored.
// PAN-free.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// Kinds and modes.
const (
	Secret      = "secret"
	Publishable = "publishable"
	Test        = "test"
	Live        = "live"
)

// ErrMalformed: not an Obol API key.
var ErrMalformed = errors.New("malformed API key")

// Generate returns a new key, its hash and a display prefix.
func Generate(kind, mode string) (key string, hash []byte, prefix string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("apikey: crypto/rand failed: " + err.Error())
	}
	p := "sk_"
	if kind == Publishable {
		p = "pk_"
	}
	key = p + mode + "_" + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Hash(key), Prefix(key)
}

// Hash is the stored form of a key.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// Prefix is a short, non-secret label for a key (kind, mode, 4 characters).
func Prefix(key string) string {
	if len(key) < 12 {
		return ""
	}
	return key[:12]
}

// FromBearer extracts a key from an Authorization value "Bearer <key>".
func FromBearer(h string) (string, error) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", ErrMalformed
	}
	key = strings.TrimSpace(key)
	if !(strings.HasPrefix(key, "sk_") || strings.HasPrefix(key, "pk_")) || len(key) > 128 {
		return "", ErrMalformed
	}
	return key, nil
}

// KindOf returns Secret or Publishable from a key's prefix.
func KindOf(key string) string {
	if strings.HasPrefix(key, "pk_") {
		return Publishable
	}
	return Secret
}
