package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/telemetry"
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
	creds := insecure.NewCredentials()
	if c.GatewayCA != "" {
		pem, err := os.ReadFile(c.GatewayCA)
		if err != nil {
			return nil, nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("%s: no PEM certificates", c.GatewayCA)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), telemetry.GRPCClientOption())
	if err != nil {
		return nil, nil, nil, err
	}
	return eventsv1.NewEventServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key), func() { conn.Close() }, nil
}

// eventsCmd is an events verb (config.EventsClient) with its own flags,
// added by the caller; do runs with the client.
func eventsCmd(use, short string, args cobra.PositionalArgs, do func(ctx context.Context, cmd *cobra.Command, args []string, c eventsv1.EventServiceClient) error) *cobra.Command {
	var c config.EventsClient
	cmd := &cobra.Command{Use: use, Short: short, Args: args}
	l := bind(cmd, &c)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := l.Load(); err != nil {
			return err
		}
		ec, cctx, closer, err := dialEvents(cmd.Context(), c)
		if err != nil {
			return err
		}
		defer closer()
		return do(cctx, cmd, args, ec)
	}
	return cmd
}
