// Package webhook holds the Standard Webhooks side of eventsd: endpoint
// secrets (whsec_…) and their sealing at rest, signatures, URL validation
// with SSRF protection, and the HTTP sender. Outside PCI scope.
package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every endpoint secret.
const SecretPrefix = "whsec_"

// NewSecret returns a fresh endpoint secret: whsec_ and the base64 of 32
// random bytes (the signing key).
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// ErrSecret: the secret is not whsec_ followed by base64.
var ErrSecret = errors.New("webhook secret must be whsec_ followed by base64")

// SecretKey returns the signing key of a secret (the base64-decoded part
// after whsec_).
func SecretKey(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrSecret
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) == 0 {
		return nil, ErrSecret
	}
	return key, nil
}

// Sign returns the v1 signature of a message: base64 of HMAC-SHA256 over
// "<id>.<timestamp>.<body>" keyed by the secret's key.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte("."))
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignatureHeader is the webhook-signature value: one v1 signature per key,
// space-separated (two during a secret rotation's overlap).
func SignatureHeader(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// Verify checks a webhook-signature header against a secret, with the
// timestamp within tolerance of now (the receivers' check; obol listen and
// the tests use it).
func Verify(secret, id, timestamp, header string, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := SecretKey(secret)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != timestamp {
		return errors.New("webhook-timestamp is not a Unix time in seconds")
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp is too old or too new")
	}
	want := Sign(key, id, ts, body)
	for _, sig := range strings.Fields(header) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// Sealer encrypts endpoint secrets at rest (AES-256-GCM; the endpoint id
// is the additional data, so a sealed secret cannot be moved to another
// endpoint).
type Sealer struct{ aead cipher.AEAD }

// NewSealer takes a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the secret-sealing key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts secret for endpoint id.
func (s *Sealer) Seal(id, secret string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return "v1:" + base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), []byte(id)))
}

// ErrSealed: a sealed secret does not open (wrong key or tampered).
var ErrSealed = errors.New("sealed webhook secret does not open (wrong OBOL_EVENTS_SEAL_KEY?)")

// Open decrypts a sealed secret of endpoint id.
func (s *Sealer) Open(id, sealed string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, "v1:")
	if !ok {
		return "", ErrSealed
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", ErrSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(id))
	if err != nil {
		return "", ErrSealed
	}
	return string(plain), nil
}
