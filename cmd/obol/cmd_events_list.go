package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newEventsListCmd() *cobra.Command {
	var types []string
	var limit int32
	var object string
	cmd := eventsCmd("list", "List the merchant's events, newest first", cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string, c eventsv1.EventServiceClient) error {
			if limit < 1 || limit > 100 {
				return fmt.Errorf("--limit %d: must be 1-100", limit)
			}
			rep, err := c.ListEvents(ctx, &eventsv1.ListEventsRequest{PageSize: limit, Types: types, ObjectId: object})
			if err != nil {
				return apierr.From(err)
			}
			out := cmd.OutOrStdout()
			for _, e := range rep.Events {
				fmt.Fprintf(out, "%s %s %s %s %s\n", e.Id, e.CreatedAt.AsTime().Format(time.RFC3339), e.Type, e.ObjectType, e.ObjectId)
			}
			if len(rep.Events) == 0 {
				fmt.Fprintln(out, "no events")
			}
			return nil
		})
	cmd.Flags().StringSliceVar(&types, "type", nil, "only these event types (repeat or comma-separate), e.g. payment.captured")
	cmd.Flags().Int32Var(&limit, "limit", 20, "how many (1-100)")
	cmd.Flags().StringVar(&object, "object", "", "only the events of this object id (e.g. a payment id)")
	return cmd
}
