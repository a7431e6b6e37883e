package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/ledger/store/postgres"
)

// runLedger implements `obol ledger verify`.
func runLedger(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: obol ledger verify --postgres-url URL")
	}
	fs := flag.NewFlagSet("obol ledger verify", flag.ContinueOnError)
	url := fs.String("postgres-url", cli.Env("OBOL_LEDGER_POSTGRES_URL", ""), "ledger database URL (OBOL_LEDGER_POSTGRES_URL)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("--postgres-url (OBOL_LEDGER_POSTGRES_URL) is required")
	}
	st, err := postgres.Open(ctx, *url)
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
}
