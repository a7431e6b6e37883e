package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStore is a payment store with the operator's outbox verbs, which
// the tests use to queue and inspect events.
type TestStore interface {
	Store
	AddOutbox(ctx context.Context, id, paymentID, request string, now time.Time) error
	OutboxList(ctx context.Context, state string, limit int) ([]OutboxEntry, error)
	OutboxRetry(ctx context.Context, id string, now time.Time) (int64, error)
}

// Backends opens one fresh store per backend (PostgreSQL, SQLite). The
// external test package fills it (backends_test.go): the store packages
// import this one, so its internal tests cannot import them.
var Backends map[string]func(t *testing.T) TestStore

func backends(t *testing.T) map[string]func(t *testing.T) TestStore {
	require.NotEmpty(t, Backends, "no store backends registered")
	return Backends
}
