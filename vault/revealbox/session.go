package revealbox

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key reuse. The X25519 agreement is the costly part of a box (four scalar
// multiplications per reveal: a key pair on each side and one agreement on
// each side). Within a bounded lifetime both sides reuse it: the gateway
// sends the same recipient key (Keyring) and vaultd seals every box for
// that key under the same ephemeral key (Sealer), so the derived
// XChaCha20-Poly1305 key is the same and only the 192-bit random nonce
// differs per box. The box format does not change: a caller with a fresh
// key per call still works. A box never opens for another request: its AAD
// names the request's random nonce (RequestAAD), so reusing the key does
// not let one reveal's box be handed to another (for gateways that send no
// nonce, vaultd falls back to AAD, which names merchant and token only).
// What the reuse gives up is per-call key separation:
// whoever obtains a recipient private key opens the boxes sealed to it in
// its lifetime (DefaultLifetime), not one box only; that key lives only in
// the gateway's memory, which holds those cards anyway while it forwards
// them.

// DefaultLifetime bounds how long a recipient key (gateway) or an ephemeral
// sealing key (vaultd) serves.
const DefaultLifetime = time.Minute

// maxKeys bounds the keys a Sealer or a Recipient remembers; past it they
// forget them all (the next box pays one agreement again).
const maxKeys = 1024

type sealKey struct {
	ephPub  []byte
	aead    cipher.AEAD
	expires time.Time
}

// Sealer seals boxes, reusing one ephemeral key per recipient key for
// Lifetime. Safe for concurrent use.
type Sealer struct {
	lifetime time.Duration
	now      func() time.Time
	mu       sync.Mutex
	keys     map[string]sealKey
}

// NewSealer returns a Sealer; lifetime <= 0 means DefaultLifetime, a nil
// now means time.Now.
func NewSealer(lifetime time.Duration, now func() time.Time) *Sealer {
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	if now == nil {
		now = time.Now
	}
	return &Sealer{lifetime: lifetime, now: now, keys: map[string]sealKey{}}
}

// Seal encrypts plaintext to recipientPub, as the package's Seal does.
func (s *Sealer) Seal(recipientPub, plaintext, aad []byte) ([]byte, error) {
	k, err := s.key(recipientPub)
	if err != nil {
		return nil, err
	}
	return sealWith(k.ephPub, k.aead, plaintext, aad)
}

func (s *Sealer) key(recipientPub []byte) (sealKey, error) {
	now := s.now()
	s.mu.Lock()
	k, ok := s.keys[string(recipientPub)]
	s.mu.Unlock()
	if ok && now.Before(k.expires) {
		return k, nil
	}
	ephPub, aead, err := agree(recipientPub)
	if err != nil {
		return sealKey{}, err
	}
	k = sealKey{ephPub: ephPub, aead: aead, expires: now.Add(s.lifetime)}
	s.mu.Lock()
	if len(s.keys) >= maxKeys {
		clear(s.keys)
	}
	s.keys[string(recipientPub)] = k
	s.mu.Unlock()
	return k, nil
}

// agree makes an ephemeral key pair and derives the box key for recipientPub.
func agree(recipientPub []byte) ([]byte, cipher.AEAD, error) {
	rp, err := ecdh.X25519().NewPublicKey(recipientPub)
	if err != nil {
		return nil, nil, fmt.Errorf("revealbox: recipient key: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	shared, err := eph.ECDH(rp)
	if err != nil {
		return nil, nil, fmt.Errorf("revealbox: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	key, err := deriveKey(shared, ephPub, recipientPub)
	clear(shared)
	if err != nil {
		return nil, nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	clear(key)
	if err != nil {
		return nil, nil, err
	}
	return ephPub, aead, nil
}

func sealWith(ephPub []byte, aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, KeySize+aead.NonceSize(), KeySize+aead.NonceSize()+len(plaintext)+aead.Overhead())
	copy(out, ephPub)
	if _, err := rand.Read(out[KeySize:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[KeySize:KeySize+aead.NonceSize()], plaintext, aad), nil
}

// Keyring hands the gateway its current recipient key, a new one after
// Lifetime. Safe for concurrent use.
type Keyring struct {
	lifetime time.Duration
	now      func() time.Time
	mu       sync.Mutex
	cur      *Recipient
	expires  time.Time
}

// NewKeyring returns a Keyring; lifetime <= 0 means DefaultLifetime, a nil
// now means time.Now.
func NewKeyring(lifetime time.Duration, now func() time.Time) *Keyring {
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	if now == nil {
		now = time.Now
	}
	return &Keyring{lifetime: lifetime, now: now}
}

// Current is the recipient key to send now; open the answer with the same
// Recipient (it stays usable after the Keyring moved on).
func (k *Keyring) Current() (*Recipient, error) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur != nil && now.Before(k.expires) {
		return k.cur, nil
	}
	r, err := NewRecipient()
	if err != nil {
		return nil, err
	}
	k.cur, k.expires = r, now.Add(k.lifetime)
	return r, nil
}
