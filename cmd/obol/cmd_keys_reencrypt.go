package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/reencrypt"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysReencryptCmd() *cobra.Command {
	var batch int
	var olderThan time.Duration
	var destroy bool
	cmd := keysCmd("reencrypt", "Re-seal cards under old DEKs with a new DEK (resumable)", `Re-seal cards under DEKs older than --older-than with a new DEK
(resumable); with --destroy, delete the DEKs that then protect nothing.
Vault credentials as for vaultd: OBOL_VAULT_TOKEN or AppRole.`, func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		if olderThan <= 0 {
			return errors.New("--older-than must be positive")
		}
		env := envelope.New(kms, st, envelope.Config{})
		res, err := reencrypt.Run(ctx, env, st, reencrypt.Options{OlderThan: olderThan, Destroy: destroy, Batch: batch}, func(r reencrypt.Result) {
			fmt.Fprintf(out, "re-encrypted %d cards (%s)\n", r.Reencrypted, r.Elapsed.Round(time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		if err := auditCLI(ctx, st, audit.Event{Action: audit.ActionReencrypt, Detail: fmt.Sprintf("reencrypted=%d skipped=%d destroyed_deks=%d", res.Reencrypted, res.Skipped, res.Destroyed)}); err != nil {
			return fmt.Errorf("re-encryption done, but recording it in the audit trail failed: %w", err)
		}
		fmt.Fprintf(out, "reencrypt complete: %d cards re-encrypted, %d changed meanwhile, %d unused DEKs destroyed\n", res.Reencrypted, res.Skipped, res.Destroyed)
		return nil
	})
	cmd.Flags().IntVar(&batch, "batch", 100, "tokens per page")
	cmd.Flags().DurationVar(&olderThan, "older-than", 24*time.Hour, "re-seal cards under DEKs created longer ago than this")
	cmd.Flags().BoolVar(&destroy, "destroy", false, "then delete DEKs that protect nothing and are older than 25h (too old to seal or to protect a CVC)")
	return cmd
}
