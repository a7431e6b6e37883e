package clitest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/testenv"
)

// beVar is the variable that makes a daemon's cmd test binary run as the
// daemon (OBOL_TEST_BE_EVENTSD for eventsd).
func beVar(name string) string { return "OBOL_TEST_BE_" + strings.ToUpper(name) }

// Main is a daemon's cmd TestMain: the test binary doubles as the daemon
// (name, whose main runs run) when started by StartSelf, so a crash test can
// SIGKILL a real process without building one; otherwise it runs the tests
// (testenv.Main).
func Main(m *testing.M, name string, run func(ctx context.Context, args []string) error) {
	if os.Getenv(beVar(name)) == "1" {
		ctx, cancel := cli.SignalContext()
		err := run(ctx, nil)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
			os.Exit(1)
		}
		return
	}
	testenv.Main(m)
}

// StartSelf starts this test binary as the daemon name (see Main) with env
// added to the environment and its output in logs.
func StartSelf(t *testing.T, name string, logs io.Writer, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), beVar(name)+"=1"), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	return cmd
}
