package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/merchants"
)

func newMerchantsCmd() *cobra.Command {
	return group("merchants", "Manage merchants", newMerchantsCreateCmd())
}

func newMerchantsCreateCmd() *cobra.Command {
	var name string
	var origins []string
	var live bool
	cmd := loadCmd(&cobra.Command{
		Use:   "create --name NAME [--origin URL]... [--live]",
		Short: "Create a merchant and print its API keys (shown once)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.VaultDB) error {
		return createMerchant(cmd.Context(), c, name, origins, live, cmd.OutOrStdout())
	})
	cmd.Flags().StringVar(&name, "name", "", "merchant name (required)")
	cmd.Flags().StringArrayVar(&origins, "origin", nil, "checkout origin allowed to use the publishable key (repeatable), e.g. https://shop.example")
	cmd.Flags().BoolVar(&live, "live", false, "create live-mode keys (sk_live_/pk_live_)")
	return cmd
}

func createMerchant(ctx context.Context, c config.VaultDB, name string, origins []string, live bool, out io.Writer) error {
	if strings.TrimSpace(name) == "" {
		return errors.New("--name is required")
	}
	for _, o := range origins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") || strings.Count(o, "/") != 2 {
			return fmt.Errorf("--origin %q must be scheme://host[:port] with no path", o)
		}
	}
	st, err := openStore(ctx, c.PostgresURL, c.DataDir, migrate.Auto)
	if err != nil {
		return err
	}
	defer st.Close()
	mode := "test"
	if live {
		mode = "live"
	}
	keys, err := merchants.Create(ctx, st, name, origins, mode)
	if err != nil {
		return err
	}
	if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: audit.ActionMerchantCreate, MerchantID: keys.MerchantID, Detail: "mode=" + mode}}); err != nil {
		return fmt.Errorf("merchant %s created, but recording it in the audit trail failed: %w", keys.MerchantID, err)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(keys)
}
