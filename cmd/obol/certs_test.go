package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/devpki"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, path)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

// TestCertsCreate: the chain obol certs create makes verifies with
// crypto/x509 for each role: server auth for every daemon under each of its
// names (Kubernetes service names and loopback), client auth for the
// gateway with its URI SAN; keys are ECDSA P-256 and 0600; nothing is
// overwritten without --force.
func TestCertsCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"certs", "create", "--out", dir, "--dns", "obol.example.com", "--ip", "10.1.2.3", "--san", "vaultd=vault.example.com"}, &out))
	assert.Contains(t, out.String(), "gatewayd-client")

	ca := readCert(t, filepath.Join(dir, devpki.CACert))
	assert.True(t, ca.IsCA)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	servers := []struct {
		name  string
		hosts []string
	}{
		{"vaultd", []string{"vaultd.obol-cde.svc", "vaultd.obol-cde.svc.cluster.local", "vaultd", "localhost", "127.0.0.1", "::1", "obol.example.com", "10.1.2.3", "vault.example.com"}},
		{"gatewayd", []string{"gatewayd.obol-cde.svc", "gatewayd.obol-cde.svc.cluster.local", "localhost", "127.0.0.1"}},
		{"riskd", []string{"riskd.obol.svc", "riskd.obol.svc.cluster.local", "localhost", "127.0.0.1"}},
		{"ledgerd", []string{"ledgerd.obol.svc", "ledgerd.obol.svc.cluster.local", "localhost", "127.0.0.1"}},
		{"eventsd", []string{"eventsd.obol.svc", "eventsd.obol.svc.cluster.local", "localhost", "127.0.0.1"}},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, s.name+".pem"))
			for _, h := range s.hosts {
				_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
				assert.NoError(t, err, "server auth as %s", h)
			}
			_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vaultd.obol-cde.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			assert.Error(t, err, "a server certificate is no client certificate")
			if s.name != "vaultd" {
				assert.NoError(t, c.VerifyHostname("localhost"))
				assert.Error(t, c.VerifyHostname("vault.example.com"), "--san vaultd= is vaultd's only")
			}
			_, err = tls.LoadX509KeyPair(filepath.Join(dir, s.name+".pem"), filepath.Join(dir, s.name+"-key.pem"))
			require.NoError(t, err)
		})
	}
	t.Run("gateway client", func(t *testing.T) {
		c := readCert(t, filepath.Join(dir, "gatewayd-client.pem"))
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err)
		_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.Error(t, err, "the gateway's client certificate is no server certificate")
		require.Len(t, c.URIs, 1)
		assert.Equal(t, "spiffe://obol.local/gatewayd", c.URIs[0].String())
	})
	t.Run("operator client", func(t *testing.T) {
		c := readCert(t, filepath.Join(dir, devpki.OperatorClient+".pem"))
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err)
		_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.Error(t, err, "the operators' certificate is no server certificate")
		require.Len(t, c.URIs, 1)
		assert.Equal(t, "spiffe://obol.local/operator", c.URIs[0].String(), "its own identity, not the gateway's")
		assert.Empty(t, c.DNSNames)
	})
	t.Run("keys are P-256 and owner-only", func(t *testing.T) {
		keys, err := filepath.Glob(filepath.Join(dir, "*-key.pem"))
		require.NoError(t, err)
		require.Len(t, keys, 8) // CA, five daemons, gateway client, operator client
		for _, k := range keys {
			st, err := os.Stat(k)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), k)
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, filepath.Base(k[:len(k)-len("-key.pem")])+".pem"), k)
			require.NoError(t, err, k)
			ek, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
			require.True(t, ok, k)
			assert.Equal(t, elliptic.P256(), ek.Curve, k)
		}
	})
	t.Run("refuses to overwrite", func(t *testing.T) {
		before, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
		require.NoError(t, err)
		err = run(context.Background(), []string{"certs", "create", "--out", dir}, &bytes.Buffer{})
		require.ErrorIs(t, err, devpki.ErrExists)
		require.ErrorContains(t, err, "--force")
		after, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
		require.NoError(t, err)
		assert.Equal(t, before, after)
	})
	t.Run("reuse the CA to renew", func(t *testing.T) {
		old := readCert(t, filepath.Join(dir, "riskd.pem"))
		require.NoError(t, run(context.Background(), []string{"certs", "create", "--out", dir, "--reuse-ca", "--force", "--validity", "720h"}, &bytes.Buffer{}))
		renewed := readCert(t, filepath.Join(dir, "riskd.pem"))
		assert.NotEqual(t, old.SerialNumber, renewed.SerialNumber)
		assert.WithinDuration(t, time.Now().Add(720*time.Hour), renewed.NotAfter, time.Hour)
		_, err := renewed.Verify(x509.VerifyOptions{Roots: roots, DNSName: "riskd.obol.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		require.NoError(t, err, "signed by the same CA")
	})
	t.Run("--force replaces everything", func(t *testing.T) {
		require.NoError(t, run(context.Background(), []string{"certs", "create", "--out", dir, "--force"}, &bytes.Buffer{}))
		assert.NotEqual(t, ca.Raw, readCert(t, filepath.Join(dir, devpki.CACert)).Raw)
	})
}

// TestCertsCreateRefusesToOutliveReusedCA: renewing with --reuse-ca for
// longer than the CA has left is refused before anything is written (the
// certificates would stop verifying, unannounced, on the CA's last day).
func TestCertsCreateRefusesToOutliveReusedCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	require.NoError(t, run(context.Background(), []string{"certs", "create", "--out", dir, "--ca-validity", "720h", "--validity", "24h"}, &bytes.Buffer{}))
	before := readCert(t, filepath.Join(dir, "riskd.pem"))
	err := run(context.Background(), []string{"certs", "create", "--out", dir, "--reuse-ca", "--force", "--validity", "8760h"}, &bytes.Buffer{})
	require.ErrorIs(t, err, devpki.ErrOutlivesCA)
	require.ErrorContains(t, err, "--validity")
	assert.Equal(t, before.Raw, readCert(t, filepath.Join(dir, "riskd.pem")).Raw, "nothing rewritten")
}

// TestCertsCreateForceDoesNotFollowLinks: --force replaces a symbolic link
// planted in --out with the file; it wrote the key through the link, over
// its target, before.
func TestCertsCreateForceDoesNotFollowLinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	require.NoError(t, os.Mkdir(dir, 0o700))
	target := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(target, []byte("precious\n"), 0o644))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "vaultd-key.pem")))
	require.NoError(t, run(context.Background(), []string{"certs", "create", "--out", dir, "--force"}, &bytes.Buffer{}))
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "precious\n", string(b), "the link's target is untouched")
	st, err := os.Lstat(filepath.Join(dir, "vaultd-key.pem"))
	require.NoError(t, err)
	assert.True(t, st.Mode().IsRegular(), "the link was replaced by the key file")
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// TestCertsCreateRefusesBadInput: each refusal names the flag.
func TestCertsCreateRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad IP", []string{"--ip", "vault.example.com"}, "--ip"},
		{"bad DNS name", []string{"--dns", "bad_name!"}, "--dns/--ip"},
		{"unknown daemon in --san", []string{"--san", "frontend=x.example.com"}, "--san"},
		{"--san without a name", []string{"--san", "vaultd"}, "--san"},
		{"identity that is no URI", []string{"--gateway-identity", "gatewayd"}, "--gateway-identity"},
		{"gateway identity that is the operators'", []string{"--gateway-identity", "spiffe://obol.local/operator"}, "--gateway-identity"},
		{"reuse a missing CA", []string{"--reuse-ca"}, "ca.pem"},
		{"namespace with an underscore", []string{"--cde-namespace", "obol_cde"}, "--cde-namespace"},
		{"namespace with a slash", []string{"--core-namespace", "a/b"}, "--core-namespace"},
		{"upper-case namespace", []string{"--core-namespace", "Obol"}, "--core-namespace"},
		{"cluster domain with a space", []string{"--cluster-domain", "cluster local"}, "--cluster-domain"},
		{"certificates outliving a new CA", []string{"--ca-validity", "24h"}, "--validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			err := run(context.Background(), append([]string{"certs", "create", "--out", dir}, tt.args...), &bytes.Buffer{})
			require.ErrorContains(t, err, tt.want)
			if tt.name != "reuse a missing CA" {
				_, serr := os.Stat(filepath.Join(dir, devpki.CACert))
				assert.ErrorIs(t, serr, os.ErrNotExist, "nothing written")
			}
		})
	}
}
