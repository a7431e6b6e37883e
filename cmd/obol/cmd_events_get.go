package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/obolpay/obol/internal/apierr"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newEventsGetCmd() *cobra.Command {
	return eventsCmd("get EVENT_ID", "Print an event (JSON)", cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string, c eventsv1.EventServiceClient) error {
			e, err := c.GetEvent(ctx, &eventsv1.GetEventRequest{Id: args[0]})
			if err != nil {
				return apierr.From(err)
			}
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(e)
			if err != nil {
				return err
			}
			// protojson varies its whitespace on purpose: print it stable.
			var out bytes.Buffer
			if err := json.Indent(&out, b, "", "  "); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.String())
			return nil
		})
}
