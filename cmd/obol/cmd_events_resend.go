package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newEventsResendCmd() *cobra.Command {
	var endpoint string
	cmd := eventsCmd("resend EVENT_ID --endpoint WE_ID", "Deliver an event again to a webhook endpoint (same webhook-id)", cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string, c eventsv1.EventServiceClient) error {
			if endpoint == "" {
				return errors.New("--endpoint is required (the webhook endpoint's id, we_…)")
			}
			d, err := c.RedeliverEvent(ctx, &eventsv1.RedeliverEventRequest{Id: args[0], EndpointId: endpoint})
			if err != nil {
				return apierr.From(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s to %s scheduled (delivery %s)\n", d.EventId, d.Status, d.EndpointId, d.Id)
			return nil
		})
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the webhook endpoint (we_…)")
	return cmd
}
