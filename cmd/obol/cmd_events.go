package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newEventsCmd() *cobra.Command {
	return group("events", "Read events and resend them to webhook endpoints (through the gateway, with the merchant's secret key)",
		newEventsListCmd(), newEventsGetCmd(), newEventsResendCmd())
}

// dialEvents connects to the gateway's EventService with the merchant's
// secret key: --gateway-addr / OBOL_GATEWAY_ADDR and OBOL_SECRET_KEY, else a
// running obol dev's in --data-dir.
func dialEvents(ctx context.Context, c config.EventsClient) (eventsv1.EventServiceClient, context.Context, func(), error) {
	addr := c.GatewayAddr
	if addr == "" {
		if addr = devAddress(c.DataDir, addrGatewayGRPC); addr == "" {
			return nil, nil, nil, fmt.Errorf("no gateway address: set --gateway-addr (OBOL_GATEWAY_ADDR) or start obol dev with --data-dir %s", c.DataDir)
		}
	}
	key := c.SecretKey
	if key == "" {
		var err error
		if key, err = devCredential(c.DataDir, "secret_key"); err != nil {
			return nil, nil, nil, fmt.Errorf("OBOL_SECRET_KEY is not set and %w", err)
		}
	}
	conn, cctx, err := dialGRPC(ctx, addr, tlsFiles{caFlag: "--gateway-ca", ca: c.GatewayCA, cert: c.ClientCert}, key)
	if err != nil {
		return nil, nil, nil, err
	}
	return eventsv1.NewEventServiceClient(conn), cctx, func() { conn.Close() }, nil
}

// eventsCmd is an events verb (config.EventsClient) with its own flags,
// added by the caller; do runs with the client.
func eventsCmd(use, short string, args cobra.PositionalArgs, do func(ctx context.Context, cmd *cobra.Command, args []string, c eventsv1.EventServiceClient) error) *cobra.Command {
	return clientCmd(&cobra.Command{Use: use, Short: short, Args: args}, dialEvents, do)
}
