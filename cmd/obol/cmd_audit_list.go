package main

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/store"
)

func newAuditListCmd() *cobra.Command {
	var f store.AuditFilter
	cmd := loadCmd(&cobra.Command{Use: "list", Short: "List audit events (JSON lines)", Args: cobra.NoArgs}, func(cmd *cobra.Command, _ []string, c config.VaultDB) error {
		ctx := cmd.Context()
		st, err := openStore(ctx, c.PostgresURL, c.DataDir, migrate.Off)
		if err != nil {
			return err
		}
		defer st.Close()
		evs, err := st.ListAudit(ctx, f)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		for _, e := range evs {
			_ = enc.Encode(map[string]any{"seq": e.Seq, "at": e.At.Format(time.RFC3339Nano), "actor": e.Actor, "action": e.Action,
				"merchant_id": e.MerchantID, "token": e.Token, "purpose": e.Purpose, "destination_host": e.DestinationHost,
				"kek_version": e.KEKVersion, "detail": e.Detail, "hash": hex.EncodeToString(e.Hash)})
		}
		return nil
	})
	cmd.Flags().StringVar(&f.MerchantID, "merchant", "", "only this merchant's events")
	cmd.Flags().StringVar(&f.Token, "token", "", "only this token's events")
	cmd.Flags().Int64Var(&f.AfterSeq, "after", 0, "events after this sequence number")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many events")
	return cmd
}
