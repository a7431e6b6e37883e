// Package cvcstore defines the ephemeral store for sealed CVCs: a value per
// token with a TTL, taken (read and deleted atomically) on first use. PCI DSS
// forbids keeping a CVC after authorization, so nothing here ever reaches a
// disk: production uses Redis without persistence, `obol dev` an in-process
// map. Values are ciphertext only; this package never sees a CVC in clear.
package cvcstore

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound: no value for the token (never stored, expired, or taken).
var ErrNotFound = errors.New("cvc not found")

// Store is the contract of an ephemeral CVC backend.
type Store interface {
	// Put stores value for token, replacing any previous one, expiring after ttl.
	Put(ctx context.Context, token string, value []byte, ttl time.Duration) error
	// Take returns and deletes the value atomically (single use).
	Take(ctx context.Context, token string) ([]byte, error)
	// Delete removes the value if present.
	Delete(ctx context.Context, token string) error
	// TTL reports the remaining lifetime, or ErrNotFound.
	TTL(ctx context.Context, token string) (time.Duration, error)
	Ping(ctx context.Context) error
}
