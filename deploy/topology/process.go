package topology

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/obolpay/obol/internal/testenv"
)

// Process is one process of the topology (a daemon replica, a Vault node,
// a PostgreSQL server, HAProxy). It can be killed and started again with
// the same command line and environment, so on the same ports. Its output
// over every start is kept (Output, for leak scans and failures) and
// written to its log file.
type Process struct {
	// Name is unique in the topology, e.g. "gatewayd-1" or "vault-0".
	Name string
	// Addr is the main listen address, host:port: the REST address of a
	// daemon, a Vault node's API, a PostgreSQL server's port.
	Addr string
	// HTTPAddr is the REST (or health) listen address, host:port; empty
	// when the process has none.
	HTTPAddr string
	// GRPCAddr is the gRPC listen address; empty when it has none.
	GRPCAddr string

	path  string
	args  []string
	env   []string
	dir   string
	cred  *syscall.Credential
	ready func() error
	out   *testenv.SyncBuffer
	log   io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// startTimeout bounds one start of a process until it is ready.
const startTimeout = 60 * time.Second

// Start starts the process and waits until it is ready (or exits). It is
// an error to start a running process.
func (p *Process) Start() error {
	p.mu.Lock()
	if p.cmd != nil && !isClosed(p.exited) {
		p.mu.Unlock()
		return fmt.Errorf("%s is already running", p.Name)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	w := io.Writer(p.out)
	if p.log != nil {
		w = io.MultiWriter(p.out, p.log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	p.starts++
	fmt.Fprintf(w, "--- topology: start %s (#%d)\n", p.Name, p.starts)
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	if p.ready == nil {
		return nil
	}
	var died bool
	err := testenv.WaitFor(startTimeout, func() error {
		if isClosed(exited) {
			died = true
			return nil
		}
		return p.ready()
	})
	if died {
		return fmt.Errorf("%s exited at start:\n%s", p.Name, tail(p.out.String(), 20))
	}
	if err != nil {
		return fmt.Errorf("%s not ready: %w\n%s", p.Name, err, tail(p.out.String(), 20))
	}
	return nil
}

// Kill SIGKILLs the process (its whole process group: a crash of the
// machine it runs on) and waits until it is gone. Killing a stopped
// process does nothing.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop stops the process gracefully (SIGTERM), SIGKILLing it after 15 s.
func (p *Process) Stop() { p.signal(syscall.SIGTERM, 15*time.Second) }

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// Pid is the process id of the last start (0 before the first).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Output is everything the process wrote, over every start.
func (p *Process) Output() string { return p.out.String() }

// Starts counts the starts so far.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

func (p *Process) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil || isClosed(exited) {
		return
	}
	fmt.Fprintf(p.out, "--- topology: %s %s\n", sig, p.Name)
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	if grace > 0 {
		select {
		case <-exited:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
	} else {
		<-exited
	}
	// Children that left the group (none of ours do) or lingered after
	// the leader exited go with it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logFile opens (appending) the process's log file in dir.
func logFile(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(dir+string(os.PathSeparator)+name+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("log file of %s", name), err)
	}
	return f, nil
}

// Args are the process's command-line arguments (a copy).
func (p *Process) Args() []string { return append([]string(nil), p.args...) }
