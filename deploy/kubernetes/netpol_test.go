package kubernetes_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The PCI reachability matrix: who may open a connection to whom. The
// NetworkPolicies of each built overlay are fed to the cyclonus analyser
// (github.com/mattfenwick/cyclonus/pkg/matcher), which answers, for each cell,
// whether the traffic is allowed; every cell must match. Beyond the table,
// every other source, destination and port of the modelled cluster must be
// denied (sweep in checkMatrix).

// cell is one entry of the matrix. to names a pod or an address of the
// world; port 0 means the acquirer's port in that world.
type cell struct {
	from, to string
	port     int32
	proto    corev1.Protocol
	allowed  bool
}

func allow(from, to string, port int32) cell { return cell{from, to, port, corev1.ProtocolTCP, true} }
func deny(from, to string, port int32) cell  { return cell{from, to, port, corev1.ProtocolTCP, false} }

func (c cell) String() string {
	verb := "must not reach"
	if c.allowed {
		verb = "must reach"
	}
	return fmt.Sprintf("%s %s %s:%d/%s", c.from, verb, c.to, c.port, c.proto)
}

// pciMatrix holds for every overlay; a world adds its own cells.
var pciMatrix = []cell{
	// The cardholder-data environment's entry points.
	allow("ingress", "vaultd", 8080), // tokenize, hosted fields
	allow("gatewayd", "vaultd", 9090),
	allow("ingress", "gatewayd", 8083),
	allow("ingress", "gatewayd", 9093),
	deny("ingress", "vaultd", 9090), // reveal is for gatewayd only
	deny("internet", "vaultd", 8080),
	deny("internet", "vaultd", 9090),
	deny("internet", "gatewayd", 8083),
	deny("other-app", "vaultd", 8080),
	deny("other-app", "gatewayd", 9093),
	deny("rogue-cde", "vaultd", 9090),
	deny("rogue-cde", "vaultd", 8080),
	deny("vaultd", "gatewayd", 8083),
	deny("vaultd", "gatewayd", 9093),
	// Outside the CDE: nothing reaches into it.
	deny("riskd", "vaultd", 9090),
	deny("riskd", "vaultd", 8080),
	deny("riskd", "gatewayd", 9093),
	deny("riskd", "gatewayd", 8083),
	deny("ledgerd", "gatewayd", 8083),
	deny("ledgerd", "gatewayd", 9093),
	deny("ledgerd", "vaultd", 9090),
	deny("eventsd", "vaultd", 9090),
	deny("eventsd", "vaultd", 8080),
	deny("eventsd", "gatewayd", 9093),
	deny("rogue-obol", "vaultd", 9090),
	deny("riskd", "cde-postgres", 5432),
	deny("riskd", "cvc-redis", 6379),
	deny("riskd", "vault", 8200),
	deny("ledgerd", "cde-postgres", 5432),
	deny("ledgerd", "vault", 8200),
	deny("eventsd", "cde-postgres", 5432),
	deny("eventsd", "cvc-redis", 6379),
	deny("eventsd", "vault", 8200),
	// gatewayd: vaultd, riskd, ledgerd, eventsd, its datastores, the acquirers.
	allow("gatewayd", "riskd", 9091),
	allow("gatewayd", "ledgerd", 9092),
	allow("gatewayd", "eventsd", 9094),
	allow("gatewayd", "cde-postgres", 5432),
	allow("gatewayd", "gw-redis", 6379),
	allow("gatewayd", "acquirer", 0),
	deny("gatewayd", "internet", 443),
	deny("gatewayd", "vault", 8200),
	deny("gatewayd", "riskd", 8081),
	deny("gatewayd", "ledgerd", 8082),
	deny("gatewayd", "postgres", 5432),
	deny("gatewayd", "metadata", 80),
	// vaultd: Vault, its PostgreSQL and the CVC Redis only.
	allow("vaultd", "vault", 8200),
	allow("vaultd", "cde-postgres", 5432),
	allow("vaultd", "cvc-redis", 6379),
	deny("vaultd", "internet", 443),
	deny("vaultd", "acquirer", 0),
	deny("vaultd", "riskd", 9091),
	deny("vaultd", "eventsd", 9094),
	deny("vaultd", "postgres", 5432),
	deny("vaultd", "metadata", 80),
	// riskd, ledgerd: their own datastores (and eventsd for the ledger).
	allow("riskd", "redis", 6379),
	allow("ledgerd", "postgres", 5432),
	allow("ledgerd", "eventsd", 9094),
	deny("riskd", "internet", 443),
	deny("riskd", "ledgerd", 9092),
	deny("riskd", "postgres", 5432),
	deny("ledgerd", "internet", 443),
	deny("ledgerd", "riskd", 9091),
	deny("ingress", "riskd", 9091),
	deny("ingress", "ledgerd", 9092),
	deny("internet", "riskd", 9091),
	// eventsd: webhook delivery to the internet, its database, no CDE.
	allow("eventsd", "postgres", 5432),
	allow("eventsd", "internet", 443),
	allow("eventsd", "internet", 8443),
	allow("eventsd", "internet", 80),
	deny("eventsd", "riskd", 9091),
	deny("eventsd", "ledgerd", 9092),
	deny("eventsd", "metadata", 80),
	deny("eventsd", "redis", 6379),
	deny("internet", "eventsd", 9094),
	deny("ingress", "eventsd", 9094),
	// DNS for every pod of both namespaces.
	{"vaultd", "kube-dns", 53, corev1.ProtocolUDP, true},
	{"gatewayd", "kube-dns", 53, corev1.ProtocolUDP, true},
	{"riskd", "kube-dns", 53, corev1.ProtocolUDP, true},
	{"eventsd", "kube-dns", 53, corev1.ProtocolTCP, true},
}

// peer is a pod or an address of the modelled cluster.
type peer struct {
	name    string
	traffic *matcher.TrafficPeer
	ports   []corev1.ContainerPort // a pod's, or the ports tried on an address
	ours    bool                   // a pod in a namespace of the manifests
}

// world is one overlay's cluster: its pods, the pods around them and the
// addresses outside.
type world struct {
	peers         map[string]*peer
	acquirerPort  int32
	extra         []cell // cells of this overlay only
	ourNamespaces []string
}

func tcp(ports ...int32) []corev1.ContainerPort {
	var ps []corev1.ContainerPort
	for _, p := range ports {
		ps = append(ps, corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	return ps
}

// newWorld models the cluster of a built overlay: every Deployment's pods
// (labels from the pod template, namespace labels from the Namespace
// objects, pod IPs in 10.244.0.0/16), kube-dns, an ingress-nginx controller,
// an unrelated app, unlabelled "rogue" pods in both namespaces, and the
// addresses of the datastores, the acquirers, the metadata service and the
// internet.
func newWorld(t *testing.T, dir string, o *objects) *world {
	t.Helper()
	w := &world{peers: map[string]*peer{}}
	nsLabels := map[string]map[string]string{}
	for _, ns := range o.namespaces {
		l := map[string]string{"kubernetes.io/metadata.name": ns.Name}
		for k, v := range ns.Labels {
			l[k] = v
		}
		nsLabels[ns.Name] = l
		w.ourNamespaces = append(w.ourNamespaces, ns.Name)
	}
	n := 0
	pod := func(name, ns string, labels map[string]string, ports []corev1.ContainerPort) {
		n++
		l, ok := nsLabels[ns]
		if !ok {
			l = map[string]string{"kubernetes.io/metadata.name": ns}
		}
		w.peers[name] = &peer{name: name, ports: ports, ours: slices.Contains(w.ourNamespaces, ns), traffic: &matcher.TrafficPeer{
			IP:       fmt.Sprintf("10.244.%d.10", n),
			Internal: &matcher.InternalPeer{Namespace: ns, NamespaceLabels: l, PodLabels: labels},
		}}
	}
	for _, d := range o.deployments {
		var ports []corev1.ContainerPort
		for _, c := range d.Spec.Template.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
		pod(d.Name, d.Namespace, d.Spec.Template.Labels, ports)
	}
	pod("kube-dns", "kube-system", map[string]string{"k8s-app": "kube-dns"}, []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 53, Protocol: corev1.ProtocolTCP}})
	pod("ingress", "ingress-nginx", map[string]string{"app.kubernetes.io/name": "ingress-nginx"}, tcp(443))
	pod("other-app", "default", map[string]string{"app.kubernetes.io/name": "shop"}, tcp(8080))
	pod("rogue-cde", "obol-cde", map[string]string{"app.kubernetes.io/name": "debug"}, tcp(8080))
	pod("rogue-obol", "obol", map[string]string{"app.kubernetes.io/name": "debug"}, tcp(8080))

	addr := func(name, ip string, ports ...int32) {
		w.peers[name] = &peer{name: name, traffic: &matcher.TrafficPeer{IP: ip}, ports: tcp(ports...)}
	}
	addr("internet", "93.184.216.34", 443, 8443, 80)
	addr("metadata", "169.254.169.254", 80)
	switch dir {
	case "overlays/dev":
		// base's placeholder ranges: one Redis range for the CDE.
		addr("vault", "10.100.10.5", 8200)
		addr("cde-postgres", "10.100.20.10", 5432)
		addr("cvc-redis", "10.100.30.10", 6379)
		addr("gw-redis", "10.100.30.11", 6379)
		addr("postgres", "10.200.20.10", 5432)
		addr("redis", "10.200.30.10", 6379)
		w.peers["acquirer"] = w.peers["acquirer-sim"]
		w.acquirerPort = 8443
		w.extra = []cell{
			allow("vaultd", "gw-redis", 6379), // same range as the CVC Redis in base
			allow("gatewayd", "cvc-redis", 6379),
			deny("gatewayd", "acquirer", 443),
			deny("riskd", "acquirer", 8443),
			deny("eventsd", "acquirer", 8443),
			deny("internet", "acquirer", 8443),
			deny("acquirer", "gatewayd", 9093),
			deny("acquirer", "vaultd", 9090),
		}
	case "overlays/production":
		addr("vault", "10.10.0.5", 8200)
		addr("cde-postgres", "10.10.1.5", 5432)
		addr("cvc-redis", "10.10.2.5", 6379)
		addr("gw-redis", "10.10.3.5", 6379)
		addr("postgres", "10.20.1.5", 5432)
		addr("redis", "10.20.2.5", 6379)
		addr("acquirer", "198.51.100.10", 443, 8443)
		addr("acquirer-2", "192.0.2.10", 443, 8443)
		w.acquirerPort = 443
		w.extra = []cell{
			allow("gatewayd", "acquirer-2", 8443),
			deny("gatewayd", "acquirer", 8443),
			deny("gatewayd", "acquirer-2", 443),
			deny("vaultd", "gw-redis", 6379),
			deny("gatewayd", "cvc-redis", 6379),
			// the acquirers are on the internet
			allow("eventsd", "acquirer", 443),
			allow("eventsd", "acquirer", 8443),
			allow("eventsd", "acquirer-2", 443),
			allow("eventsd", "acquirer-2", 8443),
		}
	default:
		t.Fatalf("no world for %s", dir)
	}
	return w
}

func (w *world) cells() []cell {
	var cs []cell
	for _, c := range append(slices.Clone(pciMatrix), w.extra...) {
		if c.port == 0 {
			c.port = w.acquirerPort
		}
		cs = append(cs, c)
	}
	return cs
}

// checkMatrix returns every cell of the matrix the policies get wrong, and
// every connection of the sweep they allow that the matrix does not list as
// allowed.
func checkMatrix(t *testing.T, w *world, policies []*networkingv1.NetworkPolicy) []string {
	t.Helper()
	for _, p := range policies {
		require.NotEmpty(t, p.Spec.PolicyTypes, "%s/%s: the analyser needs policyTypes", p.Namespace, p.Name)
	}
	pol := matcher.BuildNetworkPolicies(false, policies)
	allowed := func(from, to *peer, port int32, proto corev1.Protocol) bool {
		return pol.IsTrafficAllowed(&matcher.Traffic{Source: from.traffic, Destination: to.traffic, ResolvedPort: int(port), Protocol: proto}).IsAllowed()
	}
	var violations []string
	listed := map[cell]bool{}
	for _, c := range w.cells() {
		from, to := w.peers[c.from], w.peers[c.to]
		require.NotNil(t, from, "matrix: no peer %s", c.from)
		require.NotNil(t, to, "matrix: no peer %s", c.to)
		if c.allowed {
			listed[cell{c.from, c.to, c.port, c.proto, true}] = true
		}
		if got := allowed(from, to, c.port, c.proto); got != c.allowed {
			violations = append(violations, c.String())
		}
	}
	// Sweep: from every peer to every pod of our namespaces on each of its
	// ports, and from each pod of ours to every address and to kube-dns.
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range w.peers {
			if !yield(n) {
				return
			}
		}
	})
	for _, fromName := range names {
		from := w.peers[fromName]
		for _, toName := range names {
			to := w.peers[toName]
			if fromName == toName || fromName == "acquirer" && to == w.peers["acquirer-sim"] || toName == "acquirer" && from == w.peers["acquirer-sim"] {
				continue
			}
			external := to.traffic.Internal == nil
			if !(to.ours || (from.ours && (external || toName == "kube-dns"))) {
				continue // not governed by these manifests
			}
			for _, p := range to.ports {
				c := cell{fromName, toName, p.ContainerPort, p.Protocol, true}
				if toName == "acquirer-sim" {
					c.to = "acquirer"
				}
				dnsOK := toName == "kube-dns" && from.traffic.Internal != nil && (from.traffic.Internal.Namespace == "obol-cde" || from.traffic.Internal.Namespace == "obol")
				if allowed(from, to, p.ContainerPort, p.Protocol) && !listed[c] && !dnsOK {
					violations = append(violations, "unlisted: "+c.String())
				}
				if dnsOK && !allowed(from, to, p.ContainerPort, p.Protocol) {
					violations = append(violations, "no DNS: "+c.String())
				}
			}
		}
	}
	return violations
}

func TestPCIReachabilityMatrix(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			o := build(t, dir)
			w := newWorld(t, dir, o)
			assert.Empty(t, checkMatrix(t, w, o.policies))
		})
	}
}

// TestPCIMatrixCatchesBrokenPolicies: the matrix check fails when the
// segmentation is weakened.
func TestPCIMatrixCatchesBrokenPolicies(t *testing.T) {
	allTraffic := func(ns string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
			},
		}
	}
	named := func(ps []*networkingv1.NetworkPolicy, ns, name string) *networkingv1.NetworkPolicy {
		p := find(ps, func(p *networkingv1.NetworkPolicy) bool { return p.Namespace == ns && p.Name == name })
		require.NotNil(t, p, "%s/%s", ns, name)
		return p
	}
	cases := []struct {
		name   string
		break_ func([]*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy
		want   []string
	}{
		{"allow-all in obol-cde", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			return append(ps, allTraffic("obol-cde"))
		}, []string{"internet must not reach vaultd:8080/TCP", "vaultd must not reach internet:443/TCP", "rogue-cde must not reach vaultd:9090/TCP"}},
		{"allow-all in obol", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			return append(ps, allTraffic("obol"))
		}, []string{"riskd must not reach internet:443/TCP", "ledgerd must not reach cde-postgres:5432/TCP"}},
		{"vaultd's gRPC open to every source", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			named(ps, "obol-cde", "vaultd-ingress").Spec.Ingress[0].From = nil
			return ps
		}, []string{"internet must not reach vaultd:9090/TCP", "ingress must not reach vaultd:9090/TCP"}},
		{"vaultd's gRPC open to every namespace", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			named(ps, "obol-cde", "vaultd-ingress").Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
			return ps
		}, []string{"unlisted: other-app must reach vaultd:9090/TCP", "ingress must not reach vaultd:9090/TCP"}},
		{"rogue pods in the CDE may send to vaultd", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			// Ingress alone is not the only guard: vaultd's selector must be
			// narrowed and the sender's egress opened for this to show.
			named(ps, "obol-cde", "vaultd-ingress").Spec.Ingress[0].From[0].PodSelector = &metav1.LabelSelector{}
			return append(ps, &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "debug-egress", Namespace: "obol-cde"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "debug"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
					Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
				},
			})
		}, []string{"rogue-cde must not reach vaultd:9090/TCP"}},
		{"webhooks without the private ranges excluded", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			named(ps, "obol", "eventsd-egress-internet").Spec.Egress[0].To[0].IPBlock.Except = nil
			return ps
		}, []string{"eventsd must not reach cde-postgres:5432/TCP", "eventsd must not reach vault:8200/TCP"}},
		{"gatewayd egress to anywhere", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			named(ps, "obol-cde", "gatewayd-egress-acquirers").Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
			return ps
		}, []string{"gatewayd must not reach internet:443/TCP", "gatewayd must not reach vault:8200/TCP"}},
		{"no default deny in obol-cde", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			// Pods no other policy selects are then open.
			return slices.DeleteFunc(ps, func(p *networkingv1.NetworkPolicy) bool { return p.Namespace == "obol-cde" && p.Name == "default-deny" })
		}, []string{"unlisted: internet must reach rogue-cde:8080/TCP"}},
		{"riskd's egress dropped", func(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
			named(ps, "obol", "riskd-egress").Spec.Egress = nil
			return ps
		}, []string{"riskd must reach redis:6379/TCP"}},
	}
	for _, dir := range overlays {
		for _, c := range cases {
			t.Run(dir+"/"+c.name, func(t *testing.T) {
				o := build(t, dir)
				w := newWorld(t, dir, o)
				require.Empty(t, checkMatrix(t, w, o.policies), "the unbroken policies pass")
				violations := checkMatrix(t, w, c.break_(o.policies))
				for _, v := range c.want {
					assert.Contains(t, violations, v)
				}
			})
		}
	}
}

// TestEveryWorkloadIsolated: each Deployment's pods are selected by an
// ingress and an egress policy besides the namespace's default deny, so a
// change to another workload's policy cannot open them.
func TestEveryWorkloadIsolated(t *testing.T) {
	for _, dir := range overlays {
		o := build(t, dir)
		for _, d := range o.deployments {
			t.Run(dir+"/"+d.Name, func(t *testing.T) {
				var types []networkingv1.PolicyType
				for _, p := range o.policies {
					if p.Namespace == d.Namespace && !isEmptySelector(p.Spec.PodSelector) && selects(&p.Spec.PodSelector, d.Spec.Template.Labels) {
						types = append(types, p.Spec.PolicyTypes...)
					}
				}
				assert.Contains(t, types, networkingv1.PolicyTypeIngress)
				if d.Name != "acquirer-sim" { // the simulator sends nothing
					assert.Contains(t, types, networkingv1.PolicyTypeEgress)
				}
			})
		}
	}
}

func isEmptySelector(s metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// peersOf lists the peers of every rule of p.
func peersOf(p *networkingv1.NetworkPolicy) [][]networkingv1.NetworkPolicyPeer {
	var out [][]networkingv1.NetworkPolicyPeer
	for _, r := range p.Spec.Ingress {
		out = append(out, r.From)
	}
	for _, r := range p.Spec.Egress {
		out = append(out, r.To)
	}
	return out
}
