package topology

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHAProxyConfig: the rendered configuration is one haproxy accepts,
// Vault's backend passes only the active node (health 200; standbys answer
// 429), and gRPC backends are TCP (TLS passthrough) checked on the REST
// port.
func TestHAProxyConfig(t *testing.T) {
	cfg := haproxyConfig("/run/x.sock", []backend{
		{name: "vault", listen: "127.0.0.1:1", http: true, check: "/v1/sys/health", servers: []server{{name: "vault-0", addr: "127.0.0.1:2"}, {name: "vault-1", addr: "127.0.0.1:3"}}},
		{name: "gatewayd_grpc", listen: "127.0.0.1:4", check: "/readyz", servers: []server{{name: "gatewayd-0", addr: "127.0.0.1:5", checkPort: "6"}}},
		{name: "gatewayd_rest", listen: "127.0.0.1:7", http: true, check: "/readyz", servers: []server{{name: "gatewayd-0", addr: "127.0.0.1:8"}}},
	})
	for _, want := range []string{
		"backend vault\n  mode http\n  balance roundrobin\n  option httpchk GET /v1/sys/health\n  http-check expect status 200\n",
		"  server vault-1 127.0.0.1:3 check\n",
		"backend gatewayd_grpc\n  mode tcp\n",
		"  server gatewayd-0 127.0.0.1:5 check port 6\n",
	} {
		assert.Contains(t, cfg, want)
	}
	assert.NotContains(t, cfg[strings.Index(cfg, "backend gatewayd_grpc"):strings.Index(cfg, "frontend gatewayd_rest_in")], "retry-on", "a TCP backend cannot retry HTTP")
	rest := cfg[strings.Index(cfg, "backend gatewayd_rest"):]
	assert.Contains(t, rest, `http-error status 503 content-type application/json`, "no replica ready: a 503 with an error code (the drills' clients accept nothing else)")
	assert.Contains(t, rest, `\"code\":\"service_unavailable\"`)
	assert.NotContains(t, cfg[:strings.Index(cfg, "frontend gatewayd_grpc_in")], "http-error", "Vault's clients get Vault's answers")
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Skip("haproxy is not installed (deploy/scripts/test.sh installs it)")
		}
		bin = "/usr/sbin/haproxy"
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "haproxy -c: %s", out)
}
