package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/vault/keys/transit"
)

func newVaultCmd() *cobra.Command {
	return group("vault", "Bootstrap HashiCorp Vault for vaultd", newVaultSetupCmd())
}

func newVaultSetupCmd() *cobra.Command {
	var noPolicies bool
	var auditFile string
	cmd := loadCmd(&cobra.Command{
		Use:   "setup",
		Short: "Configure a fresh HashiCorp Vault for vaultd, idempotently",
		Long: `Configure a fresh HashiCorp Vault for vaultd, idempotently: transit, the KEK,
the fingerprint secret, Obol's policies and the AppRole role. Uses the
operator token in OBOL_VAULT_TOKEN or VAULT_TOKEN (and Vault's CA in
--vault-cacert, OBOL_VAULT_CACERT or VAULT_CACERT, as for every verb that
talks to Vault).`,
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.VaultSetup) error {
		return vaultSetup(cmd.Context(), c, noPolicies, auditFile, cmd.OutOrStdout())
	})
	cmd.Flags().BoolVar(&noPolicies, "no-policies", false, "do not write policies or the AppRole role")
	cmd.Flags().StringVar(&auditFile, "audit-file", "", "also enable Vault's file audit device writing to this path (on the Vault server)")
	return cmd
}

func vaultSetup(ctx context.Context, c config.VaultSetup, noPolicies bool, auditFile string, out io.Writer) error {
	cfg := transit.Config{Address: c.Address, Token: c.Token, CACertFile: c.CACertFile, Mount: c.Mount, KeyName: c.KeyName,
		FingerprintPath: c.FingerprintPath, AppRoleMount: c.AppRoleMount}
	if c.Token == "" {
		return errors.New("OBOL_VAULT_TOKEN or VAULT_TOKEN must hold an operator token")
	}
	tc, err := transit.New(cfg)
	if err != nil {
		return err
	}
	steps, err := tc.Setup(ctx, transit.SetupOptions{Policies: !noPolicies, AuditFile: auditFile})
	for _, s := range steps {
		fmt.Fprintln(out, s)
	}
	if err != nil {
		return err
	}
	changed := 0
	for _, s := range steps {
		if s.Changed {
			changed++
		}
	}
	fmt.Fprintf(out, "vault setup complete: %d created, %d already present\n", changed, len(steps)-changed)
	if !noPolicies {
		fmt.Fprintf(out, `
vaultd logs in with AppRole %[1]q. Give it a role id and a secret id file:
  vault read -field=role_id auth/%[2]s/role/%[1]s/role-id          > role-id
  vault write -f -field=secret_id auth/%[2]s/role/%[1]s/secret-id  > secret-id   # mode 0600
  OBOL_VAULT_ROLE_ID=$(cat role-id) OBOL_VAULT_SECRET_ID_FILE=./secret-id vaultd …
The obol-break-glass policy is written but attached to nothing (see policies/README.md).
`, transit.AppRoleName, cfg.AppRoleMount)
	}
	return nil
}
