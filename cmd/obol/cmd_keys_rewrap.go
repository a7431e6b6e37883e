package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysRewrapCmd() *cobra.Command {
	var batch int
	cmd := keysCmd("rewrap", "Rewrap every stored DEK to the latest KEK version (resumable)", "", func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		res, err := rewrap.Run(ctx, kms, st, batch, nil, func(r rewrap.Result) {
			fmt.Fprintf(out, "rewrapped %d DEKs to KEK version %d (%s)\n", r.Rewrapped, r.TargetVersion, r.Elapsed.Round(time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		rate := 0.0
		if res.Elapsed > 0 {
			rate = float64(res.Rewrapped) / res.Elapsed.Seconds()
		}
		if res.Rewrapped > 0 {
			if err := auditCLI(ctx, st, audit.Event{Action: audit.ActionRewrap, KEKVersion: res.TargetVersion, Detail: fmt.Sprintf("rewrapped=%d skipped=%d", res.Rewrapped, res.Skipped)}); err != nil {
				return fmt.Errorf("rewrap done, but recording it in the audit trail failed: %w", err)
			}
		}
		fmt.Fprintf(out, "rewrap complete: %d rewrapped, %d already current (concurrent job), KEK version %d, %.0f DEKs/s\n", res.Rewrapped, res.Skipped, res.TargetVersion, rate)
		return nil
	})
	cmd.Flags().IntVar(&batch, "batch", 100, "DEKs per transit/rewrap call")
	return cmd
}
