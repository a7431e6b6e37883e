package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

func newPayoutsMarkCmd() *cobra.Command {
	return ledgerCmd("mark PAYOUT_ID paid|failed", "Record the bank's answer for a payout", "",
		func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return errors.New("usage: obol payouts mark PAYOUT_ID paid|failed")
			}
			return nil
		},
		func(ctx context.Context, cmd *cobra.Command, args []string, c ledgerv1.LedgerServiceClient) error {
			p, err := c.UpdatePayout(ctx, &ledgerv1.UpdatePayoutRequest{Id: args[0], Status: args[1]})
			if err != nil {
				return apierr.From(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "payout %s %s\n", p.Id, p.Status)
			return nil
		})
}
