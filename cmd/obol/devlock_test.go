package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// execMainEnv makes the test binary run main() with these arguments
// (separated by \x1f) instead of the tests.
const execMainEnv = "OBOL_TEST_EXEC_MAIN"

// obolProc is the obol command run as a real subprocess.
type obolProc struct {
	cmd         *exec.Cmd
	out, stderr *testenv.SyncBuffer
	done        chan struct{} // closed when the process has exited
	err         error         // Wait's result, once done is closed
}

func startObol(t *testing.T, args ...string) *obolProc {
	t.Helper()
	p := &obolProc{out: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0])
	p.cmd.Env = append(os.Environ(), execMainEnv+"="+strings.Join(args, "\x1f"), "OBOL_LEDGER_TOKEN=")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func devArgs(dir string) []string {
	return []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0", "--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0",
		"--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0", "--simulator-addr", "127.0.0.1:0", "--demo-addr", "", "--log-format", "json"}
}

// waitBanner waits until obol dev printed its REST address and returns it.
func (p *obolProc) waitBanner(t *testing.T) string {
	t.Helper()
	var addr string
	exited := false
	err := testenv.WaitFor(60*time.Second, func() error {
		if m := restRe.FindStringSubmatch(p.out.String()); m != nil {
			addr = m[1]
			return nil
		}
		select {
		case <-p.done:
			exited = true
			return nil
		default:
		}
		return errors.New("no REST address printed yet")
	})
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", p.out, p.stderr)
	require.False(t, exited, "obol dev exited:\n%s", p.stderr)
	return addr
}

// TestDevDataDirLock: a second obol dev on the same data dir refuses to
// start and names the running one (pid and addresses); after the first is
// killed with SIGKILL (no cleanup at all), a new one starts: the kernel
// released the lock.
func TestDevDataDirLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev processes")
	}
	dir := filepath.Join(t.TempDir(), ".obol")
	first := startObol(t, devArgs(dir)...)
	addr := first.waitBanner(t)

	second := startObol(t, devArgs(dir)...)
	require.NoError(t, testenv.WaitFor(60*time.Second, func() error {
		select {
		case <-second.done:
			return nil
		default:
		}
		if restRe.MatchString(second.out.String()) {
			return nil // it started: failed below
		}
		return errors.New("the second obol dev is still running")
	}))
	require.NotRegexp(t, restRe, second.out.String(), "the second obol dev started serving")
	<-second.done
	var ee *exec.ExitError
	require.ErrorAs(t, second.err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	abs, _ := filepath.Abs(dir)
	msg := second.stderr.String()
	require.Contains(t, msg, "obol: data dir is in use: "+abs+" is used by another obol dev (pid "+strconv.Itoa(first.cmd.Process.Pid)+", started ")
	require.Contains(t, msg, "REST http://"+addr)
	require.Contains(t, msg, "stop it or pass another --data-dir")

	require.NoError(t, first.cmd.Process.Kill())
	<-first.done
	third := startObol(t, devArgs(dir)...)
	third.waitBanner(t)
}

// TestDevLedgerAddr: the ledger verbs take the ledger address from the lock file
// of a running obol dev only; a killed one's record is ignored.
func TestDevLedgerAddr(t *testing.T) {
	dead := exec.Command(os.Args[0], "-test.run=^$")
	require.NoError(t, dead.Run())
	tests := []struct {
		name, file, want string
	}{
		{"running", `{"pid":` + strconv.Itoa(os.Getpid()) + `,"addresses":{"ledger gRPC":"127.0.0.1:1234"}}`, "127.0.0.1:1234"},
		{"killed", `{"pid":` + strconv.Itoa(dead.Process.Pid) + `,"addresses":{"ledger gRPC":"127.0.0.1:1234"}}`, ""},
		{"stopped (emptied)", ``, ""},
		{"no file", "-", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "-" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, DevLockFile), []byte(tt.file), 0o600))
			}
			require.Equal(t, tt.want, devAddress(dir, addrLedgerGRPC))
		})
	}
}
