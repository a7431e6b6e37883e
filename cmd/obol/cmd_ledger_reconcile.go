package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/proxy/reconcile"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

// exitDifferences is the exit code of a reconciliation that found
// differences (1 is any other failure: it could not run).
const exitDifferences = 3

// newReconcileCmd is obol ledger reconcile, also obol reconcile: the
// gateway's payments against the ledger's journal.
func newReconcileCmd(use string) *cobra.Command {
	var asJSON, strict bool
	cmd := loadCmd(&cobra.Command{
		Use:   use,
		Short: "Compare every gateway payment with the ledger (exits 3 on differences)",
		Long: `Compare every gateway payment with the ledger: hold, captured, fee,
refunds; report each difference (pending outbox entries that explain one
are shown). Exits 3 on differences.`,
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.Reconcile) error {
		return runReconcile(cmd.Context(), c, asJSON, strict, cmd.OutOrStdout())
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&strict, "strict", false, "also fail on differences that pending outbox entries explain")
	return cmd
}

func runReconcile(ctx context.Context, c config.Reconcile, asJSON, strict bool, out io.Writer) error {
	var gw *paystore.Store
	var err error
	if c.GatewayPostgresURL != "" {
		gw, err = paypg.OpenReadOnly(ctx, c.GatewayPostgresURL)
	} else {
		path := filepath.Join(c.DataDir, "gateway.db")
		if _, serr := os.Stat(path); serr != nil {
			return fmt.Errorf("no obol dev gateway database at %s (pass the --data-dir of obol dev, or --gateway-postgres-url / OBOL_GATEWAY_POSTGRES_URL)", path)
		}
		gw, err = paysqlite.OpenReadOnly(ctx, path)
	}
	if err != nil {
		return err
	}
	defer gw.Close()
	lc, cctx, closer, err := dialLedger(ctx, c.LedgerClient)
	if err != nil {
		return err
	}
	defer closer()
	rep, err := reconcile.Run(cctx, gw, lc, reconcile.Options{})
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) {
			addr, _ := ledgerAddr(c.LedgerClient)
			return fmt.Errorf("%w (ledger %s)", err, addr)
		}
		return err
	}
	if asJSON {
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
	if strict {
		n = len(rep.Differences)
	}
	if n > 0 {
		return &exitError{code: exitDifferences, err: fmt.Errorf("reconciliation found %d difference(s) between the gateway and the ledger", n)}
	}
	return nil
}
