package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/devpki"
)

func newCertsCreateCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "create",
		Short: "Create a CA, a server certificate per daemon and the gateway's client certificate (ECDSA P-256, keys 0600)",
		Long: `Create a CA, a server certificate per daemon and the gateway's client certificate (ECDSA P-256, keys 0600).

Files in --out: ca.pem and ca-key.pem (keep the key offline); vaultd.pem,
gatewayd.pem, riskd.pem, ledgerd.pem, eventsd.pem (serverAuth, each with its
-key.pem): DNS names NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.DOMAIN
(vaultd and gatewayd in --cde-namespace, the others in --core-namespace),
localhost, 127.0.0.1 and ::1, plus --dns, --ip and --san; and
gatewayd-client.pem (clientAuth, URI SAN --gateway-identity), the only
certificate vaultd reveals cards to; and operator.pem (clientAuth, URI SAN
/operator under the gateway identity's trust domain) for obol's verbs
toward a daemon with a client CA (obol ledger --client-cert): never give an
operator the gateway's certificate. Nothing is overwritten without --force.
deploy/PKI.md says which daemon takes which file.`,
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.Certs) error {
		plan, err := certPlan(c)
		if err != nil {
			return err
		}
		var p *devpki.PKI
		if c.ReuseCA {
			if p, err = devpki.Load(c.Out); err == nil && time.Now().Add(c.Validity).After(p.CANotAfter()) {
				err = fmt.Errorf("--validity: the certificates would outlive the CA in %s (valid until %s): %w; give a shorter --validity or make a new CA", c.Out, p.CANotAfter().UTC().Format(time.DateOnly), devpki.ErrOutlivesCA)
			}
		} else {
			if c.Validity > c.CAValidity {
				return fmt.Errorf("--validity: the certificates would outlive the CA (--ca-validity): %w", devpki.ErrOutlivesCA)
			}
			p = &devpki.PKI{Dir: c.Out}
			if err = certsFree(p, plan, c.Force); err == nil {
				p, err = devpki.CreateCA(c.Out, "Obol CA", c.CAValidity, c.Force)
			}
		}
		if err != nil {
			return err
		}
		if err := certsFree(p, plan, c.Force); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if !c.ReuseCA {
			fmt.Fprintf(out, "CA              %s (key %s: keep it offline)\n", filepath.Join(c.Out, devpki.CACert), filepath.Join(c.Out, devpki.CAKey))
		}
		for _, crt := range plan {
			if err := p.Issue(crt, c.Force); err != nil {
				return err
			}
			cert, _ := p.Files(crt)
			sans := slices.Clone(crt.DNSNames)
			for _, ip := range crt.IPs {
				sans = append(sans, ip.String())
			}
			for _, u := range crt.URIs {
				sans = append(sans, u.String())
			}
			usage := "serverAuth"
			if crt.Client {
				usage = "clientAuth"
			}
			fmt.Fprintf(out, "%-15s %s %s: %s\n", crt.Name, cert, usage, strings.Join(sans, ", "))
		}
		return nil
	})
}

// certsFree refuses (unless force) when a file of the plan, or the CA, is
// already there, before anything is written.
func certsFree(p *devpki.PKI, plan []devpki.Cert, force bool) error {
	if force {
		return nil
	}
	var taken []string
	paths := []string{}
	for _, c := range plan {
		cert, key := p.Files(c)
		paths = append(paths, cert, key)
	}
	for _, path := range paths {
		if exists(path) {
			taken = append(taken, path)
		}
	}
	if len(taken) > 0 {
		return fmt.Errorf("%s: %w (pass --force to overwrite)", strings.Join(taken, ", "), devpki.ErrExists)
	}
	return nil
}

// certPlan is every certificate obol certs create issues for c.
func certPlan(c config.Certs) ([]devpki.Cert, error) {
	extraDNS, extraIPs, err := splitSANs("--dns/--ip", append(slices.Clone(c.DNS), c.IPs...))
	if err != nil {
		return nil, err
	}
	for _, ip := range c.IPs {
		if net.ParseIP(strings.TrimSpace(ip)) == nil {
			return nil, fmt.Errorf("--ip: %q is not an IP address", ip)
		}
	}
	for _, ns := range []struct{ flag, v string }{{"--cde-namespace", c.CDENamespace}, {"--core-namespace", c.CoreNamespace}} {
		if !validLabel(ns.v) {
			return nil, fmt.Errorf("%s: %q is not a Kubernetes namespace name (lower-case letters, digits and hyphens, at most 63)", ns.flag, ns.v)
		}
	}
	if strings.HasPrefix(c.ClusterDomain, "*.") || !validDNSName(c.ClusterDomain) {
		return nil, fmt.Errorf("--cluster-domain: %q is not a DNS name", c.ClusterDomain)
	}
	per := map[string][]string{}
	for _, kv := range c.SANs {
		d, name, ok := strings.Cut(kv, "=")
		if !ok || name == "" || !slices.ContainsFunc(devpki.Daemons, func(x struct {
			Name string
			CDE  bool
		}) bool {
			return x.Name == d
		}) {
			return nil, fmt.Errorf("--san: %q must be daemon=name with daemon one of vaultd, gatewayd, riskd, ledgerd, eventsd", kv)
		}
		if _, _, err := splitSANs("--san", []string{name}); err != nil {
			return nil, err
		}
		per[d] = append(per[d], strings.ToLower(strings.TrimSpace(name)))
	}
	id, err := url.Parse(c.GatewayIdentity)
	if err != nil || id.Scheme == "" || id.Host == "" {
		return nil, fmt.Errorf("--gateway-identity: %q must be a URI such as spiffe://obol.local/gatewayd", c.GatewayIdentity)
	}
	if id.Path == "/operator" {
		return nil, fmt.Errorf("--gateway-identity: %q is the operators' identity (their certificate must never reveal cards)", c.GatewayIdentity)
	}
	return devpki.Deployment{CDENamespace: c.CDENamespace, CoreNamespace: c.CoreNamespace, ClusterDomain: c.ClusterDomain,
		DNS: extraDNS, IPs: extraIPs, SANs: per, GatewayIdentity: id, Validity: c.Validity}.Plan(), nil
}

// splitSANs sorts names into DNS names and IP addresses, refusing what is
// neither.
func splitSANs(flag string, names []string) (dns []string, ips []net.IP, err error) {
	for _, n := range names {
		n = strings.TrimSpace(n)
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if !validDNSName(n) {
			return nil, nil, fmt.Errorf("%s: %q is neither a DNS name nor an IP address", flag, n)
		}
		dns = append(dns, strings.ToLower(n))
	}
	return dns, ips, nil
}

// validDNSName accepts host names (letters, digits, hyphens, dots; a
// leading "*." wildcard).
func validDNSName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validLabel accepts a Kubernetes namespace name (an RFC 1123 label).
func validLabel(n string) bool {
	if n == "" || len(n) > 63 || n[0] == '-' || n[len(n)-1] == '-' {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
