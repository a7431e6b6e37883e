package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysRotateFingerprintCmd() *cobra.Command {
	return keysCmd("rotate-fingerprint", "Write a new random version of the fingerprint secret (operator token)", "", func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		v, err := kms.RotateFingerprint(ctx)
		if err != nil {
			return err
		}
		if err := auditCLI(ctx, st, audit.Event{Action: "fingerprint_rotate", Detail: fmt.Sprintf("version=%d", v)}); err != nil {
			return fmt.Errorf("fingerprint secret rotated to v%d, but recording it in the audit trail failed: %w", v, err)
		}
		fmt.Fprintf(out, "fingerprint secret rotated to version %d. vaultd picks it up within its KEK check interval and rewrites older fingerprints in the background (or run `obol keys refingerprint`); until then, lookups also try version %d.\n", v, v-1)
		return nil
	})
}
