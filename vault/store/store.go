// Package store defines the vault's persistent records and the contract every
// backend (PostgreSQL in production, SQLite for the embedded default) meets;
// storetest holds the conformance suite both run. Records hold ciphertext and
// PAN-free metadata (brand, BIN, last4, expiry, fingerprint) only: no backend
// ever receives a PAN.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
)

// Errors returned by every backend. Anything else means the backend is
// unavailable or broken, and callers fail closed.
var (
	// ErrNotFound: no such record (or it belongs to another merchant).
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyExists: a record for this merchant and key already exists.
	ErrIdempotencyExists = errors.New("idempotency key already recorded")
	// ErrDuplicate: a unique identifier (merchant id, token, key hash) is taken.
	ErrDuplicate = errors.New("duplicate record")
)

// Merchant is a tenant of the vault.
type Merchant struct {
	ID   string
	Name string
	// AllowedOrigins are the checkout origins (scheme://host[:port]) allowed to
	// tokenize with this merchant's publishable key from a browser.
	AllowedOrigins []string
	CreatedAt      time.Time
}

// Key kinds.
const (
	KeySecret      = "secret"
	KeyPublishable = "publishable"
)

// APIKey is a merchant API key; only its SHA-256 hash is stored.
type APIKey struct {
	Hash       []byte
	Prefix     string // e.g. "sk_test_AbCd" — enough to recognise a key in a list
	MerchantID string
	Kind       string
	CreatedAt  time.Time
}

// TokenRecord is a stored card: ciphertext plus displayable metadata.
type TokenRecord struct {
	Token       string
	MerchantID  string
	DEKID       string
	Ciphertext  []byte
	Brand       string
	BIN         string
	Last4       string
	ExpMonth    int
	ExpYear     int
	Fingerprint string
	// FingerprintVersion is the fingerprint secret version Fingerprint uses.
	FingerprintVersion int
	CreatedAt          time.Time
}

// IdempotencyRecord remembers the first result of an idempotent write.
type IdempotencyRecord struct {
	MerchantID string
	Key        string
	Operation  string
	// RequestMAC is a per-merchant keyed MAC of the request (never a plain hash:
	// requests can carry a PAN).
	RequestMAC []byte
	// Response is the serialized first response (PAN-free by construction).
	Response  []byte
	CreatedAt time.Time
}

// Store is the contract of a vault backend.
type Store interface {
	envelope.DEKStore

	CreateMerchant(ctx context.Context, m Merchant, keys []APIKey) error
	GetMerchant(ctx context.Context, id string) (Merchant, error)
	LookupAPIKey(ctx context.Context, hash []byte) (APIKey, error)
	// OriginAllowed reports whether any merchant allows this checkout origin.
	OriginAllowed(ctx context.Context, origin string) (bool, error)

	// CreateToken inserts a token and, when idem is not nil, its idempotency
	// record, atomically. If the idempotency key is taken it returns
	// ErrIdempotencyExists and writes nothing.
	CreateToken(ctx context.Context, rec TokenRecord, idem *IdempotencyRecord) error
	// CreateTokenDeduped returns the merchant's existing token for the card's
	// fingerprint, or creates rec (with idem) if there is none, atomically:
	// concurrent calls for the same card create one token.
	CreateTokenDeduped(ctx context.Context, rec TokenRecord, idem *IdempotencyRecord) (existing *TokenRecord, err error)
	GetToken(ctx context.Context, merchantID, token string) (TokenRecord, error)
	// FindTokenByFingerprint returns the merchant's oldest token for a card.
	FindTokenByFingerprint(ctx context.Context, merchantID, fingerprint string) (TokenRecord, error)
	// DeleteToken removes a token's row and ciphertext; ErrNotFound if absent.
	DeleteToken(ctx context.Context, merchantID, token string) error
	CountTokens(ctx context.Context) (int64, error)

	GetIdempotency(ctx context.Context, merchantID, key string) (IdempotencyRecord, error)
	// PutIdempotency inserts a record; ErrIdempotencyExists if the key is taken.
	PutIdempotency(ctx context.Context, rec IdempotencyRecord) error

	// DEKsBelowVersion lists DEKs wrapped under a KEK version below
	// version, in id order after the given id, at most limit.
	DEKsBelowVersion(ctx context.Context, version int, after string, limit int) ([]envelope.DEKRecord, error)
	// RewrapDEK replaces a DEK's wrapped form if it is still oldWrapped
	// (compare-and-set, so concurrent rewrap jobs are safe); ErrNotFound if not.
	RewrapDEK(ctx context.Context, id, oldWrapped, newWrapped string, newVersion int) error
	// KeyStats counts DEKs and tokens per KEK version.
	KeyStats(ctx context.Context) ([]KeyStat, error)
	// DEKStats lists every DEK with the number of tokens it protects.
	DEKStats(ctx context.Context) ([]DEKStat, error)
	// TokensUnderOldDEKs lists tokens sealed under DEKs created before
	// cutoff, in token order after the given token, at most limit.
	TokensUnderOldDEKs(ctx context.Context, cutoff time.Time, after string, limit int) ([]TokenRecord, error)
	// ReplaceCiphertext re-seals a token if it is still under oldDEK
	// (compare-and-set); ErrNotFound if it changed or is gone.
	ReplaceCiphertext(ctx context.Context, token, oldDEK, newDEK string, ct []byte) error
	// TokensWithFingerprintBelow lists tokens fingerprinted under a secret
	// version below version, in token order after the given token.
	TokensWithFingerprintBelow(ctx context.Context, version int, after string, limit int) ([]TokenRecord, error)
	// UpdateFingerprint rewrites a token's fingerprint if it is still
	// oldFingerprint (compare-and-set); ErrNotFound if it changed or is gone.
	UpdateFingerprint(ctx context.Context, token, oldFingerprint, newFingerprint string, version int) error
	// DestroyDEKs deletes DEKs created before cutoff that no token uses.
	DestroyDEKs(ctx context.Context, cutoff time.Time) (int64, error)

	// AppendAudit chains and appends events (atomically, in order) and
	// returns them with seq and hashes assigned.
	AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error)
	// ListAudit returns events after a seq, in seq order, optionally
	// filtered by merchant or token.
	ListAudit(ctx context.Context, f AuditFilter) ([]audit.Event, error)
	// AuditHead is the last event (ErrNotFound when there is none).
	AuditHead(ctx context.Context) (audit.Event, error)

	Ping(ctx context.Context) error
	Close() error
}

// Revealer is implemented by backends that read a token and append its
// reveal's audit event in one transaction (PostgreSQL): one transaction per
// reveal batch instead of a read and an append. RevealToken returns the
// merchant's token (ErrNotFound, recording nothing, for a token that does
// not exist or is another merchant's) once the event that event built from
// it is committed. When event reports false, nothing is recorded
// (recorded false) and the caller must record the reveal itself
// (AppendAudit) before revealing anything. event runs while the audit
// chain is locked and must not block.
type Revealer interface {
	RevealToken(ctx context.Context, merchantID, token string, event func(TokenRecord) (audit.Event, bool)) (rec TokenRecord, recorded bool, err error)
}

// AuditFilter selects audit events.
type AuditFilter struct {
	AfterSeq   int64
	MerchantID string
	Token      string
	Limit      int // default 1000
}

// DEKStat is how many tokens one DEK protects.
type DEKStat struct {
	ID         string
	KEKVersion int
	CreatedAt  time.Time
	Tokens     int64
}

// KeyStat is how much one KEK version still protects.
type KeyStat struct {
	KEKVersion int
	DEKs       int64
	Tokens     int64
}
