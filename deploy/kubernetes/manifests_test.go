package kubernetes_test

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// daemon is what the manifests must say about one Obol daemon.
type daemon struct {
	namespace string
	http      int32 // REST, /healthz and /readyz
	grpc      int32
	// secretEnv: every variable it takes from a Secret (no other variable
	// may carry a secret).
	secretEnv []string
}

var daemons = map[string]daemon{
	"vaultd":   {"obol-cde", 8080, 9090, []string{"OBOL_VAULT_POSTGRES_URL", "OBOL_CVC_REDIS_URL"}},
	"gatewayd": {"obol-cde", 8083, 9093, []string{"OBOL_GATEWAY_POSTGRES_URL", "OBOL_AUTHLIMIT_REDIS_URL", "OBOL_RISK_TOKEN", "OBOL_LEDGER_TOKEN", "OBOL_EVENTS_TOKEN"}},
	"riskd":    {"obol", 8081, 9091, []string{"OBOL_RISK_REDIS_URL", "OBOL_RISK_TOKEN"}},
	"ledgerd":  {"obol", 8082, 9092, []string{"OBOL_LEDGER_POSTGRES_URL", "OBOL_LEDGER_TOKEN", "OBOL_EVENTS_TOKEN"}},
	"eventsd":  {"obol", 8084, 9094, []string{"OBOL_EVENTS_POSTGRES_URL", "OBOL_EVENTS_TOKEN", "OBOL_EVENTS_SEAL_KEY"}},
}

// extras are the Deployments an overlay adds besides the daemons.
var extras = map[string][]string{
	"overlays/dev":        {"acquirer-sim"},
	"overlays/production": nil,
}

func TestOverlaysBuild(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			o := build(t, dir)
			var names []string
			for _, d := range o.deployments {
				names = append(names, d.Name)
			}
			want := append(slices.Sorted(func(yield func(string) bool) {
				for n := range daemons {
					if !yield(n) {
						return
					}
				}
			}), extras[dir]...)
			assert.ElementsMatch(t, want, names)
			arg := func(deployment, want string) {
				d := find(o.deployments, func(d *appsv1.Deployment) bool { return d.Name == deployment })
				require.NotNil(t, d)
				assert.Contains(t, d.Spec.Template.Spec.Containers[0].Args, want, deployment)
			}
			switch dir {
			case "overlays/dev":
				arg("gatewayd", "--simulator-url=https://acquirer-sim.obol-sim.svc:8443")
			case "overlays/production":
				// vault.yaml replaces the address by its index in the args.
				arg("vaultd", "--vault-addr=https://vault.example.internal:8200")
			}
			for _, ns := range []string{"obol-cde", "obol"} {
				assert.True(t, slices.ContainsFunc(o.namespaces, func(n *corev1.Namespace) bool { return n.Name == ns }), "namespace %s", ns)
			}
		})
	}
}

func TestManifestFilesDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			require.NoError(t, decodeFile(f))
		})
	}
}

// TestStrictDecodingRefusesUnknownFields shows the decoder behind the two
// tests above fails on what the API server would drop or refuse.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"misspelt container field", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers: [{name: x, image: x, imagePullPolcy: Always}]
`, "imagePullPolcy"},
		{"security context field at the wrong level", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      readOnlyRootFilesystem: true
      containers: [{name: x, image: x}]
`, "readOnlyRootFilesystem"},
		{"network policy peer field", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{ipblock: {cidr: 10.0.0.0/8}}]}]
`, "ipblock"},
		{"duplicate field", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: x, name: y}
`, "name"},
		{"unknown kind", `
apiVersion: v1
kind: Pod
metadata: {name: x}
`, "Pod"},
		{"wrong apiVersion", `
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: x}
`, "extensions/v1beta1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := (&objects{}).decodeStrict([]byte(c.doc))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestDeploymentsHardened(t *testing.T) {
	for _, dir := range overlays {
		o := build(t, dir)
		for _, d := range o.deployments {
			t.Run(dir+"/"+d.Name, func(t *testing.T) {
				for _, p := range checkDeployment(dir, o, d) {
					t.Error(p)
				}
			})
		}
	}
}

// checkDeployment returns every way d falls short of the hardening rules.
func checkDeployment(dir string, o *objects, d *appsv1.Deployment) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	spec := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Labels
	if !selects(d.Spec.Selector, podLabels) {
		bad("selector %v does not select the pod template's labels %v", d.Spec.Selector, podLabels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
		bad("replicas: want at least 1")
	} else if dir == "overlays/production" && *d.Spec.Replicas < 2 {
		bad("replicas %d: production wants at least 2", *d.Spec.Replicas)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		bad("host namespaces are shared")
	}

	// Service account: its own, with no API token mounted.
	if spec.ServiceAccountName != d.Name {
		bad("serviceAccountName %q: want %q", spec.ServiceAccountName, d.Name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		bad("pod automountServiceAccountToken: want false")
	}
	sa := find(o.serviceAccounts, func(s *corev1.ServiceAccount) bool {
		return s.Name == spec.ServiceAccountName && s.Namespace == d.Namespace
	})
	if sa == nil {
		bad("no ServiceAccount %s/%s", d.Namespace, spec.ServiceAccountName)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		bad("ServiceAccount automountServiceAccountToken: want false")
	}

	// Pod security context.
	psc := spec.SecurityContext
	if psc == nil {
		bad("no pod securityContext")
		psc = &corev1.PodSecurityContext{}
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("pod runAsNonRoot: want true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		bad("pod runAsUser: want 65532")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod seccompProfile: want RuntimeDefault")
	}

	// A PodDisruptionBudget and a Service select the pods.
	pdbs := 0
	for _, p := range o.pdbs {
		if p.Namespace == d.Namespace && selects(p.Spec.Selector, podLabels) {
			pdbs++
			if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
				bad("PodDisruptionBudget %s: want exactly one of maxUnavailable and minAvailable", p.Name)
			}
			if p.Spec.MinAvailable != nil && d.Spec.Replicas != nil && p.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
				bad("PodDisruptionBudget %s: minAvailable %s blocks every eviction of %d replicas", p.Name, p.Spec.MinAvailable.String(), *d.Spec.Replicas)
			}
		}
	}
	if pdbs != 1 {
		bad("%d PodDisruptionBudgets select the pods: want 1", pdbs)
	}
	svc := find(o.services, func(s *corev1.Service) bool {
		return s.Namespace == d.Namespace && s.Spec.Selector != nil && selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, podLabels)
	})
	if svc == nil {
		bad("no Service selects the pods")
	}

	if len(spec.Containers) != 1 {
		bad("%d containers: want 1", len(spec.Containers))
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		bad := func(format string, args ...any) { bad(c.Name+": "+format, args...) }
		sc := c.SecurityContext
		if sc == nil {
			bad("no securityContext")
			sc = &corev1.SecurityContext{}
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("readOnlyRootFilesystem: want true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("allowPrivilegeEscalation: want false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad("privileged")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			bad("capabilities: want drop [ALL] and nothing added")
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot || sc.RunAsUser != nil && *sc.RunAsUser != 65532 {
			bad("overrides the pod's non-root user 65532")
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			bad("seccompProfile %s overrides RuntimeDefault", sc.SeccompProfile.Type)
		}
		name, tag, ok := strings.Cut(c.Image, ":")
		if !ok || name != "obolpay/"+d.Name || tag == "" || tag == "latest" {
			bad("image %q: want obolpay/%s:<tag>, tag not latest", c.Image, d.Name)
		}
		if dir == "overlays/production" && tag == "dev" {
			bad("image %q: production runs a release tag", c.Image)
		}
		req, lim := c.Resources.Requests, c.Resources.Limits
		if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() || lim.Cpu().IsZero() {
			bad("resources: want cpu and memory requests and limits")
		} else if lim.Memory().Cmp(*req.Memory()) < 0 || lim.Cpu().Cmp(*req.Cpu()) < 0 {
			bad("resources: limits below requests")
		}
		for _, p := range checkGC(c, d.Namespace == "obol-cde") {
			bad("%s", p)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			bad("want a liveness and a readiness probe")
		}
		// Every variable holding a secret comes from a Secret.
		for _, e := range c.Env {
			looksSecret := strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "URL") || strings.Contains(e.Name, "KEY") || strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "PASSWORD")
			if looksSecret && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				bad("env %s: a secret must come from a Secret", e.Name)
			}
		}
		for _, v := range []string{"OBOL_POSTGRES_URL", "OBOL_REDIS_URL", "OBOL_HTTP_ADDR", "OBOL_GRPC_ADDR", "OBOL_TLS_CERT", "OBOL_TLS_KEY"} {
			if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v }) {
				bad("env %s: a name several daemons read with different meanings; use a flag or the daemon's own name", v)
			}
		}
		// Probes and volumes point at what the pod has.
		for _, m := range c.VolumeMounts {
			if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
				bad("volumeMount %s: no such volume", m.Name)
			}
			if m.MountPath != "/tmp" && !m.ReadOnly {
				bad("volumeMount %s at %s: want readOnly", m.Name, m.MountPath)
			}
		}
	}

	dm, isDaemon := daemons[d.Name]
	if !isDaemon {
		return problems
	}
	if d.Namespace != dm.namespace {
		bad("namespace %s: want %s", d.Namespace, dm.namespace)
	}
	if len(spec.Containers) == 0 {
		return problems
	}
	c := spec.Containers[0]
	for _, want := range []string{fmt.Sprintf("--http-addr=0.0.0.0:%d", dm.http), fmt.Sprintf("--grpc-addr=0.0.0.0:%d", dm.grpc), "--http-tls=true", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"} {
		if !slices.Contains(c.Args, want) {
			bad("args %v: want %s", c.Args, want)
		}
	}
	// A daemon with a database runs no DDL: its role has no DDL rights and
	// the schema is applied beforehand with obol migrate (README step 4).
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return strings.HasSuffix(e.Name, "_POSTGRES_URL") }) && !slices.Contains(c.Args, "--migrate=off") {
		bad("args %v: want --migrate=off (the schema is applied by obol migrate as the owner role; the daemon's role has no DDL rights)", c.Args)
	}
	seen := map[string]int{}
	for _, a := range c.Args {
		flag, _, _ := strings.Cut(a, "=")
		if seen[flag]++; seen[flag] == 2 {
			bad("flag %s given twice", flag)
		}
		if !strings.HasPrefix(a, "--") {
			bad("arg %q: want --flag=value", a)
		}
	}
	for _, port := range []int32{dm.http, dm.grpc} {
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == port && p.Protocol == corev1.ProtocolTCP }) {
			bad("containerPort %d/TCP missing", port)
		}
		if svc != nil && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port && p.TargetPort == intstr.FromInt32(port) }) {
			bad("Service %s: port %d missing", svc.Name, port)
		}
	}
	for _, pr := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			bad("%s probe: want an httpGet", pr.name)
			continue
		}
		g := pr.p.HTTPGet
		if g.Path != pr.path || g.Port != intstr.FromInt32(dm.http) || g.Scheme != corev1.URISchemeHTTPS {
			bad("%s probe: GET %s %s:%s, want HTTPS %s on %d", pr.name, g.Scheme, g.Path, g.Port.String(), pr.path, dm.http)
		}
	}
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env = append(env, e.Name)
			ref := e.ValueFrom.SecretKeyRef
			if dir == "overlays/dev" {
				// The dev overlay generates these Secrets: each key exists.
				s := find(o.secrets, func(s *corev1.Secret) bool { return s.Namespace == d.Namespace && s.Name == ref.Name })
				if s == nil {
					bad("env %s: no Secret %s in the build", e.Name, ref.Name)
				} else if _, ok := s.Data[ref.Key]; !ok {
					bad("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
	assertSameSet := func(got, want []string) {
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			bad("variables from Secrets %v: want %v", got, want)
		}
	}
	assertSameSet(env, dm.secretEnv)
	return problems
}

func find[T any](xs []T, f func(T) bool) T {
	var zero T
	for _, x := range xs {
		if f(x) {
			return x
		}
	}
	return zero
}

// TestHardeningCheckFails shows checkDeployment catches each weakening.
func TestHardeningCheckFails(t *testing.T) {
	cases := []struct {
		name   string
		breaks func(d *appsv1.Deployment)
		want   string
	}{
		{"root user", func(d *appsv1.Deployment) { d.Spec.Template.Spec.SecurityContext.RunAsUser = ptr(int64(0)) }, "runAsUser"},
		{"writable root filesystem", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, "readOnlyRootFilesystem"},
		{"a capability added", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "capabilities"},
		{"no seccomp", func(d *appsv1.Deployment) { d.Spec.Template.Spec.SecurityContext.SeccompProfile = nil }, "seccompProfile"},
		{"privilege escalation", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr(true)
		}, "allowPrivilegeEscalation"},
		{"API token mounted", func(d *appsv1.Deployment) { d.Spec.Template.Spec.AutomountServiceAccountToken = nil }, "automountServiceAccountToken"},
		{"readiness on /healthz", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz"
		}, "readiness probe"},
		{"no memory limit", func(d *appsv1.Deployment) {
			delete(d.Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		}, "resources"},
		{"secret in a literal", func(d *appsv1.Deployment) {
			c := &d.Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "OBOL_STRIPE_SECRET_KEY", Value: "sk_live_x"})
		}, "OBOL_STRIPE_SECRET_KEY"},
		{"old colliding variable", func(d *appsv1.Deployment) {
			c := &d.Spec.Template.Spec.Containers[0]
			c.Env[0].Name = "OBOL_POSTGRES_URL"
		}, "OBOL_POSTGRES_URL"},
		{"listens on loopback", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Args[0] = "--http-addr=127.0.0.1:8080"
		}, "--http-addr=0.0.0.0:8080"},
		{"no PodDisruptionBudget", func(d *appsv1.Deployment) { d.Spec.Template.Labels["app.kubernetes.io/name"] = "other" }, "PodDisruptionBudgets"},
		{"GOGC in the card-data zone", func(d *appsv1.Deployment) {
			c := &d.Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "GOGC", Value: "400"}, corev1.EnvVar{Name: "GOMEMLIMIT", Value: "100MiB"})
		}, "card-data zone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := build(t, "overlays/production")
			d := find(o.deployments, func(d *appsv1.Deployment) bool { return d.Name == "vaultd" })
			require.NotNil(t, d)
			require.Empty(t, checkDeployment("overlays/production", o, d), "the unbroken Deployment passes")
			c.breaks(d)
			problems := checkDeployment("overlays/production", o, d)
			require.NotEmpty(t, problems)
			assert.Contains(t, strings.Join(problems, "\n"), c.want)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// checkGC checks the Go runtime's GC variables of a container (in the
// card-data zone when cde): none in the card-data zone (its daemons keep
// the runtime's default); literal values only, no envFrom (which the
// check could not see); GOGC a positive percentage or off; raised above
// the default (a trade of memory for CPU) only with a GOMEMLIMIT; a
// GOMEMLIMIT at most 90 % of the memory limit. GOMEMLIMIT counts all of
// the Go runtime's memory, stacks and metadata too; the rest is headroom
// for what the container is charged outside it (a memory-backed emptyDir,
// the binary's pages, page cache).
func checkGC(c corev1.Container, cde bool) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(c.EnvFrom) > 0 {
		bad("envFrom: every variable is listed in env (a GOGC or GOMEMLIMIT from a ConfigMap or Secret would go unchecked)")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.Name != "GOGC" && e.Name != "GOMEMLIMIT" {
			continue
		}
		if cde {
			bad("env %s: the card-data zone's daemons keep the Go runtime's default GC", e.Name)
		}
		if e.ValueFrom != nil {
			bad("env %s: must be a literal value", e.Name)
			continue
		}
		env[e.Name] = e.Value // the last one wins, as in the kubelet
	}
	if v, ok := env["GOGC"]; ok {
		n, err := strconv.Atoi(v)
		switch {
		case v != "off" && (err != nil || n <= 0):
			bad("env GOGC %q: want a positive percentage or off", v)
		case (v == "off" || n > 100) && env["GOMEMLIMIT"] == "":
			bad("env GOGC %s: raised above the default, it needs a GOMEMLIMIT below the memory limit", v)
		}
	}
	if v, ok := env["GOMEMLIMIT"]; ok {
		n, err := parseMemLimit(v)
		lim := c.Resources.Limits.Memory()
		switch {
		case err != nil:
			bad("env GOMEMLIMIT %q: %v", v, err)
		case lim.IsZero():
			bad("env GOMEMLIMIT %s: without a memory limit", v)
		case n > lim.Value()/10*9:
			bad("env GOMEMLIMIT %s: want at most 90%% of the memory limit %s", v, lim.String())
		}
	}
	return problems
}

// parseMemLimit reads a GOMEMLIMIT as the Go runtime does: bytes, with
// an optional B, KiB, MiB, GiB or TiB suffix.
func parseMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a positive number of bytes (below 8 EiB), with B, KiB, MiB, GiB or TiB")
	}
	return n * mult, nil
}

// TestProductionHoldsNoSecrets: production Secrets are created by the
// operator, never committed.
func TestProductionHoldsNoSecrets(t *testing.T) {
	o := build(t, "overlays/production")
	assert.Empty(t, o.secrets)
}

// TestNamespacesSegmented: each namespace denies everything by default, and
// every ipBlock is a valid CIDR (the analyser would panic on one that is not).
func TestNamespacesSegmented(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			o := build(t, dir)
			for _, ns := range o.namespaces {
				assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"], "namespace %s: Pod Security admission", ns.Name)
				deny := find(o.policies, func(p *networkingv1.NetworkPolicy) bool {
					return p.Namespace == ns.Name && len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
						len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && len(p.Spec.PolicyTypes) == 2
				})
				assert.NotNil(t, deny, "namespace %s: no default-deny policy for ingress and egress", ns.Name)
			}
			for _, p := range o.policies {
				assert.NotEmpty(t, p.Spec.PolicyTypes, "%s/%s: policyTypes", p.Namespace, p.Name)
				for _, peers := range peersOf(p) {
					for _, peer := range peers {
						if peer.IPBlock == nil {
							continue
						}
						_, _, err := net.ParseCIDR(peer.IPBlock.CIDR)
						assert.NoError(t, err, "%s/%s", p.Namespace, p.Name)
						for _, e := range peer.IPBlock.Except {
							_, _, err := net.ParseCIDR(e)
							assert.NoError(t, err, "%s/%s", p.Namespace, p.Name)
						}
					}
				}
			}
		})
	}
}

// TestGCCheck: riskd's GC variables as the manifests set them pass, and
// every way to get them wrong is refused.
func TestGCCheck(t *testing.T) {
	o := build(t, "overlays/production")
	d := find(o.deployments, func(d *appsv1.Deployment) bool { return d.Name == "riskd" })
	require.NotNil(t, d)
	base := d.Spec.Template.Spec.Containers[0]
	require.Empty(t, checkGC(base, false), "riskd as the manifests set it")
	lit := func(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }
	withGC := func(es ...corev1.EnvVar) corev1.Container {
		c := *base.DeepCopy()
		var env []corev1.EnvVar
		for _, e := range c.Env {
			if e.Name != "GOGC" && e.Name != "GOMEMLIMIT" {
				env = append(env, e)
			}
		}
		c.Env = append(env, es...)
		return c
	}
	for _, tc := range []struct {
		name string
		c    corev1.Container
		cde  bool
		want string // "" passes
	}{
		{"the default", withGC(), false, ""},
		{"GOGC lowered alone", withGC(lit("GOGC", "50")), false, ""},
		{"GOGC raised without a GOMEMLIMIT", withGC(lit("GOGC", "400")), false, "needs a GOMEMLIMIT"},
		{"GOGC off without a GOMEMLIMIT", withGC(lit("GOGC", "off")), false, "needs a GOMEMLIMIT"},
		{"GOGC off with one", withGC(lit("GOGC", "off"), lit("GOMEMLIMIT", "200MiB")), false, ""},
		{"GOGC not a percentage", withGC(lit("GOGC", "lots"), lit("GOMEMLIMIT", "100MiB")), false, "positive percentage"},
		{"GOGC zero", withGC(lit("GOGC", "0"), lit("GOMEMLIMIT", "100MiB")), false, "positive percentage"},
		{"GOMEMLIMIT at the memory limit", withGC(lit("GOGC", "400"), lit("GOMEMLIMIT", "256MiB")), false, "at most 90% of the memory limit"},
		{"GOMEMLIMIT just above 90 %", withGC(lit("GOGC", "400"), lit("GOMEMLIMIT", "231MiB")), false, "at most 90%"},
		{"GOMEMLIMIT wrapping past int64", withGC(lit("GOGC", "400"), lit("GOMEMLIMIT", "8388608TiB")), false, "below 8 EiB"},
		{"GOMEMLIMIT too large to multiply by 10", withGC(lit("GOGC", "400"), lit("GOMEMLIMIT", "1000000TiB")), false, "at most 90%"},
		{"GOMEMLIMIT in decimal units", withGC(lit("GOMEMLIMIT", "200MB")), false, `GOMEMLIMIT "200MB"`},
		{"the last of two wins", withGC(lit("GOMEMLIMIT", "200MiB"), lit("GOGC", "400"), lit("GOMEMLIMIT", "1GiB")), false, "at most 90%"},
		{"from a ConfigMap", withGC(corev1.EnvVar{Name: "GOGC", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "gogc"}}}), false, "literal value"},
		{"envFrom", func() corev1.Container {
			c := withGC()
			c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{}}}
			return c
		}(), false, "envFrom"},
		{"in the card-data zone", withGC(lit("GOGC", "400"), lit("GOMEMLIMIT", "200MiB")), true, "card-data zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(checkGC(tc.c, tc.cde), "\n")
			if tc.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tc.want)
		})
	}
}

// TestParseMemLimit reads GOMEMLIMIT's forms and refuses the others.
func TestParseMemLimit(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{name: "bytes", in: "1048576", want: 1 << 20},
		{name: "B", in: "512B", want: 512},
		{name: "KiB", in: "4KiB", want: 4 << 10},
		{name: "MiB", in: "200MiB", want: 200 << 20},
		{name: "GiB", in: "2GiB", want: 2 << 30},
		{name: "TiB", in: "1TiB", want: 1 << 40},
		{name: "decimal unit", in: "200MB", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "zero", in: "0MiB", wantErr: true},
		{name: "negative", in: "-1MiB", wantErr: true},
		{name: "fraction", in: "1.5GiB", wantErr: true},
		{name: "past int64", in: "8388608TiB", wantErr: true},
		{name: "the largest", in: "8388607TiB", want: 8388607 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemLimit(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
