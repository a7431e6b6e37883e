package topology

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/testenv"
)

// backend is one HAProxy frontend/backend pair.
type backend struct {
	name   string
	listen string // HAProxy's address
	http   bool   // mode http (else tcp: gRPC with TLS passthrough)
	check  string // the health check's path
	// servers are the replicas: name, traffic address, health-check port.
	servers []server
	// expectStatus is the health check's expected status (default 200).
	expectStatus int
}

type server struct {
	name, addr string
	checkPort  string // empty: the traffic address
}

// haproxyConfig renders the configuration. Health checks run every 500 ms
// and take a server out after 2 failures (in 1 s), back in after 1
// success: test timing, tighter than a production default.
func haproxyConfig(stats string, backends []backend) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 4096
  stats socket %s mode 600 level admin

defaults
  log global
  timeout connect 2s
  timeout client 5m
  timeout server 5m
  timeout check 2s
  retries 2
  option redispatch
  default-server inter 500ms fall 2 rise 1

`, stats)
	for _, be := range backends {
		mode := "tcp"
		if be.http {
			mode = "http"
		}
		fmt.Fprintf(&b, "frontend %s_in\n  mode %s\n  bind %s\n  default_backend %s\n", be.name, mode, be.listen, be.name)
		if be.http {
			b.WriteString("  option http-keep-alive\n")
		}
		b.WriteString("\n")
		status := be.expectStatus
		if status == 0 {
			status = 200
		}
		fmt.Fprintf(&b, "backend %s\n  mode %s\n  balance roundrobin\n  option httpchk GET %s\n  http-check expect status %d\n", be.name, mode, be.check, status)
		if be.http {
			b.WriteString("  retry-on conn-failure empty-response\n")
		}
		if be.http && strings.HasSuffix(be.name, "_rest") {
			// No replica ready (e.g. every gatewayd's /readyz fails while
			// PostgreSQL fails over): answer as Obol does, a 503 with an
			// error code, not HAProxy's HTML page.
			b.WriteString(`  http-error status 503 content-type application/json hdr Retry-After 1 string "{\"error\":{\"code\":\"service_unavailable\",\"message\":\"no replica is ready: retry with the same Idempotency-Key\"}}"` + "\n")
		}
		for _, s := range be.servers {
			fmt.Fprintf(&b, "  server %s %s check", s.name, s.addr)
			if s.checkPort != "" {
				fmt.Fprintf(&b, " port %s", s.checkPort)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// startHAProxy writes the configuration and starts haproxy in the
// foreground (-db), checking the configuration first (-c).
func (t *Topology) startHAProxy(backends []backend) error {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			return fmt.Errorf("haproxy not found (apt-get install -y haproxy): %w", err)
		}
		bin = "/usr/sbin/haproxy"
	}
	dir := filepath.Join(t.Dir, "haproxy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	t.haproxyStats = filepath.Join(dir, "stats.sock")
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(t.haproxyStats, backends)), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("haproxy -c: %w\n%s", err, out)
	}
	lf, err := logFile(t.logDir, "haproxy")
	if err != nil {
		return err
	}
	t.closers = append(t.closers, func() { lf.Close() })
	t.haproxy = &Process{Name: "haproxy", path: bin, dir: dir, args: []string{"-db", "-f", cfg},
		env: []string{"PATH=" + os.Getenv("PATH")}, out: &testenv.SyncBuffer{}, log: lf,
		ready: func() error { _, err := t.HAProxyServers(); return err }}
	t.procs = append(t.procs, t.haproxy)
	return t.haproxy.Start()
}

// HAProxyServers is HAProxy's view of every server: "backend/server" →
// status ("UP", "DOWN", ...), from its stats socket.
func (t *Topology) HAProxyServers() (map[string]string, error) {
	c, err := net.DialTimeout("unix", t.haproxyStats, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	status := -1
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if strings.HasPrefix(sc.Text(), "# ") {
			for i, name := range f {
				if name == "status" {
					status = i
				}
			}
			continue
		}
		if len(f) < 2 || status < 0 || status >= len(f) || f[1] == "FRONTEND" || f[1] == "BACKEND" {
			continue
		}
		out[f[0]+"/"+f[1]] = f[status]
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if status < 0 {
		return nil, fmt.Errorf("haproxy stats: no header")
	}
	return out, nil
}

// WaitHAProxy waits until HAProxy sees exactly the servers of want up
// ("backend/server" names) and every other server of those backends
// down. Backends not named keep any state.
func (t *Topology) WaitHAProxy(timeout time.Duration, want map[string][]string) error {
	return testenv.WaitFor(timeout, func() error {
		st, err := t.HAProxyServers()
		if err != nil {
			return err
		}
		for be, up := range want {
			isUp := map[string]bool{}
			for _, s := range up {
				isUp[s] = true
			}
			for k, v := range st {
				b, s, _ := strings.Cut(k, "/")
				if b != be {
					continue
				}
				if isUp[s] != strings.HasPrefix(v, "UP") {
					return fmt.Errorf("haproxy: %s is %s", k, v)
				}
			}
		}
		return nil
	})
}
