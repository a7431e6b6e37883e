// Package devpki makes the certificates `obol dev` and the tests use for
// service-to-service mTLS: a private CA, a server certificate for localhost,
// and client certificates carrying a service identity as a URI SAN (e.g.
// spiffe://obol.local/gatewayd). Production supplies its own PKI through
// vaultd's TLS flags. PAN-free.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Files in a PKI directory.
const (
	CACert     = "ca.pem"
	CAKey      = "ca-key.pem"
	ServerCert = "server.pem"
	ServerKey  = "server-key.pem"
)

// PKI is a directory of dev certificates.
type PKI struct {
	Dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// Ensure loads the CA in dir, creating CA and server certificate on first use.
func Ensure(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, CACert)); errors.Is(err, os.ErrNotExist) {
		if err := p.createCA(); err != nil {
			return nil, err
		}
	} else if err := p.loadCA(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ServerCert)); errors.Is(err, os.ErrNotExist) {
		if err := p.issue("server", "localhost", nil, true); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func (p *PKI) createCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "Obol development CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.Dir, CAKey), "EC PRIVATE KEY", kder); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.Dir, CACert), "CERTIFICATE", der); err != nil {
		return err
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	return nil
}

func (p *PKI) loadCA() error {
	c, err := tls.LoadX509KeyPair(filepath.Join(p.Dir, CACert), filepath.Join(p.Dir, CAKey))
	if err != nil {
		return fmt.Errorf("dev CA in %s: %w", p.Dir, err)
	}
	p.caCert, err = x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return err
	}
	k, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("dev CA key in %s is not ECDSA", p.Dir)
	}
	p.caKey = k
	return nil
}

// issue writes <name>.pem and <name>-key.pem.
func (p *PKI) issue(name, cn string, uri *url.URL, server bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(2, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if uri != nil {
		tmpl.URIs = []*url.URL{uri}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.Dir, name+"-key.pem"), "EC PRIVATE KEY", kder); err != nil {
		return err
	}
	return writePEM(filepath.Join(p.Dir, name+".pem"), "CERTIFICATE", der)
}

// ClientCert returns (creating on first use) a client certificate named name
// carrying identity as its URI SAN.
func (p *PKI) ClientCert(name, identity string) (tls.Certificate, error) {
	certPath := filepath.Join(p.Dir, name+".pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		u, err := url.Parse(identity)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("identity %q: %w", identity, err)
		}
		if err := p.issue(name, name, u, false); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.LoadX509KeyPair(certPath, filepath.Join(p.Dir, name+"-key.pem"))
}

// ServerTLS is a server config that requests (but does not require) client
// certificates signed by the dev CA: merchants authenticate with API keys,
// services with certificates.
func (p *PKI) ServerTLS() (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(p.Dir, ServerCert), filepath.Join(p.Dir, ServerKey))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, ClientCAs: p.Pool(), ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}, nil
}

// Pool contains the dev CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return pool
}

// ClientTLS is a client config presenting cert and trusting the dev CA.
func (p *PKI) ClientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.Pool(), MinVersion: tls.VersionTLS12}
}
