package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/money"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

func newPayoutsListCmd() *cobra.Command {
	var batch, csvFile string
	cmd := ledgerCmd("list", "List a batch's payouts (or export it as CSV)", "", cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string, c ledgerv1.LedgerServiceClient) error {
			out := cmd.OutOrStdout()
			rep, err := c.ListPayouts(ctx, &ledgerv1.ListPayoutsRequest{Batch: batch, Csv: csvFile != ""})
			if err != nil {
				return apierr.From(err)
			}
			switch csvFile {
			case "":
				for _, p := range rep.Payouts {
					fmt.Fprintf(out, "%s %s %s %s %s\n", p.Id, p.MerchantId, money.Format(p.Amount, p.Currency), p.Currency, p.Status)
				}
			case "-":
				fmt.Fprint(out, rep.Csv)
			default:
				if err := os.WriteFile(csvFile, []byte(rep.Csv), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(out, "%d payout(s) written to %s\n", len(rep.Payouts), csvFile)
			}
			return nil
		})
	cmd.Flags().StringVar(&batch, "batch", "", "batch date YYYY-MM-DD (default today)")
	cmd.Flags().StringVar(&csvFile, "csv", "", "also write the batch as CSV to this file (- for stdout)")
	return cmd
}
