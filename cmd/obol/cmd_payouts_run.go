package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/money"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

func newPayoutsRunCmd() *cobra.Command {
	var date, merchant string
	cmd := ledgerCmd("run", "Release funds past each merchant's delay and create the day's payouts", "", cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string, c ledgerv1.LedgerServiceClient) error {
			out := cmd.OutOrStdout()
			rep, err := c.RunPayouts(ctx, &ledgerv1.RunPayoutsRequest{Date: date, MerchantId: merchant})
			if err != nil {
				return apierr.From(err)
			}
			if d, perr := time.Parse(time.DateOnly, date); perr == nil && d.After(time.Now().UTC()) {
				fmt.Fprintf(out, "note: --date %s is in the future: the run releases what has matured by now (time is not simulated); in obol dev, --payout-delay 0 releases captures at once\n", date)
			}
			for _, r := range rep.Released {
				fmt.Fprintf(out, "released %s %s: %s (reserve %s, from reserve %s)\n", r.MerchantId, r.Currency, money.Format(r.Amount, r.Currency), money.Format(r.Reserved, r.Currency), money.Format(r.FromReserve, r.Currency))
			}
			for _, p := range rep.Payouts {
				fmt.Fprintf(out, "payout %s %s %s %s %s\n", p.Id, p.MerchantId, money.Format(p.Amount, p.Currency), p.Currency, p.Status)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintln(out, "skipped", s)
			}
			fmt.Fprintf(out, "batch %s: %d payout(s)\n", rep.Batch, len(rep.Payouts))
			return nil
		})
	cmd.Flags().StringVar(&date, "date", "", "run date YYYY-MM-DD (default today, UTC)")
	cmd.Flags().StringVar(&merchant, "merchant", "", "only this merchant (also pays out manual-schedule merchants)")
	return cmd
}
