package transit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// splitKV splits a KV v2 data path ("secret/data/obol/fingerprint") into the
// mount ("secret") and the secret's path ("obol/fingerprint").
func splitKV(path string) (mount, secret string, err error) {
	mount, secret, ok := strings.Cut(strings.Trim(path, "/"), "/data/")
	if !ok || mount == "" || secret == "" {
		return "", "", fmt.Errorf("%q must be a KV v2 data path like secret/data/obol/fingerprint", path)
	}
	return mount, secret, nil
}

// kvGet reads a version of a KV v2 secret (0: the latest). A missing or
// deleted version is ErrNotFound.
func (c *Client) kvGet(ctx context.Context, path string, version int) (*vault.KVSecret, error) {
	mount, sub, err := splitKV(path)
	if err != nil {
		return nil, err
	}
	s, err := call(ctx, c, "read "+path, func(ctx context.Context) (*vault.KVSecret, error) {
		if version > 0 {
			return c.api.KVv2(mount).GetVersion(ctx, sub, version)
		}
		return c.api.KVv2(mount).Get(ctx, sub)
	})
	if err != nil {
		return nil, err
	}
	if s.Data == nil || s.VersionMetadata == nil {
		return nil, fmt.Errorf("%w: read %s: version deleted", ErrNotFound, path)
	}
	return s, nil
}

// kvPut writes a KV v2 secret. cas ≥ 0 is a check-and-set on that version
// (0: only if absent); a stale one is ErrConflict. cas < 0 writes blindly.
// It returns the new version.
func (c *Client) kvPut(ctx context.Context, path string, data map[string]any, cas int) (int, error) {
	mount, sub, err := splitKV(path)
	if err != nil {
		return 0, err
	}
	var opts []vault.KVOption
	if cas >= 0 {
		opts = append(opts, vault.WithCheckAndSet(cas))
	}
	s, err := call(ctx, c, "write "+path, func(ctx context.Context) (*vault.KVSecret, error) {
		return c.api.KVv2(mount).Put(ctx, sub, data, opts...)
	})
	if err != nil {
		return 0, err
	}
	if s.VersionMetadata == nil {
		return 0, fmt.Errorf("%w: write %s: no version in answer", ErrVault, path)
	}
	return s.VersionMetadata.Version, nil
}

// FingerprintSecret reads a version of the fingerprint root secret from KV
// v2 (0: the latest) and returns it with its version number.
func (c *Client) FingerprintSecret(ctx context.Context, version int) ([]byte, int, error) {
	s, err := c.kvGet(ctx, c.cfg.FingerprintPath, version)
	if err != nil {
		return nil, 0, fmt.Errorf("fingerprint secret %s: %w", c.cfg.FingerprintPath, err)
	}
	enc, _ := s.Data["key"].(string)
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(key) < 32 {
		return nil, 0, fmt.Errorf("%w: fingerprint secret %s: field \"key\" must be base64 of at least 32 bytes", ErrVault, c.cfg.FingerprintPath)
	}
	return key, s.VersionMetadata.Version, nil
}

// FingerprintVersion is the latest version of the fingerprint secret.
func (c *Client) FingerprintVersion(ctx context.Context) (int, error) {
	_, v, err := c.FingerprintSecret(ctx, 0)
	return v, err
}

// newFingerprintKey is 32 random bytes, base64, as stored in field "key".
func newFingerprintKey() (map[string]any, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return map[string]any{"key": base64.StdEncoding.EncodeToString(b[:])}, nil
}

// RotateFingerprint writes a new random version of the fingerprint secret
// (check-and-set on the current version: a concurrent rotation makes it fail
// with ErrConflict rather than both winning). Run with an operator token:
// the key-admin role deliberately cannot write it, since whoever knows the
// secret could test candidate PANs against fingerprints.
func (c *Client) RotateFingerprint(ctx context.Context) (int, error) {
	_, cur, err := c.FingerprintSecret(ctx, 0)
	if err != nil {
		return 0, err
	}
	data, err := newFingerprintKey()
	if err != nil {
		return 0, err
	}
	v, err := c.kvPut(ctx, c.cfg.FingerprintPath, data, cur)
	if err != nil {
		return 0, fmt.Errorf("rotate fingerprint secret: %w", err)
	}
	return v, nil
}

// AuditAnchor is the head of Obol's audit chain as recorded in Vault.
type AuditAnchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"` // hex
	At   string `json:"at"`
}

// WriteAuditAnchor records the audit chain's head in KV v2, where the
// auditor can read it and vaultd cannot rewrite history unnoticed.
func (c *Client) WriteAuditAnchor(ctx context.Context, a AuditAnchor) error {
	_, err := c.kvPut(ctx, c.cfg.AuditAnchorPath, map[string]any{"seq": a.Seq, "hash": a.Hash, "at": a.At}, -1)
	return err
}

// ReadAuditAnchor reads the anchor (auditor and break-glass may).
func (c *Client) ReadAuditAnchor(ctx context.Context) (AuditAnchor, error) {
	var a AuditAnchor
	s, err := c.kvGet(ctx, c.cfg.AuditAnchorPath, 0)
	if err != nil {
		return a, err
	}
	err = decode("read "+c.cfg.AuditAnchorPath, s.Data, &a)
	return a, err
}
