package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/sqlite"
)

func newLedgerVerifyCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "verify",
		Short: "Recompute every balance and hold from the journal and check its hash chain (exits 1 on any problem)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.LedgerDB) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		var st store.Store
		var err error
		if c.PostgresURL != "" {
			st, err = postgres.OpenMode(ctx, c.PostgresURL, migrate.Off) // a check runs no DDL
		} else {
			// Opening would create an empty ledger, which verifies: refuse.
			path := filepath.Join(c.DataDir, "ledger.db")
			if _, serr := os.Stat(path); serr != nil {
				return fmt.Errorf("no obol dev ledger at %s (pass the --data-dir of obol dev, or --postgres-url / OBOL_LEDGER_POSTGRES_URL for ledgerd's database)", path)
			}
			st, err = sqlite.Open(ctx, path)
		}
		if err != nil {
			return err
		}
		defer st.Close()
		rep, err := st.Verify(ctx)
		if err != nil {
			return err
		}
		for _, p := range rep.Problems {
			fmt.Fprintln(out, "PROBLEM:", p)
		}
		if len(rep.Problems) > 0 {
			return fmt.Errorf("ledger verification failed: %d problem(s) in %d transactions, %d accounts", len(rep.Problems), rep.Transactions, rep.Accounts)
		}
		fmt.Fprintf(out, "ledger verified: %d transactions, %d accounts; every balance and hold recomputed from the journal, hash chain intact\n", rep.Transactions, rep.Accounts)
		return nil
	})
}
