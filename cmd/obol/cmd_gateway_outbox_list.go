package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/proxy/service"
	paystore "github.com/obolpay/obol/proxy/store"
)

func newGatewayOutboxListCmd() *cobra.Command {
	var state string
	var limit int
	cmd := outboxCmd("list", "List the outbox's entries", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string, st *paystore.Store) error {
		if state != "" && state != service.OutboxDead && state != service.OutboxPending {
			return errors.New("--state must be dead or pending")
		}
		if limit <= 0 {
			return errors.New("--limit must be positive")
		}
		es, err := st.OutboxList(ctx, state, limit)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPAYMENT\tSTATE\tATTEMPTS\tLAST ERROR\tNEXT ATTEMPT\tCREATED")
		for _, e := range es {
			next := e.NextAttemptAt.Format(time.RFC3339)
			if e.State == service.OutboxDead {
				next = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.PaymentID, e.State, e.Attempts, e.LastError, next, e.CreatedAt.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d entries\n", len(es))
		return nil
	})
	cmd.Flags().StringVar(&state, "state", "", "list only entries in this state: dead or pending")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many entries")
	return cmd
}
