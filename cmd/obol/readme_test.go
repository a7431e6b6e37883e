package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/testenv"
)

// walkItem is a walk-through block of the README, or the point where the
// walk-through restarts obol dev.
type walkItem struct {
	line    int // of the README, for messages
	script  string
	restart bool
}

// readmeWalkthrough extracts the README's walk-through: every ```sh
// walkthrough block, in order, and each <!-- walkthrough:restart -->.
func readmeWalkthrough(readme string) []walkItem {
	var items []walkItem
	var cur *walkItem
	for i, l := range strings.Split(readme, "\n") {
		switch {
		case cur != nil && l == "```":
			items = append(items, *cur)
			cur = nil
		case cur != nil:
			cur.script += l + "\n"
		case l == "```sh walkthrough":
			cur = &walkItem{line: i + 1}
		case strings.TrimSpace(l) == "<!-- walkthrough:restart -->":
			items = append(items, walkItem{line: i + 1, restart: true})
		}
	}
	return items
}

// devPorts are obol dev's default ports and the flags that set them.
var devPorts = []struct{ flag, port string }{
	{"--http-addr", "8080"}, {"--grpc-addr", "9090"},
	{"--risk-http-addr", "8081"}, {"--risk-grpc-addr", "9091"},
	{"--ledger-http-addr", "8082"}, {"--ledger-grpc-addr", "9092"},
	{"--gateway-http-addr", "8083"}, {"--gateway-grpc-addr", "9093"},
	{"--events-http-addr", "8084"}, {"--events-grpc-addr", "9094"},
	{"--simulator-addr", "8443"},
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
}

func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(gp)), "bin", name); fileExists(p) {
			return p
		}
	}
	require.FailNowf(t, "missing tool", "the README walk-through needs %s: %s (deploy/scripts/test.sh installs it)", name, install)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestREADMEWalkthrough runs the README's walk-through exactly as written,
// in order, in one bash session with `set -euo pipefail`, against a fresh
// obol dev (the README's commands with its default addresses rewritten to
// the free ports this test chose), and restarts obol dev where the README
// says so: the walk-through cannot rot, and a restart loses nothing.
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev and runs the README's shell blocks")
	}
	bash := lookTool(t, "bash", "apt-get install bash")
	lookTool(t, "curl", "apt-get install curl")
	lookTool(t, "jq", "apt-get install jq")
	grpcurl := lookTool(t, "grpcurl", "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3")
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	readme := string(raw)
	require.Contains(t, readme, "obol dev --payout-delay 0", "the README starts obol dev as this test does")
	items := readmeWalkthrough(readme)
	require.GreaterOrEqual(t, len(items), 5, "the README's walk-through blocks")

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "obol"), ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/obol: %s", out)

	args := []string{"dev", "--data-dir", filepath.Join(work, ".obol"), "--demo-addr", "", "--payout-delay", "0", "--log-format", "json"}
	rewrite := map[string]string{}
	for _, p := range devPorts {
		a := freeAddr(t)
		args = append(args, p.flag, a)
		rewrite[p.port] = a
	}
	addrRe := regexp.MustCompile(`\b(?:localhost|127\.0\.0\.1):(8080|8081|8082|8083|8084|8443|9090|9091|9092|9093|9094)\b`)
	t.Setenv("OBOL_LEDGER_SETTINGS", "")
	t.Setenv("OBOL_LEDGER_TOKEN", "")

	logs := &testenv.SyncBuffer{}
	prevLog := cli.LogOutput
	cli.LogOutput = logs
	t.Cleanup(func() { cli.LogOutput = prevLog })
	type devRun struct {
		cancel context.CancelFunc
		done   chan error
	}
	startDev := func() devRun {
		banner := &testenv.SyncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		d := devRun{cancel: cancel, done: make(chan error, 1)}
		go func() { d.done <- run(ctx, args, teeWriter{banner, logs}) }()
		var exited error
		err := testenv.WaitFor(60*time.Second, func() error {
			select {
			case exited = <-d.done:
				return nil // it ended: say why below instead of waiting on
			default:
			}
			if !restRe.MatchString(banner.String()) {
				return errors.New("no banner yet")
			}
			return nil
		})
		require.NoError(t, err, "obol dev did not start:\n%s", banner)
		require.NoError(t, exited, "obol dev ended at start:\n%s\nlogs:\n%s", banner, logs)
		require.Regexp(t, restRe, banner.String(), "obol dev ended before its banner")
		return d
	}
	stopDev := func(d devRun) {
		d.cancel()
		require.NoError(t, <-d.done)
	}
	dev := startDev()
	defer func() { stopDev(dev) }()

	// The restart handshake: the script writes to walk.out and waits on walk.in.
	outFifo, inFifo := filepath.Join(work, "walk.out"), filepath.Join(work, "walk.in")
	require.NoError(t, syscall.Mkfifo(outFifo, 0o600))
	require.NoError(t, syscall.Mkfifo(inFifo, 0o600))
	var script strings.Builder
	script.WriteString("set -euo pipefail\ntrap 'echo \"walk-through failed: $BASH_COMMAND\" >&2' ERR\n")
	restarts := 0
	for i, it := range items {
		if it.restart {
			restarts++
			fmt.Fprintf(&script, "echo '### restart obol dev (README line %d)'\necho restart > %q\nread -r _ < %q\n", it.line, outFifo, inFifo)
			continue
		}
		body := addrRe.ReplaceAllStringFunc(it.script, func(m string) string { return rewrite[m[strings.LastIndex(m, ":")+1:]] })
		fmt.Fprintf(&script, "echo '### block %d (README line %d)'\n%s", i+1, it.line, body)
	}
	require.Equal(t, 1, restarts, "the walk-through restarts obol dev once")
	fOut, err := os.OpenFile(outFifo, os.O_RDWR, 0) // O_RDWR: opening does not block
	require.NoError(t, err)
	defer fOut.Close()
	fIn, err := os.OpenFile(inFifo, os.O_RDWR, 0)
	require.NoError(t, err)
	defer fIn.Close()
	restarted := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(fOut)
		if sc.Scan() && sc.Text() == "restart" {
			stopDev(dev)
			dev = startDev()
			_, err := fIn.WriteString("go\n")
			restarted <- err
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+filepath.Dir(grpcurl)+":"+os.Getenv("PATH"), "OBOL_LEDGER_ADDR="+rewrite["9092"])
	var shOut testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &shOut, &shOut
	err = cmd.Run()
	require.NoError(t, err, "the README walk-through failed:\n%s", shOut.String())
	select {
	case err := <-restarted:
		require.NoError(t, err)
	default:
		require.FailNow(t, "the walk-through never restarted obol dev")
	}
	t.Logf("walk-through output:\n%s", shOut.String())
	sh := shOut.String()
	for _, want := range []string{"no such endpoint on this address: payments are served by the gateway at http://" + rewrite["8083"], "number_failed_luhn", "payout po_"} {
		assert.Contains(t, sh, want)
	}
	// Tokenize and the read that follows it give the same cvc_expires_at.
	exps := regexp.MustCompile(`"cvc_expires_at":"([^"]+)"`).FindAllStringSubmatch(sh, 2)
	require.Len(t, exps, 2)
	assert.Equal(t, exps[0][1], exps[1][1], "cvc_expires_at of tokenize and of the read")
	// Nothing the walk-through sent leaks into obol dev's logs.
	leaks := testenv.NewLeakScanner()
	for _, pan := range []string{"4242424242424242", "5555555555554444", "4111111111111112", "4000000000000002"} {
		leaks.AddCard(pan, "")
	}
	leaks.Scan("obol dev logs", []byte(logs.String()))
	hits, summary := leaks.Report()
	assert.Empty(t, hits, summary)
}

// teeWriter writes to both buffers.
type teeWriter struct{ a, b *testenv.SyncBuffer }

func (w teeWriter) Write(p []byte) (int, error) {
	_, _ = w.b.Write(p)
	return w.a.Write(p)
}
