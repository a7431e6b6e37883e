package devpki

import (
	"net"
	"net/url"
	"slices"
	"time"
)

// Daemons are the daemons that serve TLS, each with whether it runs in the
// cardholder-data environment's Kubernetes namespace (vaultd, gatewayd)
// or the core's (deploy/kubernetes).
var Daemons = []struct {
	Name string
	CDE  bool
}{{"vaultd", true}, {"gatewayd", true}, {"riskd", false}, {"ledgerd", false}, {"eventsd", false}}

// GatewayClient is the file stem of the gateway's client certificate.
const GatewayClient = "gatewayd-client"

// OperatorClient is the file stem of the operators' client certificate
// (obol's verbs toward a daemon started with a client CA, e.g. obol ledger
// toward ledgerd): client auth with a URI SAN of its own, never the
// gateway's identity, so that an operator's workstation holds no
// certificate vaultd reveals cards to.
const OperatorClient = "operator"

// Deployment describes a deployment's certificates (obol certs create).
type Deployment struct {
	CDENamespace, CoreNamespace, ClusterDomain string
	// DNS and IPs are added to every server certificate; SANs[daemon] to
	// that daemon's only (DNS names or IP addresses).
	DNS  []string
	IPs  []net.IP
	SANs map[string][]string
	// GatewayIdentity is the URI SAN of the gateway's client certificate.
	GatewayIdentity *url.URL
	Validity        time.Duration
}

// Plan is every certificate of d: a server certificate per daemon (file
// stem: its name) for NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.DOMAIN,
// localhost, 127.0.0.1 and ::1 plus the extra names, and the gateway's
// client certificate (GatewayClient) carrying GatewayIdentity, and the
// operators' (OperatorClient) carrying OperatorIdentity.
func (d Deployment) Plan() []Cert {
	var plan []Cert
	for _, dm := range Daemons {
		ns := d.CoreNamespace
		if dm.CDE {
			ns = d.CDENamespace
		}
		svc := dm.Name + "." + ns + ".svc"
		dns := append([]string{dm.Name, dm.Name + "." + ns, svc, svc + "." + d.ClusterDomain, "localhost"}, d.DNS...)
		ips := append(Loopback(), d.IPs...)
		for _, n := range d.SANs[dm.Name] {
			if ip := net.ParseIP(n); ip != nil {
				ips = append(ips, ip)
			} else {
				dns = append(dns, n)
			}
		}
		plan = append(plan, Cert{Name: dm.Name, CommonName: svc, DNSNames: slices.Compact(dns), IPs: ips, Server: true, Validity: d.Validity})
	}
	return append(plan,
		Cert{Name: GatewayClient, CommonName: "gatewayd", URIs: []*url.URL{d.GatewayIdentity}, Client: true, Validity: d.Validity},
		Cert{Name: OperatorClient, CommonName: "obol operator", URIs: []*url.URL{d.OperatorIdentity()}, Client: true, Validity: d.Validity})
}

// OperatorIdentity is the operators' URI SAN: GatewayIdentity with the
// path /operator (spiffe://obol.local/operator by default).
func (d Deployment) OperatorIdentity() *url.URL {
	return &url.URL{Scheme: d.GatewayIdentity.Scheme, Host: d.GatewayIdentity.Host, Path: "/operator"}
}
