package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysCmd() *cobra.Command {
	return group("keys", "Inspect and rotate the vault's keys (vaultd's Vault and database settings)",
		newKeysStatusCmd(), newKeysRewrapCmd(), newKeysReencryptCmd(), newKeysRotateFingerprintCmd(), newKeysRefingerprintCmd())
}

// keysCmd is a keys verb: vaultd's Vault and database settings (config.Keys)
// and the verb's own flags, added by the caller; do runs with both open.
func keysCmd(use, short, long string, do func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error) *cobra.Command {
	return loadCmd(&cobra.Command{Use: use, Short: short, Long: long, Args: cobra.NoArgs}, func(cmd *cobra.Command, _ []string, c config.Keys) error {
		kms, st, err := openKeys(cmd.Context(), c)
		if err != nil {
			return err
		}
		defer st.Close()
		return do(cmd, kms, st)
	})
}

func openKeys(ctx context.Context, c config.Keys) (*transit.Client, *postgres.Store, error) {
	cfg := transit.Config{Address: c.Address, Token: c.Token, CACertFile: c.CACertFile, RoleID: c.RoleID, SecretIDFile: c.SecretIDFile, Mount: c.Mount, KeyName: c.KeyName}
	if cfg.RoleID != "" {
		cfg.Token = ""
	}
	if c.PostgresURL == "" {
		return nil, nil, errors.New("the vault's database is required: --postgres-url or OBOL_VAULT_POSTGRES_URL")
	}
	kms, err := transit.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := postgres.Open(ctx, c.PostgresURL, postgres.Options{MaxConns: 4})
	if err != nil {
		return nil, nil, err
	}
	return kms, st, nil
}

// auditCLI records what an obol verb did in the audit trail.
func auditCLI(ctx context.Context, st *postgres.Store, e audit.Event) error {
	e.At, e.Actor = time.Now(), "cli"
	_, err := st.AppendAudit(ctx, []audit.Event{e})
	return err
}
