package vaultd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/vault/cvcstore/memstore"
	"github.com/obolpay/obol/vault/keys/localkms"
	"github.com/obolpay/obol/vault/merchants"
	"github.com/obolpay/obol/vault/store/sqlite"
)

// EmbeddedConfig configures the embedded default.
type EmbeddedConfig struct {
	DataDir  string
	GRPCAddr string
	HTTPAddr string
	// Origins are the checkout origins of the dev merchant created on the
	// first start (default http://localhost:3000 and http://127.0.0.1:3000).
	Origins []string
	Logger  *slog.Logger
}

// Embedded is a running embedded vault plus its dev credentials.
type Embedded struct {
	*Instance
	Credentials merchants.Keys
	// CreatedMerchant is true when this start created the dev merchant.
	CreatedMerchant bool
	PKI             *devpki.PKI
	Keyring         *localkms.Keyring
}

// Paths inside the data directory.
const (
	CredentialsFile = "dev-credentials.json"
	DBFile          = "vault.db"
	KeyringDir      = "keyring"
	TLSDir          = "tls"
)

// StartEmbedded opens (or creates) the data directory and builds the vault on
// the embedded default: local keyring, SQLite, in-process CVC store, dev PKI.
// On first start it creates a dev merchant and writes its keys to
// dev-credentials.json (0600).
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	kr, err := localkms.Open(filepath.Join(cfg.DataDir, KeyringDir))
	if err != nil {
		return nil, err
	}
	pki, err := devpki.Ensure(filepath.Join(cfg.DataDir, TLSDir))
	if err != nil {
		return nil, fmt.Errorf("dev PKI: %w", err)
	}
	tlsCfg, err := pki.ServerTLS()
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, DBFile))
	if err != nil {
		return nil, err
	}
	in, err := assemble(kr, st, memstore.New(nil), Config{GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, Reflection: true, RequireRequestNonce: true}, tlsCfg, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	in.closers = append(in.closers, st.Close)
	e := &Embedded{Instance: in, PKI: pki, Keyring: kr}
	credPath := filepath.Join(cfg.DataDir, CredentialsFile)
	b, err := os.ReadFile(credPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &e.Credentials); err != nil {
			in.Close()
			return nil, fmt.Errorf("%s is corrupt: %w", credPath, err)
		}
	case errors.Is(err, os.ErrNotExist):
		origins := cfg.Origins
		if len(origins) == 0 {
			origins = []string{"http://localhost:3000", "http://127.0.0.1:3000"}
		}
		keys, err := merchants.Create(ctx, st, "Dev merchant", origins, "test")
		if err != nil {
			in.Close()
			return nil, err
		}
		out, _ := json.MarshalIndent(keys, "", "  ")
		if err := os.WriteFile(credPath, append(out, '\n'), 0o600); err != nil {
			in.Close()
			return nil, fmt.Errorf("write %s: %w", credPath, err)
		}
		e.Credentials, e.CreatedMerchant = keys, true
	default:
		in.Close()
		return nil, err
	}
	return e, nil
}
