package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/audit/verify"
	"github.com/obolpay/obol/vault/keys/transit"
)

func newAuditVerifyCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "verify",
		Short: "Verify the audit trail's hash chain (and, with --vault-addr, the anchor in Vault)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.AuditVerify) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		st, err := openStore(ctx, c.PostgresURL, c.DataDir, migrate.Off)
		if err != nil {
			return err
		}
		defer st.Close()
		var anchor *transit.AuditAnchor
		if c.VaultAddr != "" {
			tc, err := transit.New(transit.Config{Address: c.VaultAddr, Token: c.VaultToken, CACertFile: c.VaultCACert, AuditAnchorPath: c.AnchorPath})
			if err != nil {
				return err
			}
			a, err := tc.ReadAuditAnchor(ctx)
			if err != nil {
				return fmt.Errorf("read the audit anchor: %w", err)
			}
			anchor = &a
		}
		r, err := verify.Chain(ctx, st, anchor)
		if err != nil {
			return err
		}
		for _, p := range r.Problems {
			fmt.Fprintf(out, "TAMPERED: seq %d: %s\n", p.Seq, p.Reason)
		}
		if len(r.Problems) > 0 {
			return fmt.Errorf("audit trail verification failed: %d problem(s) in %d events", len(r.Problems), r.Checked)
		}
		if r.AnchorChecked {
			fmt.Fprintf(out, "anchor: event %d matches the hash anchored in Vault at %s\n", anchor.Seq, anchor.At)
		}
		fmt.Fprintf(out, "audit trail intact: %d events, head seq %d hash %s\n", r.Checked, r.HeadSeq, r.HeadHash)
		return nil
	})
}
