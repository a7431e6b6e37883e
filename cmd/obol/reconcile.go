package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/proxy/reconcile"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

// exitError carries a process exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the code obol exits with.
func (e *exitError) ExitCode() int { return e.code }

// exitDifferences is the exit code of a reconciliation that found
// differences (1 is any other failure: it could not run).
const exitDifferences = 3

// runReconcile implements `obol ledger reconcile` (also `obol reconcile`):
// the gateway's payments against the ledger's journal.
func runReconcile(ctx context.Context, args []string, out io.Writer) error {
	fs, conn := ledgerFlags("obol ledger reconcile")
	gwURL := fs.String("gateway-postgres-url", cli.Env("OBOL_GATEWAY_POSTGRES_URL", ""), "gateway database URL (OBOL_GATEWAY_POSTGRES_URL); without it, obol dev's gateway.db in --data-dir")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	strict := fs.Bool("strict", false, "also fail on differences that pending outbox entries explain")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var gw *paystore.Store
	var err error
	if *gwURL != "" {
		gw, err = paypg.OpenReadOnly(ctx, *gwURL)
	} else {
		path := filepath.Join(conn.dataDir, "gateway.db")
		if _, serr := os.Stat(path); serr != nil {
			return fmt.Errorf("no obol dev gateway database at %s (pass the --data-dir of obol dev, or --gateway-postgres-url / OBOL_GATEWAY_POSTGRES_URL)", path)
		}
		gw, err = paysqlite.OpenReadOnly(ctx, path)
		// The running obol dev recorded its ledger address in its lock file.
		explicit := os.Getenv("OBOL_LEDGER_ADDR") != ""
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "ledger-addr" })
		if !explicit {
			if a := devLedgerAddr(conn.dataDir); a != "" {
				conn.addr = a
			}
		}
	}
	if err != nil {
		return err
	}
	defer gw.Close()
	c, cctx, closer, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer closer()
	rep, err := reconcile.Run(cctx, gw, c, reconcile.Options{})
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) {
			return fmt.Errorf("%w (ledger %s)", err, conn.addr)
		}
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, d := range rep.Differences {
			fmt.Fprintln(out, "DIFFERENCE:", d)
		}
		fmt.Fprintf(out, "reconciled %d gateway payments (%d in flight, skipped) with %d ledger payments; %d ledger events pending in the outbox; %d difference(s), %d explained by the outbox\n",
			rep.GatewayPayments, rep.InFlight, rep.LedgerPayments, rep.PendingOutbox, len(rep.Differences), len(rep.Differences)-rep.Unexplained())
	}
	n := rep.Unexplained()
	if *strict {
		n = len(rep.Differences)
	}
	if n > 0 {
		return &exitError{code: exitDifferences, err: fmt.Errorf("reconciliation found %d difference(s) between the gateway and the ledger", n)}
	}
	return nil
}

// devLedgerAddr is the ledger gRPC address a running obol dev recorded in
// its data dir's lock file ("" if none: a killed one's record names a dead
// process). It only reads the file: probing the lock could make an obol dev
// that starts at that moment refuse to run.
func devLedgerAddr(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, DevLockFile))
	if err != nil {
		return ""
	}
	var info devLockInfo
	if json.Unmarshal(b, &info) != nil || !processAlive(info.PID) {
		return ""
	}
	return info.Addresses["ledger gRPC"]
}
