package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/internal/telemetry"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/vault/vaultd"
)

// Names of the addresses a running obol dev records in its lock file.
const (
	addrLedgerGRPC  = "ledger gRPC"
	addrGatewayGRPC = "gateway gRPC"
)

// defaultLedgerAddr is ledgerd's default gRPC address.
const defaultLedgerAddr = "127.0.0.1:9092"

// devAddress is the address named name that a running obol dev recorded in
// its data dir's lock file ("" if none: a killed one's record names a dead
// process). It only reads the file: probing the lock could make an obol dev
// that starts at that moment refuse to run.
func devAddress(dataDir, name string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, DevLockFile))
	if err != nil {
		return ""
	}
	var info devLockInfo
	if json.Unmarshal(b, &info) != nil || !processAlive(info.PID) {
		return ""
	}
	return info.Addresses[name]
}

// devCredential is a token from obol dev's credentials file in dataDir.
func devCredential(dataDir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, vaultd.CredentialsFile))
	if err != nil {
		return "", fmt.Errorf("no obol dev credentials file in --data-dir %s", dataDir)
	}
	creds := map[string]string{}
	if err := json.Unmarshal(b, &creds); err != nil {
		return "", fmt.Errorf("obol dev credentials in --data-dir %s: %w", dataDir, err)
	}
	if creds[name] == "" {
		return "", fmt.Errorf("the obol dev credentials in --data-dir %s have no %s (start obol dev once)", dataDir, name)
	}
	return creds[name], nil
}

// ledgerAddr is where the ledger verbs dial: --ledger-addr or
// OBOL_LEDGER_ADDR, else the running obol dev's in --data-dir, else, with
// an explicit OBOL_LEDGER_TOKEN, ledgerd's default. With obol dev's token
// and no obol dev running it is an error: dialling the default would hand
// that token to whatever listens there (another obol dev, a ledgerd) and
// run the verb against the wrong ledger.
func ledgerAddr(c config.LedgerClient) (string, error) {
	if c.LedgerAddr != "" {
		return c.LedgerAddr, nil
	}
	if a := devAddress(c.DataDir, addrLedgerGRPC); a != "" {
		return a, nil
	}
	if c.LedgerToken != "" {
		return defaultLedgerAddr, nil
	}
	return "", fmt.Errorf("no obol dev is running with --data-dir %s: start it, or give the ledger's address and token (--ledger-addr or OBOL_LEDGER_ADDR, and OBOL_LEDGER_TOKEN)", c.DataDir)
}

// dialLedger connects to ledgerd with its service token: OBOL_LEDGER_TOKEN,
// else obol dev's from --data-dir.
func dialLedger(ctx context.Context, c config.LedgerClient) (ledgerv1.LedgerServiceClient, context.Context, func(), error) {
	token := c.LedgerToken
	if token == "" {
		var err error
		if token, err = devCredential(c.DataDir, "ledger_token"); err != nil {
			return nil, nil, nil, fmt.Errorf("OBOL_LEDGER_TOKEN is not set and %w", err)
		}
	}
	addr, err := ledgerAddr(c)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, cctx, err := dialGRPC(ctx, addr, tlsFiles{caFlag: "--ledger-ca", ca: c.LedgerCA, cert: c.ClientCert}, token)
	if err != nil {
		return nil, nil, nil, err
	}
	return ledgerv1.NewLedgerServiceClient(conn), cctx, func() { conn.Close() }, nil
}

// tlsFiles are a verb's TLS settings for one daemon: the CA of its
// server certificate (its flag named caFlag, e.g. --ledger-ca) and the
// client certificate to present (config.ClientCert).
type tlsFiles struct {
	caFlag, ca string
	cert       config.ClientCert
}

// errPlaintextRemote: a verb was asked to dial a daemon beyond loopback
// without its CA, which would send its token or secret key in clear.
var errPlaintextRemote = errors.New("plaintext gRPC is for loopback only")

// credentials are the transport credentials toward addr: TLS trusting the
// CA, with the client certificate when one is given; plaintext without a
// CA, to a loopback address only (obol dev): beyond it the token or secret
// key would cross the network in clear. A client certificate without TLS,
// or half of one, is refused: it would be silently unused.
func (f tlsFiles) credentials(addr string) (credentials.TransportCredentials, error) {
	c := f.cert
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("--client-cert and --client-key (OBOL_CLIENT_CERT, OBOL_CLIENT_KEY) must be given together")
	}
	if f.ca == "" {
		if c.Cert != "" {
			return nil, fmt.Errorf("--client-cert (OBOL_CLIENT_CERT) needs TLS: give the daemon's CA with %s", f.caFlag)
		}
		if !serve.IsLoopback(addr) {
			return nil, fmt.Errorf("%w: give the daemon's CA with %s to dial %s over TLS (the credential would cross the network in clear)", errPlaintextRemote, f.caFlag, addr)
		}
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.caFlag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificates", f.caFlag, f.ca)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.Cert != "" {
		kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--client-cert/--client-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return credentials.NewTLS(tc), nil
}

// dialGRPC connects to addr with f's credentials (see tlsFiles) and
// returns ctx carrying token as the bearer credential.
func dialGRPC(ctx context.Context, addr string, f tlsFiles, token string) (*grpc.ClientConn, context.Context, error) {
	creds, err := f.credentials(addr)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), telemetry.GRPCClientOption())
	if err != nil {
		return nil, nil, err
	}
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), nil
}

// ledgerCmd is a ledger or payouts verb that talks to ledgerd
// (config.LedgerClient) with its own flags, added by the caller; do runs
// with the client.
func ledgerCmd(use, short, long string, args cobra.PositionalArgs, do func(ctx context.Context, cmd *cobra.Command, args []string, c ledgerv1.LedgerServiceClient) error) *cobra.Command {
	return clientCmd(&cobra.Command{Use: use, Short: short, Long: long, Args: args}, dialLedger, do)
}

// clientCmd makes cmd a verb with config C (its flags bound to cmd's) that
// dials a client with dial and runs do with it.
func clientCmd[C, T any](cmd *cobra.Command, dial func(context.Context, C) (T, context.Context, func(), error), do func(ctx context.Context, cmd *cobra.Command, args []string, c T) error) *cobra.Command {
	return loadCmd(cmd, func(cmd *cobra.Command, args []string, c C) error {
		client, cctx, closer, err := dial(cmd.Context(), c)
		if err != nil {
			return err
		}
		defer closer()
		return do(cctx, cmd, args, client)
	})
}
