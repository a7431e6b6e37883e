// Package testenv starts the real services Obol's integration tests talk to:
// HashiCorp Vault (built once from the Go module proxy and cached), a
// throwaway PostgreSQL cluster, and Redis — or uses the ones named by
// OBOL_TEST_VAULT_ADDR/OBOL_TEST_VAULT_TOKEN, OBOL_TEST_POSTGRES_URL and
// OBOL_TEST_REDIS_URL. Shared instances live for the test binary (call Main
// from TestMain to stop them); dedicated ones, for outage tests that stop or
// seal them, live for one test. PAN-free.
package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TB is the part of testing.TB the harness uses, so that the load tool can
// drive it outside `go test`.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var (
	sharedMu      sync.Mutex
	sharedClosers []func()
)

func atExit(f func()) {
	sharedMu.Lock()
	sharedClosers = append(sharedClosers, f)
	sharedMu.Unlock()
}

// Main runs the tests and then stops shared services.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops shared services (Main calls it).
func Shutdown() {
	sharedMu.Lock()
	cs := sharedClosers
	sharedClosers = nil
	sharedMu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Short reports whether integration tests should be skipped (-short).
func Short() bool { return testing.Short() }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb TB) int {
	tb.Helper()
	p := freePortNoTB()
	if p == 0 {
		tb.Fatalf("no free port")
	}
	return p
}

// Ports are drawn at random below Linux's ephemeral range (32768–60999 by
// default): a port the kernel hands out for :0 is also what outgoing
// connections of every other test binary running in parallel use, so a
// server started on it a moment later could find it taken. Ports handed
// out once are not handed out again by this process.
const portLow, portHigh = 20000, 32000

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

func freePortNoTB() int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := portLow + mrand.IntN(portHigh-portLow)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sharedDir is a process-wide temp dir for shared services.
var sharedDir = sync.OnceValues(func() (string, error) {
	d, err := os.MkdirTemp("", "obol-testenv-")
	if err != nil {
		return "", err
	}
	atExit(func() { os.RemoveAll(d) })
	return d, nil
})

// WaitFor polls cond every 20ms until it returns nil or timeout passes. It is
// for waiting on a real external process to change state (a server starting,
// a seal being noticed), never a substitute for synchronisation in our code.
func WaitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// process is a child service process.
type process struct {
	cmd    *exec.Cmd
	out    *SyncBuffer
	exited chan struct{}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers: process output,
// captured logs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns a copy of the contents.
func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Bytes returns a copy of the contents.
func (l *SyncBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func startProcess(name string, args []string, env []string, dir string) (*process, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func httpOK(url string) error {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func tcpOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// findBin looks for a binary on PATH, then in the given directories.
func findBin(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		matches, _ := filepath.Glob(d)
		for i := len(matches) - 1; i >= 0; i-- {
			p := filepath.Join(matches[i], name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %v", name, dirs)
}

func lastLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errNotRunning = errors.New("process exited")
