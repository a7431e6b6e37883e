// Command obol is Obol's CLI: `obol dev` runs the whole system in one process
// on the embedded default (no external services), and admin verbs manage
// merchants, keys, the ledger and payouts, and bootstrap HashiCorp Vault.
// Each command is one cmd_*.go file (github.com/spf13/cobra); settings that
// read OBOL_* variables are structs in internal/cli/config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/obolpay/obol/internal/cli"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	err := run(ctx, os.Args[1:], os.Stdout)
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, "obol:", err)
		os.Exit(ee.ExitCode())
	}
	cli.Exit("obol", err)
}

// run executes the command line args, writing to out (help included).
func run(ctx context.Context, args []string, out io.Writer) error {
	root := newRoot(out)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// exitError carries a process exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the code obol exits with.
func (e *exitError) ExitCode() int { return e.code }
