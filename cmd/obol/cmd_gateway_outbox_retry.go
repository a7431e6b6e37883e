package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	paystore "github.com/obolpay/obol/proxy/store"
)

func newGatewayOutboxRetryCmd() *cobra.Command {
	var all bool
	cmd := outboxCmd("retry (OUTBOX_ID | --all)", "Requeue dead entries; the gateway's sweeper delivers them", cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string, st *paystore.Store) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			if (id == "") == !all {
				return errors.New("obol gateway outbox retry: name one OUTBOX_ID or --all")
			}
			n, err := st.OutboxRetry(ctx, id, time.Now())
			if err != nil {
				return err
			}
			if id != "" && n == 0 {
				return fmt.Errorf("no dead outbox entry %q", id)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead entries queued again; the gateway's sweeper delivers them\n", n)
			return nil
		})
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead entry")
	return cmd
}
