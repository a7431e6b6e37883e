package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/ledger/events/eventsd"
)

// addrEventsGRPC names eventsd's gRPC address in obol dev's lock file.
const addrEventsGRPC = "events gRPC"

// eventsSealKeyFile holds obol dev's secret-sealing key for webhook
// secrets (32 random bytes, the owner's only), created on the first start.
const eventsSealKeyFile = "events-seal.key"

// startDevEvents starts the embedded eventsd: SQLite in the data dir, its
// token in the credentials file as events_token, and plain http allowed to
// loopback webhook endpoints (obol dev only: `obol listen`, a local
// server).
func startDevEvents(ctx context.Context, c config.Dev, log *slog.Logger) (*eventsd.Instance, string, error) {
	token, err := devToken(c.DataDir, "events_token", "evs_")
	if err != nil {
		return nil, "", err
	}
	key, err := devSealKey(c.DataDir)
	if err != nil {
		return nil, "", err
	}
	in, err := eventsd.Start(ctx, eventsd.Config{SQLitePath: filepath.Join(c.DataDir, "events.db"), GRPCAddr: c.EventsGRPC, HTTPAddr: c.EventsHTTP,
		Token: token, SealKey: key, DevLoopback: true, Reflection: true, Logger: log})
	if err != nil {
		return nil, "", fmt.Errorf("events: %w", err)
	}
	return in, token, nil
}

func devSealKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, eventsSealKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("%s: want 32 bytes, found %d (restore it: webhook secrets are sealed with it)", path, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	return b, f.Close()
}
