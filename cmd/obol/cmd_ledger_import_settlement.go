package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

func newLedgerImportSettlementCmd() *cobra.Command {
	var acquirer, currency string
	const usage = "usage: obol ledger import-settlement --acquirer NAME [--currency USD] FILE.csv"
	cmd := ledgerCmd("import-settlement --acquirer NAME FILE.csv", "Reconcile an acquirer's settlement report (a bad file posts nothing)",
		`Reconcile an acquirer's settlement report (columns acquirer_reference,
amount, fee, currency, settled_date[, type]); a bad file posts nothing.`,
		func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return errors.New(usage)
			}
			return nil
		},
		func(ctx context.Context, cmd *cobra.Command, args []string, c ledgerv1.LedgerServiceClient) error {
			out := cmd.OutOrStdout()
			if acquirer == "" {
				return errors.New(usage)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			rep, err := c.ImportSettlement(ctx, &ledgerv1.ImportSettlementRequest{Acquirer: acquirer, Currency: currency, Csv: string(data)})
			if err != nil {
				return apierr.From(err)
			}
			for _, l := range rep.Results {
				if l.Outcome != "matched" {
					fmt.Fprintf(out, "line %d %s %s %d %s: %s %s\n", l.Line, l.Type, l.AcquirerReference, l.Amount, l.Currency, strings.ToUpper(l.Outcome), l.Reason)
				}
			}
			fmt.Fprintf(out, "%d lines: %d matched and posted, %d already posted, %d unmatched, %d mismatched; settled %d gross, %d acquirer fees, %d charged back (minor units)\n",
				rep.Lines, rep.Matched, rep.AlreadyPosted, rep.Unmatched, rep.Mismatched, rep.SettledGross, rep.SettledFees, rep.ChargebackGross)
			if rep.Unmatched+rep.Mismatched > 0 {
				return fmt.Errorf("%d line(s) need attention (not posted)", rep.Unmatched+rep.Mismatched)
			}
			return nil
		})
	cmd.Flags().StringVar(&acquirer, "acquirer", "", "the acquirer whose report this is, e.g. simulator (required)")
	cmd.Flags().StringVar(&currency, "currency", "", "refuse lines in any other currency")
	return cmd
}
