package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/money"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

func newLedgerBalancesCmd() *cobra.Command {
	var merchant, currency string
	cmd := ledgerCmd("balances --merchant M", "A merchant's balances: held, pending, reserve, available, in transit", "", cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string, c ledgerv1.LedgerServiceClient) error {
			if merchant == "" {
				return errors.New("--merchant is required")
			}
			b, err := c.GetMerchantBalances(ctx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: merchant, Currency: currency})
			if err != nil {
				return apierr.From(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "merchant %s (%s)\t\n", b.MerchantId, b.Currency)
			for _, r := range []struct {
				n string
				v int64
			}{{"held (authorized)", b.Held}, {"pending (T+N)", b.Pending}, {"reserve", b.Reserve}, {"available", b.Available}, {"in transit", b.InTransit}} {
				fmt.Fprintf(tw, "%s\t%s\t\n", r.n, money.Format(r.v, b.Currency))
			}
			return tw.Flush()
		})
	cmd.Flags().StringVar(&merchant, "merchant", "", "merchant id (required)")
	cmd.Flags().StringVar(&currency, "currency", "USD", "ISO 4217 currency")
	return cmd
}
