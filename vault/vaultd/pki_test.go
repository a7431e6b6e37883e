package vaultd_test

import (
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/vault/service"
)

// TestDeploymentCertsGatewayIdentity: with the certificates obol certs
// create makes (devpki.Deployment, its plan), read from files as cmd/vaultd
// reads them, a real vaultd reveals a card to the gateway's client
// certificate and refuses one from the same CA without the URI SAN, and a
// server certificate used as a client certificate.
func TestDeploymentCertsGatewayIdentity(t *testing.T) {
	s := newStack(t, stackOpts{})
	dir := t.TempDir()
	p, err := devpki.CreateCA(dir, "Obol CA", 24*time.Hour, false)
	require.NoError(t, err)
	id, err := url.Parse(service.DefaultGatewayIdentity)
	require.NoError(t, err)
	for _, c := range (devpki.Deployment{CDENamespace: "obol-cde", CoreNamespace: "obol", ClusterDomain: "cluster.local", GatewayIdentity: id, Validity: time.Hour}).Plan() {
		require.NoError(t, p.Issue(c, false))
	}
	// Same CA, client usage, CN gatewayd, no URI SAN.
	require.NoError(t, p.Issue(devpki.Cert{Name: "no-uri", CommonName: "gatewayd", Client: true, Validity: time.Hour}, false))

	s.stop()
	s.cfg.TLS = nil
	s.cfg.TLSCertFile, s.cfg.TLSKeyFile = filepath.Join(dir, "vaultd.pem"), filepath.Join(dir, "vaultd-key.pem")
	s.cfg.ClientCAFile = filepath.Join(dir, devpki.CACert)
	s.pki = p // clients trust this CA and load its certificates by name
	s.start()

	tok := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, ""))
	require.EqualValues(t, 200, tok.status, "tokenize: %s", tok.raw)
	gateway := s.grpcClient(devpki.GatewayClient, service.DefaultGatewayIdentity)
	c, _, err := s.detokenize(gateway, s.a.MerchantID, tok.str("token"), false)
	require.NoError(t, err, "the gateway's client certificate reveals")
	require.Equal(t, "4242", c.Number.Last4())
	c.Wipe()

	tests := []struct {
		name string
		cert string
		code codes.Code
	}{
		{"client certificate without the URI SAN", "no-uri", codes.PermissionDenied},
		{"the operators' client certificate", devpki.OperatorClient, codes.PermissionDenied},
		{"no client certificate", "", codes.PermissionDenied},
		{"a daemon's server certificate as client", "riskd", codes.Unavailable}, // refused in the handshake: no clientAuth
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.detokenize(s.grpcClient(tt.cert, ""), s.a.MerchantID, tok.str("token"), false)
			require.Error(t, err)
			require.Equal(t, tt.code, status.Code(err), "%v", err)
		})
	}
}
