// Package revealbox seals revealed card data from vaultd to the one gateway
// request that asked for it. The gateway makes an ephemeral X25519 key pair
// (per Detokenize call, or per Keyring lifetime) and sends the public half;
// vaultd seals the card to it
// (X25519 → HKDF-SHA256 → XChaCha20-Poly1305, AAD binding merchant and token).
// So plaintext never appears in a protobuf message, where generated String()
// methods would print it, and a TLS-terminating hop sees only ciphertext.
// It handles card plaintext as opaque bytes. Keyring and Sealer reuse the
// key agreement for a bounded lifetime (see session.go).
package revealbox

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// KeySize is the size of an X25519 public key.
const KeySize = 32

// ErrOpen: the box does not open with this key and AAD.
var ErrOpen = errors.New("revealbox: cannot open")

// Recipient holds an ephemeral private key: for one call, or for the
// lifetime a Keyring gives it. It remembers the box keys it derived (per
// sender key), so boxes from a Sealer cost one agreement per lifetime. Safe
// for concurrent use.
type Recipient struct {
	priv *ecdh.PrivateKey
	pub  []byte
	mu   sync.Mutex
	keys map[string]cipher.AEAD
}

// NewRecipient makes an ephemeral key pair.
func NewRecipient() (*Recipient, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Recipient{priv: k, pub: k.PublicKey().Bytes(), keys: map[string]cipher.AEAD{}}, nil
}

// PublicKey is sent in the Detokenize request.
func (r *Recipient) PublicKey() []byte { return append([]byte(nil), r.pub...) }

func deriveKey(shared, ephPub, recipPub []byte) ([]byte, error) {
	salt := append(append([]byte{}, ephPub...), recipPub...)
	k := make([]byte, chacha20poly1305.KeySize)
	_, err := io.ReadFull(hkdf.New(sha256.New, shared, salt, []byte("obol-revealbox-v1")), k)
	return k, err
}

// Seal encrypts plaintext to recipientPub with a fresh ephemeral key.
// Output: ephPub | nonce | ciphertext.
func Seal(recipientPub, plaintext, aad []byte) ([]byte, error) {
	ephPub, aead, err := agree(recipientPub)
	if err != nil {
		return nil, err
	}
	return sealWith(ephPub, aead, plaintext, aad)
}

// Open decrypts a box sealed to r.
func (r *Recipient) Open(box, aad []byte) ([]byte, error) {
	if len(box) < KeySize+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrOpen
	}
	aead, err := r.aead(box[:KeySize])
	if err != nil {
		return nil, err
	}
	n := box[KeySize : KeySize+aead.NonceSize()]
	pt, err := aead.Open(nil, n, box[KeySize+aead.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// aead is the box key for a sender's ephemeral key, derived once.
func (r *Recipient) aead(ephPub []byte) (cipher.AEAD, error) {
	r.mu.Lock()
	a, ok := r.keys[string(ephPub)]
	r.mu.Unlock()
	if ok {
		return a, nil
	}
	ep, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, ErrOpen
	}
	shared, err := r.priv.ECDH(ep)
	if err != nil {
		return nil, ErrOpen
	}
	key, err := deriveKey(shared, ephPub, r.pub)
	clear(shared)
	if err != nil {
		return nil, err
	}
	a, err = chacha20poly1305.NewX(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.keys) >= maxKeys {
		clear(r.keys)
	}
	r.keys[string(ephPub)] = a
	r.mu.Unlock()
	return a, nil
}

// AAD binds a box to merchant and token.
func AAD(merchantID, token string) []byte {
	return []byte("obol-reveal\x00" + merchantID + "\x00" + token)
}
