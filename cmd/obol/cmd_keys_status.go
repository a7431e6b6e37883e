package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func newKeysStatusCmd() *cobra.Command {
	var perDEK bool
	cmd := keysCmd("status", "Show the KEK's versions and how many DEKs and tokens each protects", "", func(cmd *cobra.Command, kms *transit.Client, st *postgres.Store) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		ki, err := kms.ReadKey(ctx)
		if err != nil {
			return fmt.Errorf("read KEK: %w", err)
		}
		stats, err := st.KeyStats(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "KEK %s/keys/%s: latest version %d, min_decryption_version %d, min_encryption_version %d, auto_rotate_period %s, exportable %v, deletion allowed %v\n\n",
			kms.Mount(), kms.KeyName(), ki.LatestVersion, ki.MinDecryptionVersion, ki.MinEncryptionVersion, time.Duration(ki.AutoRotatePeriod)*time.Second, ki.Exportable, ki.DeletionAllowed)
		fmt.Fprintf(out, "%-12s %10s %12s\n", "KEK version", "DEKs", "tokens")
		var behind int64
		for _, s := range stats {
			fmt.Fprintf(out, "%-12d %10d %12d\n", s.KEKVersion, s.DEKs, s.Tokens)
			if s.KEKVersion < ki.LatestVersion {
				behind += s.DEKs
			}
		}
		if perDEK {
			deks, err := st.DEKStats(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\n%-28s %-12s %-22s %8s\n", "DEK", "KEK version", "created", "tokens")
			for _, d := range deks {
				fmt.Fprintf(out, "%-28s %-12d %-22s %8d\n", d.ID, d.KEKVersion, d.CreatedAt.UTC().Format(time.RFC3339), d.Tokens)
			}
		}
		switch {
		case behind > 0:
			fmt.Fprintf(out, "\n%d DEKs are wrapped under older KEK versions: run `obol keys rewrap` (vaultd does it automatically) before raising min_decryption_version.\n", behind)
		default:
			fmt.Fprintf(out, "\nEvery DEK is wrapped under the latest KEK version: min_decryption_version can be raised to %d.\n", ki.LatestVersion)
		}
		return nil
	})
	cmd.Flags().BoolVar(&perDEK, "deks", false, "list every DEK with the tokens it protects")
	return cmd
}
