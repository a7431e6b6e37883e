package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/proxy/service"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

const gatewayUsage = `usage: obol gateway outbox list [--state dead|pending] [--limit 100]
       obol gateway outbox retry (OUTBOX_ID | --all)
  with --postgres-url URL (default OBOL_GATEWAY_POSTGRES_URL) or --data-dir ./.obol (obol dev)`

// runGateway implements `obol gateway outbox list|retry`: the ledger events
// waiting in the gateway's outbox, and a retry of the dead ones (events the
// ledger refused for good, e.g. after the cause was fixed).
func runGateway(ctx context.Context, args []string, out io.Writer) error {
	if len(args) < 2 || args[0] != "outbox" {
		return errors.New(gatewayUsage)
	}
	fs := flag.NewFlagSet("obol gateway outbox "+args[1], flag.ContinueOnError)
	pgURL := fs.String("postgres-url", os.Getenv("OBOL_GATEWAY_POSTGRES_URL"), "the gateway's PostgreSQL database")
	dataDir := fs.String("data-dir", "", "obol dev's data directory (its gateway.db)")
	state := fs.String("state", "", "list only entries in this state: dead or pending")
	limit := fs.Int("limit", 100, "list at most this many entries")
	all := fs.Bool("all", false, "retry every dead entry")
	if err := cli.Parse(fs, args[2:]); err != nil {
		return err
	}
	var st *paystore.Store
	var err error
	switch {
	case *dataDir != "":
		path := filepath.Join(*dataDir, "gateway.db")
		if _, serr := os.Stat(path); serr != nil {
			return fmt.Errorf("--data-dir: %w", serr)
		}
		st, err = paysqlite.Open(ctx, path)
	case *pgURL != "":
		st, err = paypg.Open(ctx, *pgURL)
	default:
		return errors.New("the gateway database is required: --postgres-url (OBOL_GATEWAY_POSTGRES_URL) or --data-dir")
	}
	if err != nil {
		return err
	}
	defer st.Close()
	switch args[1] {
	case "list":
		if *state != "" && *state != service.OutboxDead && *state != service.OutboxPending {
			return errors.New("--state must be dead or pending")
		}
		if *limit <= 0 {
			return errors.New("--limit must be positive")
		}
		es, err := st.OutboxList(ctx, *state, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPAYMENT\tSTATE\tATTEMPTS\tLAST ERROR\tNEXT ATTEMPT\tCREATED")
		for _, e := range es {
			next := e.NextAttemptAt.Format(time.RFC3339)
			if e.State == service.OutboxDead {
				next = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.PaymentID, e.State, e.Attempts, e.LastError, next, e.CreatedAt.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d entries\n", len(es))
		return nil
	case "retry":
		id := fs.Arg(0)
		if (id == "") == !*all || fs.NArg() > 1 {
			return errors.New("obol gateway outbox retry: name one OUTBOX_ID or --all")
		}
		n, err := st.OutboxRetry(ctx, id, time.Now())
		if err != nil {
			return err
		}
		if id != "" && n == 0 {
			return fmt.Errorf("no dead outbox entry %q", id)
		}
		fmt.Fprintf(out, "%d dead entries queued again; the gateway's sweeper delivers them\n", n)
		return nil
	}
	return errors.New(gatewayUsage)
}
