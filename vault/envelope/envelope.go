// Package envelope implements Obol's envelope encryption: data-encryption keys
// (DEKs) are generated and wrapped by a key manager (Vault transit in
// production), held in plaintext in memory only, bounded by age and use
// count, and used to seal card data with XChaCha20-Poly1305. The AAD binds
// every ciphertext to its purpose, merchant, token and DEK, so a ciphertext
// moved to another row does not open. It also derives per-merchant keys for
// fingerprints and idempotency hashes from a key-manager-held secret.
//
// This package handles plaintext card bytes given to it, but never parses or
// logs them.
package envelope

import (
	"container/list"
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
	"golang.org/x/sync/singleflight"
)

// DataKey is a freshly generated DEK: the plaintext (32 bytes) and its form
// wrapped under the key manager's KEK.
type DataKey struct {
	Plaintext  []byte
	Wrapped    string
	KEKVersion int
}

// KeyManager wraps and unwraps data keys under a KEK it never reveals.
type KeyManager interface {
	GenerateDataKey(ctx context.Context) (DataKey, error)
	UnwrapDataKey(ctx context.Context, wrapped string) ([]byte, error)
	// FingerprintSecret returns a version of the root secret for
	// per-merchant HMAC keys (version 0: the latest) and its version number.
	FingerprintSecret(ctx context.Context, version int) ([]byte, int, error)
}

// DEKRecord is a wrapped DEK as stored next to the ciphertexts it protects.
type DEKRecord struct {
	ID         string
	Wrapped    string
	KEKVersion int
	CreatedAt  time.Time
}

// DEKStore persists wrapped DEKs.
type DEKStore interface {
	InsertDEK(ctx context.Context, d DEKRecord) error
	GetDEK(ctx context.Context, id string) (DEKRecord, error)
}

// Errors.
var (
	// ErrKeyManager wraps any failure of the key manager (sealed, down, denied).
	ErrKeyManager = errors.New("key manager unavailable")
	// ErrOpen: the ciphertext does not authenticate under its DEK and AAD.
	ErrOpen = errors.New("ciphertext failed authentication")
	// ErrStore wraps a failure to read or write DEK records.
	ErrStore = errors.New("dek store unavailable")
)

// Config bounds DEK lifetime and the decryption cache.
type Config struct {
	// MaxAge retires the current encryption DEK after this long (default 1h).
	MaxAge time.Duration
	// MaxUses retires the current encryption DEK after this many seals (default 1,000,000).
	MaxUses int64
	// CacheSize bounds how many unwrapped DEKs are kept for decryption (default 1024).
	CacheSize int
	// CacheTTL evicts an unwrapped DEK this long after it was loaded (default 1h).
	CacheTTL time.Duration
	// Rand is the randomness source (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.MaxAge <= 0 {
		c.MaxAge = time.Hour
	}
	if c.MaxUses <= 0 {
		c.MaxUses = 1_000_000
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 1024
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = time.Hour
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

type dek struct {
	id        string
	key       []byte
	kekVer    int
	createdAt time.Time
	loadedAt  time.Time
	uses      atomic.Int64
	wiped     bool // guarded by Envelope.mu
}

// Stats are counters for metrics.
type Stats struct {
	DEKsGenerated, DEKsUnwrapped, CacheHits, CacheMisses atomic.Int64
}

// Envelope seals and opens card data under cached DEKs.
type Envelope struct {
	km    KeyManager
	store DEKStore
	cfg   Config
	sf    singleflight.Group

	mu      sync.Mutex
	current *dek
	cache   map[string]*list.Element // id -> *dek in lru
	lru     *list.List
	epoch   uint64 // bumped by Purge; a DEK created before a purge is not cached
	// minKEK: DEKs wrapped below this KEK version never become current (a
	// data key generated just before a rotation is used once, not reused).
	minKEK int

	fpMu      sync.RWMutex
	fpLatest  int            // latest fingerprint secret version (0: not loaded)
	fpSecrets map[int][]byte // by version
	fpKeys    map[string][]byte

	Stats Stats
}

// New returns an Envelope. It does not contact the key manager.
func New(km KeyManager, store DEKStore, cfg Config) *Envelope {
	cfg.defaults()
	return &Envelope{km: km, store: store, cfg: cfg, cache: map[string]*list.Element{}, lru: list.New(), fpKeys: map[string][]byte{}, fpSecrets: map[int][]byte{}}
}

// AAD names what a ciphertext is bound to.
type AAD struct {
	Purpose  string // "card" or "cvc"
	Merchant string
	Token    string
}

func (a AAD) bytes(dekID string) []byte {
	return []byte("obol/v1\x00" + a.Purpose + "\x00" + a.Merchant + "\x00" + a.Token + "\x00" + dekID)
}

const (
	formatV1  = 1
	nonceSize = chacha20poly1305.NonceSizeX
)

// Seal encrypts plaintext under the current DEK, creating one (one key-manager
// round trip) when none is current. It returns the DEK id and the ciphertext.
func (e *Envelope) Seal(ctx context.Context, aad AAD, plaintext []byte) (string, []byte, error) {
	var d *dek
	var aead cipher.AEAD
	for attempt := 0; aead == nil; attempt++ {
		var err error
		if d, err = e.currentDEK(ctx); err != nil {
			return "", nil, err
		}
		if aead, err = e.aeadFor(d); err != nil {
			return "", nil, err
		}
		if aead == nil && attempt == 2 {
			return "", nil, fmt.Errorf("%w: data keys purged while sealing", ErrKeyManager)
		}
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+aead.Overhead())
	out[0] = formatV1
	if _, err := io.ReadFull(e.cfg.Rand, out[1:]); err != nil {
		return "", nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out = aead.Seal(out, out[1:1+nonceSize], plaintext, aad.bytes(d.id))
	return d.id, out, nil
}

// Open decrypts a ciphertext sealed under DEK dekID for aad.
func (e *Envelope) Open(ctx context.Context, dekID string, aad AAD, ct []byte) ([]byte, error) {
	if len(ct) < 1+nonceSize || ct[0] != formatV1 {
		return nil, ErrOpen
	}
	var aead cipher.AEAD
	for attempt := 0; aead == nil; attempt++ {
		d, err := e.dekByID(ctx, dekID)
		if err != nil {
			return nil, err
		}
		if aead, err = e.aeadFor(d); err != nil {
			return nil, err
		}
		if aead == nil && attempt == 2 {
			return nil, fmt.Errorf("%w: data keys purged while opening", ErrKeyManager)
		}
	}
	pt, err := aead.Open(nil, ct[1:1+nonceSize], ct[1+nonceSize:], aad.bytes(dekID))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// aeadFor builds the cipher for d under the lock that guards wiping, so a
// concurrent Purge can never leave us sealing under a zeroed key (the cipher
// keeps its own copy of the key). It returns nil if d was wiped meanwhile.
func (e *Envelope) aeadFor(d *dek) (cipher.AEAD, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.wiped {
		return nil, nil
	}
	return chacha20poly1305.NewX(d.key)
}

// currentDEK returns a usable encryption DEK, rotating on age or use count.
func (e *Envelope) currentDEK(ctx context.Context) (*dek, error) {
	now := e.cfg.Now()
	e.mu.Lock()
	d := e.current
	e.mu.Unlock()
	if d != nil && now.Sub(d.createdAt) < e.cfg.MaxAge && d.uses.Add(1) <= e.cfg.MaxUses {
		return d, nil
	}
	v, err, _ := e.sf.Do("new-dek", func() (any, error) {
		e.mu.Lock()
		epoch := e.epoch
		if c := e.current; c != nil && c != d && now.Sub(c.createdAt) < e.cfg.MaxAge && c.uses.Load() < e.cfg.MaxUses {
			e.mu.Unlock()
			return c, nil
		}
		e.mu.Unlock()
		return e.newDEK(ctx, epoch)
	})
	if err != nil {
		return nil, err
	}
	nd := v.(*dek)
	nd.uses.Add(1)
	return nd, nil
}

func (e *Envelope) newDEK(ctx context.Context, epoch uint64) (*dek, error) {
	dk, err := e.km.GenerateDataKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: generate data key: %w", ErrKeyManager, err)
	}
	if len(dk.Plaintext) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("%w: data key has %d bytes", ErrKeyManager, len(dk.Plaintext))
	}
	id, err := randomID(e.cfg.Rand, "dek_")
	if err != nil {
		return nil, err
	}
	now := e.cfg.Now().UTC()
	if err := e.store.InsertDEK(ctx, DEKRecord{ID: id, Wrapped: dk.Wrapped, KEKVersion: dk.KEKVersion, CreatedAt: now}); err != nil {
		clear(dk.Plaintext)
		return nil, fmt.Errorf("%w: insert dek: %w", ErrStore, err)
	}
	d := &dek{id: id, key: dk.Plaintext, kekVer: dk.KEKVersion, createdAt: now, loadedAt: now}
	e.Stats.DEKsGenerated.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.epoch != epoch {
		// Purged while we were generating: use once, do not cache.
		return d, nil
	}
	// A data key generated under a KEK version that has since been retired
	// seals the value it was generated for (the rewrap job rewraps it) but
	// does not become current.
	if d.kekVer >= e.minKEK {
		e.current = d
	}
	e.addLocked(d)
	return d, nil
}

func (e *Envelope) dekByID(ctx context.Context, id string) (*dek, error) {
	now := e.cfg.Now()
	e.mu.Lock()
	epoch := e.epoch
	if el, ok := e.cache[id]; ok {
		d := el.Value.(*dek)
		if now.Sub(d.loadedAt) < e.cfg.CacheTTL {
			e.lru.MoveToFront(el)
			e.mu.Unlock()
			e.Stats.CacheHits.Add(1)
			return d, nil
		}
		e.removeLocked(el)
	}
	e.mu.Unlock()
	e.Stats.CacheMisses.Add(1)
	v, err, _ := e.sf.Do("unwrap:"+id, func() (any, error) {
		rec, err := e.store.GetDEK(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: get dek: %w", ErrStore, err)
		}
		key, err := e.km.UnwrapDataKey(ctx, rec.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("%w: unwrap data key: %w", ErrKeyManager, err)
		}
		e.Stats.DEKsUnwrapped.Add(1)
		d := &dek{id: id, key: key, kekVer: rec.KEKVersion, createdAt: rec.CreatedAt, loadedAt: e.cfg.Now()}
		e.mu.Lock()
		if e.epoch == epoch {
			e.addLocked(d)
		}
		e.mu.Unlock()
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*dek), nil
}

func (e *Envelope) addLocked(d *dek) {
	if el, ok := e.cache[d.id]; ok {
		e.removeLocked(el)
	}
	e.cache[d.id] = e.lru.PushFront(d)
	for e.lru.Len() > e.cfg.CacheSize {
		e.removeLocked(e.lru.Back())
	}
}

func (e *Envelope) removeLocked(el *list.Element) {
	d := el.Value.(*dek)
	e.lru.Remove(el)
	delete(e.cache, d.id)
	if e.current != d {
		// Seal and Open copy the key into their cipher under e.mu (aeadFor),
		// so wiping here cannot race with a use.
		d.wiped = true
		clear(d.key)
	}
}

// Purge forgets and overwrites every cached plaintext DEK and fingerprint key.
// Called when the key manager is sealed or unreachable, so that Obol stops
// decrypting as soon as the operator seals Vault.
func (e *Envelope) Purge() {
	e.mu.Lock()
	e.epoch++
	if c := e.current; c != nil {
		e.current = nil
		if _, cached := e.cache[c.id]; !cached {
			c.wiped = true
			clear(c.key)
		}
	}
	for e.lru.Len() > 0 {
		e.removeLocked(e.lru.Back())
	}
	e.mu.Unlock()
	e.fpMu.Lock()
	for v, sec := range e.fpSecrets {
		clear(sec)
		delete(e.fpSecrets, v)
	}
	for k, v := range e.fpKeys {
		clear(v)
		delete(e.fpKeys, k)
	}
	e.fpLatest = 0
	e.fpMu.Unlock()
}

// RetireBelow stops sealing under the current DEK if it is wrapped under a
// KEK version below version, so the next seal gets a DEK wrapped under the
// new KEK. The retired DEK stays cached for opening.
func (e *Envelope) RetireBelow(version int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if version > e.minKEK {
		e.minKEK = version
	}
	if e.current != nil && e.current.kekVer < version {
		e.current = nil
		return true
	}
	return false
}

// CurrentKEKVersion is the KEK version of the DEK new data is sealed under
// (0 when none is current).
func (e *Envelope) CurrentKEKVersion() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current == nil {
		return 0
	}
	return e.current.kekVer
}

// KEKVersionOf is the KEK version a cached DEK is wrapped under (0 if not cached).
func (e *Envelope) KEKVersionOf(dekID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if el, ok := e.cache[dekID]; ok {
		return el.Value.(*dek).kekVer
	}
	return 0
}

// CachedKEKVersion is KEKVersionOf for a DEK held in memory; ok false
// when it is not (Open would fetch and unwrap it first).
func (e *Envelope) CachedKEKVersion(dekID string) (version int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if el, ok := e.cache[dekID]; ok {
		return el.Value.(*dek).kekVer, true
	}
	return 0, false
}

// CachedDEKs reports how many plaintext DEKs are held.
func (e *Envelope) CachedDEKs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lru.Len()
}

// FingerprintVersion is the latest fingerprint secret version, loading it
// on first use. New fingerprints are computed under it.
func (e *Envelope) FingerprintVersion(ctx context.Context) (int, error) {
	e.fpMu.RLock()
	v := e.fpLatest
	e.fpMu.RUnlock()
	if v != 0 {
		return v, nil
	}
	sec, v, err := e.km.FingerprintSecret(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: fingerprint secret: %w", ErrKeyManager, err)
	}
	e.fpMu.Lock()
	if _, ok := e.fpSecrets[v]; !ok {
		e.fpSecrets[v] = sec
	}
	if v > e.fpLatest {
		e.fpLatest = v
	}
	v = e.fpLatest
	e.fpMu.Unlock()
	return v, nil
}

// SetFingerprintVersion records that the fingerprint secret has a newer
// version (the watcher saw a rotation); new fingerprints use it.
func (e *Envelope) SetFingerprintVersion(v int) {
	e.fpMu.Lock()
	if v > e.fpLatest {
		e.fpLatest = v
	}
	e.fpMu.Unlock()
}

// derivedKey returns HKDF-SHA256(secret version, salt=label, info=merchant).
func (e *Envelope) derivedKey(ctx context.Context, label string, version int, merchant string) ([]byte, error) {
	cacheKey := label + "\x00" + strconv.Itoa(version) + "\x00" + merchant
	e.fpMu.RLock()
	k, ok := e.fpKeys[cacheKey]
	secret := e.fpSecrets[version]
	e.fpMu.RUnlock()
	if ok {
		return k, nil
	}
	if secret == nil {
		s, got, err := e.km.FingerprintSecret(ctx, version)
		if err != nil {
			return nil, fmt.Errorf("%w: fingerprint secret v%d: %w", ErrKeyManager, version, err)
		}
		if got != version {
			return nil, fmt.Errorf("%w: asked for fingerprint secret v%d, got v%d", ErrKeyManager, version, got)
		}
		secret = s
	}
	k = make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, secret, []byte(label), []byte(merchant)), k); err != nil {
		return nil, err
	}
	e.fpMu.Lock()
	e.fpSecrets[version] = secret
	e.fpKeys[cacheKey] = k
	e.fpMu.Unlock()
	return k, nil
}

// Fingerprint is HMAC-SHA256 of the PAN digits under the merchant's
// fingerprint key of the latest secret version: equal cards match within a
// merchant and nowhere else. It returns the version used.
func (e *Envelope) Fingerprint(ctx context.Context, merchant string, digits []byte) (string, int, error) {
	v, err := e.FingerprintVersion(ctx)
	if err != nil {
		return "", 0, err
	}
	fp, err := e.FingerprintAt(ctx, v, merchant, digits)
	return fp, v, err
}

// FingerprintAt computes the fingerprint under a given secret version (to
// find records written before a rotation).
func (e *Envelope) FingerprintAt(ctx context.Context, version int, merchant string, digits []byte) (string, error) {
	k, err := e.derivedKey(ctx, "obol-fingerprint-v1", version, merchant)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	m.Write(digits)
	return "fp_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18]), nil
}

// RequestMACs keys a hash of an idempotent request per merchant, so that the
// stored hash of a request containing a PAN cannot be brute-forced offline.
// The first MAC is under the latest secret version (store it); the second,
// when there is one, under the previous version (accept it on replay, so a
// retry that straddles a rotation still matches).
func (e *Envelope) RequestMACs(ctx context.Context, merchant string, parts ...[]byte) ([][]byte, error) {
	v, err := e.FingerprintVersion(ctx)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for ver := v; ver >= 1 && ver >= v-1; ver-- {
		k, err := e.derivedKey(ctx, "obol-idempotency-v1", ver, merchant)
		if err != nil {
			if ver < v {
				break // the previous version may have been destroyed
			}
			return nil, err
		}
		m := hmac.New(sha256.New, k)
		for _, p := range parts {
			var n [8]byte
			l := uint64(len(p))
			for i := range n {
				n[i] = byte(l >> (8 * i))
			}
			m.Write(n[:])
			m.Write(p)
		}
		out = append(out, m.Sum(nil))
	}
	return out, nil
}

// RandomID returns prefix + 128 bits of randomness, base64url without padding.
func RandomID(r io.Reader, prefix string) (string, error) { return randomID(r, prefix) }

func randomID(r io.Reader, prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
