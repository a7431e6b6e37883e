package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/refingerprint"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysRefingerprintCmd() *cobra.Command {
	var batch int
	cmd := keysCmd("refingerprint", "Rewrite fingerprints computed under older secret versions (resumable)", "", func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		res, err := refingerprint.Run(ctx, envelope.New(kms, st, envelope.Config{}), st, batch)
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		if res.Rewritten > 0 {
			if err := auditCLI(ctx, st, audit.Event{Action: audit.ActionRefingerprint, Detail: fmt.Sprintf("version=%d rewritten=%d skipped=%d", res.Version, res.Rewritten, res.Skipped)}); err != nil {
				return fmt.Errorf("refingerprint done, but recording it in the audit trail failed: %w", err)
			}
		}
		fmt.Fprintf(out, "refingerprint complete: %d tokens rewritten to fingerprint version %d, %d changed meanwhile\n", res.Rewritten, res.Version, res.Skipped)
		return nil
	})
	cmd.Flags().IntVar(&batch, "batch", 100, "tokens per page")
	return cmd
}
