// Package revealbox seals revealed card data from vaultd to the one gateway
// request that asked for it. The gateway makes an ephemeral X25519 key pair
// per Detokenize call and sends the public half; vaultd seals the card to it
// (X25519 → HKDF-SHA256 → XChaCha20-Poly1305, AAD binding merchant and token).
// So plaintext never appears in a protobuf message, where generated String()
// methods would print it, and a TLS-terminating hop sees only ciphertext.
// It handles card plaintext as opaque bytes.
package revealbox

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// KeySize is the size of an X25519 public key.
const KeySize = 32

// ErrOpen: the box does not open with this key and AAD.
var ErrOpen = errors.New("revealbox: cannot open")

// Recipient holds an ephemeral private key; use it for one call.
type Recipient struct {
	priv *ecdh.PrivateKey
}

// NewRecipient makes an ephemeral key pair.
func NewRecipient() (*Recipient, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Recipient{priv: k}, nil
}

// PublicKey is sent in the Detokenize request.
func (r *Recipient) PublicKey() []byte { return r.priv.PublicKey().Bytes() }

func deriveKey(shared, ephPub, recipPub []byte) ([]byte, error) {
	salt := append(append([]byte{}, ephPub...), recipPub...)
	k := make([]byte, chacha20poly1305.KeySize)
	_, err := io.ReadFull(hkdf.New(sha256.New, shared, salt, []byte("obol-revealbox-v1")), k)
	return k, err
}

// Seal encrypts plaintext to recipientPub. Output: ephPub | nonce | ciphertext.
func Seal(recipientPub, plaintext, aad []byte) ([]byte, error) {
	rp, err := ecdh.X25519().NewPublicKey(recipientPub)
	if err != nil {
		return nil, fmt.Errorf("revealbox: recipient key: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(rp)
	if err != nil {
		return nil, fmt.Errorf("revealbox: %w", err)
	}
	key, err := deriveKey(shared, eph.PublicKey().Bytes(), recipientPub)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, KeySize+aead.NonceSize(), KeySize+aead.NonceSize()+len(plaintext)+aead.Overhead())
	copy(out, eph.PublicKey().Bytes())
	if _, err := rand.Read(out[KeySize:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[KeySize:KeySize+aead.NonceSize()], plaintext, aad), nil
}

// Open decrypts a box sealed to r.
func (r *Recipient) Open(box, aad []byte) ([]byte, error) {
	if len(box) < KeySize+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrOpen
	}
	ep, err := ecdh.X25519().NewPublicKey(box[:KeySize])
	if err != nil {
		return nil, ErrOpen
	}
	shared, err := r.priv.ECDH(ep)
	if err != nil {
		return nil, ErrOpen
	}
	key, err := deriveKey(shared, box[:KeySize], r.PublicKey())
	if err != nil {
		return nil, err
	}
	aead, _ := chacha20poly1305.NewX(key)
	n := box[KeySize : KeySize+aead.NonceSize()]
	pt, err := aead.Open(nil, n, box[KeySize+aead.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// AAD binds a box to merchant and token.
func AAD(merchantID, token string) []byte {
	return []byte("obol-reveal\x00" + merchantID + "\x00" + token)
}
