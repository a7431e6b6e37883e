// Package localkms is the embedded default key manager for `obol dev`: a
// keyring file whose KEK versions and fingerprint secret are sealed under a
// master key file in the data directory (both 0600). It implements the same
// envelope.KeyManager interface as Vault transit. It is NOT for production:
// the master key sits on the same disk as the data it protects. It never sees
// a PAN.
package localkms

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/obolpay/obol/vault/envelope"
)

var _ envelope.KeyManager = (*Keyring)(nil)

// Banner is printed by `obol dev` whenever the local keyring is in use.
const Banner = "LOCAL KEYRING IN USE: keys are stored next to the data in the data directory. This is for development only, NOT FOR PRODUCTION; use vaultd with HashiCorp Vault."

const (
	masterFile  = "master.key"
	keyringFile = "keyring.json"
	wrapPrefix  = "local:v"
)

type keyringDisk struct {
	// Versions maps KEK version to the KEK sealed under the master key.
	Versions map[string]string `json:"versions"`
	Latest   int               `json:"latest"`
	// Fingerprint is version 1 of the fingerprint root secret, sealed under
	// the master key; later versions are in Fingerprints.
	Fingerprint  string            `json:"fingerprint"`
	Fingerprints map[string]string `json:"fingerprints,omitempty"`
	FPLatest     int               `json:"fingerprint_latest,omitempty"`
}

// Keyring is a file-backed key manager.
type Keyring struct {
	dir      string
	rand     io.Reader
	mu       sync.RWMutex
	keks     map[int][]byte
	latest   int
	fps      map[int][]byte
	fpLatest int
}

// Open loads the keyring in dir, creating master key and keyring on first use.
func Open(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring dir: %w", err)
	}
	k := &Keyring{dir: dir, rand: rand.Reader, keks: map[int][]byte{}, fps: map[int][]byte{}}
	master, err := k.loadOrCreateMaster()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, keyringFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kek, fp := k.random(32), k.random(32)
		k.keks[1], k.latest, k.fps[1], k.fpLatest = kek, 1, fp, 1
		return k, k.save(master)
	}
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	var d keyringDisk
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("keyring %s is corrupt: %w", path, err)
	}
	for v, sealed := range d.Versions {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("keyring %s: bad version %q", path, v)
		}
		kek, err := open(master, sealed, "kek:"+v)
		if err != nil {
			return nil, fmt.Errorf("keyring %s: KEK v%d does not open under %s: %w", path, n, masterFile, err)
		}
		k.keks[n] = kek
	}
	k.latest = d.Latest
	if k.fps[1], err = open(master, d.Fingerprint, "fingerprint"); err != nil {
		return nil, fmt.Errorf("keyring %s: fingerprint secret does not open: %w", path, err)
	}
	k.fpLatest = max(1, d.FPLatest)
	for v, sealed := range d.Fingerprints {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("keyring %s: bad fingerprint version %q", path, v)
		}
		if k.fps[n], err = open(master, sealed, "fingerprint:"+v); err != nil {
			return nil, fmt.Errorf("keyring %s: fingerprint secret v%d does not open: %w", path, n, err)
		}
	}
	if _, ok := k.keks[k.latest]; !ok {
		return nil, fmt.Errorf("keyring %s: latest version %d missing", path, k.latest)
	}
	return k, nil
}

func (k *Keyring) random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(k.rand, b); err != nil {
		panic("localkms: crypto/rand failed: " + err.Error())
	}
	return b
}

func (k *Keyring) loadOrCreateMaster() ([]byte, error) {
	path := filepath.Join(k.dir, masterFile)
	b, err := os.ReadFile(path)
	if err == nil {
		m, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(m) != chacha20poly1305.KeySize {
			return nil, fmt.Errorf("master key %s is corrupt", path)
		}
		return m, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	m := k.random(chacha20poly1305.KeySize)
	if err := writeFile0600(path, []byte(base64.StdEncoding.EncodeToString(m)+"\n")); err != nil {
		return nil, err
	}
	return m, nil
}

func (k *Keyring) save(master []byte) error {
	d := keyringDisk{Versions: map[string]string{}, Latest: k.latest}
	for v, kek := range k.keks {
		d.Versions[strconv.Itoa(v)] = k.seal(master, kek, "kek:"+strconv.Itoa(v))
	}
	d.Fingerprint = k.seal(master, k.fps[1], "fingerprint")
	d.FPLatest = k.fpLatest
	for v, fp := range k.fps {
		if v > 1 {
			if d.Fingerprints == nil {
				d.Fingerprints = map[string]string{}
			}
			d.Fingerprints[strconv.Itoa(v)] = k.seal(master, fp, "fingerprint:"+strconv.Itoa(v))
		}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return writeFile0600(filepath.Join(k.dir, keyringFile), b)
}

func writeFile0600(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func (k *Keyring) seal(key, pt []byte, aad string) string {
	aead, _ := chacha20poly1305.NewX(key)
	nonce := k.random(aead.NonceSize())
	return base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, pt, []byte(aad)))
}

func open(key []byte, s, aad string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	aead, _ := chacha20poly1305.NewX(key)
	if len(b) < aead.NonceSize() {
		return nil, errors.New("short ciphertext")
	}
	return aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(aad))
}

// GenerateDataKey returns a new DEK wrapped under the latest KEK as
// "local:vN:<base64>".
func (k *Keyring) GenerateDataKey(_ context.Context) (envelope.DataKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	dek := k.random(32)
	v := strconv.Itoa(k.latest)
	return envelope.DataKey{Plaintext: dek, Wrapped: wrapPrefix + v + ":" + k.seal(k.keks[k.latest], dek, "dek"), KEKVersion: k.latest}, nil
}

// UnwrapDataKey opens a wrapped DEK under the KEK version it names.
func (k *Keyring) UnwrapDataKey(_ context.Context, wrapped string) ([]byte, error) {
	rest, ok := strings.CutPrefix(wrapped, wrapPrefix)
	if !ok {
		return nil, errors.New("localkms: not a local wrapped key")
	}
	vs, body, ok := strings.Cut(rest, ":")
	v, err := strconv.Atoi(vs)
	if !ok || err != nil {
		return nil, errors.New("localkms: malformed wrapped key")
	}
	k.mu.RLock()
	kek, ok := k.keks[v]
	k.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("localkms: KEK version %d not in keyring", v)
	}
	return open(kek, body, "dek")
}

// FingerprintSecret returns a version of the fingerprint root secret (0: latest).
func (k *Keyring) FingerprintSecret(_ context.Context, version int) ([]byte, int, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if version == 0 {
		version = k.fpLatest
	}
	fp, ok := k.fps[version]
	if !ok {
		return nil, 0, fmt.Errorf("localkms: fingerprint secret v%d not in keyring", version)
	}
	return append([]byte(nil), fp...), version, nil
}

// FingerprintVersion is the latest fingerprint secret version.
func (k *Keyring) FingerprintVersion(context.Context) (int, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.fpLatest, nil
}

// RotateFingerprint adds a new fingerprint secret version.
func (k *Keyring) RotateFingerprint(context.Context) (int, error) {
	master, err := k.loadOrCreateMaster()
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fpLatest++
	k.fps[k.fpLatest] = k.random(32)
	return k.fpLatest, k.save(master)
}

// Rotate adds a new KEK version; new data keys are wrapped under it.
func (k *Keyring) Rotate() (int, error) {
	master, err := k.loadOrCreateMaster()
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.latest++
	k.keks[k.latest] = k.random(32)
	return k.latest, k.save(master)
}

// LatestVersion is the KEK version new data keys are wrapped under.
func (k *Keyring) LatestVersion() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.latest
}
