// Package devpki makes the certificates for service-to-service mTLS: a
// private CA, server certificates, and client certificates carrying a
// service identity as a URI SAN (e.g. spiffe://obol.local/gatewayd).
// `obol dev` and the tests use Ensure (a dev CA and a localhost server
// certificate); `obol certs create` uses CreateCA and Issue to make a
// deployment's CA and every daemon's certificates (deploy/PKI.md).
// Every key is ECDSA P-256, written 0600. PAN-free.
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

// ErrExists: a file Create or Issue would write is already there (and
// overwriting was not asked for).
var ErrExists = errors.New("file exists")

// ErrOutlivesCA: a certificate would stay valid after the CA that signs
// it expires (it would stop verifying on the CA's last day, unannounced).
var ErrOutlivesCA = errors.New("certificate outlives its CA")

// PKI is a directory holding a CA and the certificates it issued.
type PKI struct {
	Dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// Ensure loads the CA in dir, creating CA and server certificate on first
// use (a concurrent first use may overwrite them: dev only).
func Ensure(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, CACert)); errors.Is(err, os.ErrNotExist) {
		if err := p.createCA("Obol development CA", 10*365*24*time.Hour, true); err != nil {
			return nil, err
		}
	} else if err := p.loadCA(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ServerCert)); errors.Is(err, os.ErrNotExist) {
		if err := p.Issue(Cert{Name: "server", CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: Loopback(), Server: true}, true); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// CreateCA makes a new CA (ca.pem, ca-key.pem) in dir, created 0700 if
// missing, valid for validity. Existing CA files are an ErrExists unless
// force.
func CreateCA(dir, commonName string, validity time.Duration, force bool) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir}
	if err := p.createCA(commonName, validity, force); err != nil {
		return nil, err
	}
	return p, nil
}

// Load reads the CA in dir (ca.pem, ca-key.pem) to issue more
// certificates with it.
func Load(dir string) (*PKI, error) {
	p := &PKI{Dir: dir}
	if err := p.loadCA(); err != nil {
		return nil, err
	}
	return p, nil
}

// Loopback is 127.0.0.1 and ::1.
func Loopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

// Cert describes one certificate to issue.
type Cert struct {
	// Name is the file stem: Name.pem and Name-key.pem.
	Name       string
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL
	// Server and Client are the extended key usages (serverAuth,
	// clientAuth); at least one is required.
	Server, Client bool
	// Validity defaults to two years.
	Validity time.Duration
}

// Files are the certificate and key paths c is written to in p.
func (p *PKI) Files(c Cert) (cert, key string) {
	return filepath.Join(p.Dir, c.Name+".pem"), filepath.Join(p.Dir, c.Name+"-key.pem")
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// writePEM writes a PEM file 0600: a new file only, unless force (then an
// existing file is removed first and a new one created). The file is always
// created with O_EXCL, so a symbolic link planted at path is never followed:
// with force it is removed, not written through (a key written over the
// link's target).
func writePEM(path, typ string, der []byte, force bool) error {
	if force {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s: %w (pass --force to overwrite)", path, ErrExists)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkFree fails with ErrExists when a path is taken (unless force), so
// that nothing is written when one file of a set is.
func checkFree(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w (pass --force to overwrite)", p, ErrExists)
		}
	}
	return nil
}

func (p *PKI) createCA(cn string, validity time.Duration, force bool) error {
	if err := checkFree(force, filepath.Join(p.Dir, CACert), filepath.Join(p.Dir, CAKey)); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
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
	if err := writePEM(filepath.Join(p.Dir, CAKey), "EC PRIVATE KEY", kder, force); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.Dir, CACert), "CERTIFICATE", der, force); err != nil {
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

// CANotAfter is when p's CA expires.
func (p *PKI) CANotAfter() time.Time { return p.caCert.NotAfter }

// Issue writes c.Name.pem and c.Name-key.pem, signed by p's CA. Existing
// files are an ErrExists unless force.
func (p *PKI) Issue(c Cert, force bool) error {
	if c.Name == "" || filepath.Base(c.Name) != c.Name {
		return fmt.Errorf("certificate name %q: a plain file name is required", c.Name)
	}
	if !c.Server && !c.Client {
		return fmt.Errorf("certificate %s: server or client usage is required", c.Name)
	}
	certPath, keyPath := p.Files(c)
	if err := checkFree(force, certPath, keyPath); err != nil {
		return err
	}
	if c.Validity <= 0 {
		c.Validity = 2 * 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	if end := p.CANotAfter(); now.Add(c.Validity).After(end) {
		return fmt.Errorf("certificate %s: valid until %s, the CA until %s: %w", c.Name, now.Add(c.Validity).UTC().Format(time.DateOnly), end.UTC().Format(time.DateOnly), ErrOutlivesCA)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: c.CommonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(c.Validity),
		KeyUsage: x509.KeyUsageDigitalSignature,
		DNSNames: c.DNSNames, IPAddresses: c.IPs, URIs: c.URIs,
	}
	if c.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if c.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", kder, force); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, force)
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
		c := Cert{Name: name, CommonName: name, Client: true}
		if identity != "" {
			c.URIs = []*url.URL{u}
		}
		// As Ensure, a concurrent first use may write it too: same content.
		if err := p.Issue(c, true); err != nil {
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
