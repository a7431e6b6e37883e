package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/internal/telemetry"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/sqlite"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/vault/vaultd"
)

// runLedger implements `obol ledger verify|reconcile|balances|import-settlement`.
func runLedger(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: obol ledger verify|reconcile|balances|import-settlement")
	}
	switch args[0] {
	case "verify":
		return runLedgerVerify(ctx, args[1:], out)
	case "reconcile":
		return runReconcile(ctx, args[1:], out)
	case "balances":
		fs, conn := ledgerFlags("obol ledger balances")
		merchant := fs.String("merchant", "", "merchant id")
		currency := fs.String("currency", "USD", "ISO 4217 currency")
		if err := cli.ParseStd(fs, args[1:]); err != nil {
			return err
		}
		if *merchant == "" {
			return errors.New("--merchant is required")
		}
		c, cctx, closer, err := conn.dial(ctx)
		if err != nil {
			return err
		}
		defer closer()
		b, err := c.GetMerchantBalances(cctx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: *merchant, Currency: *currency})
		if err != nil {
			return apierr.From(err)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "merchant %s (%s)\t\n", b.MerchantId, b.Currency)
		for _, r := range []struct {
			n string
			v int64
		}{{"held (authorized)", b.Held}, {"pending (T+N)", b.Pending}, {"reserve", b.Reserve}, {"available", b.Available}, {"in transit", b.InTransit}} {
			fmt.Fprintf(tw, "%s\t%s\t\n", r.n, money.Format(r.v, b.Currency))
		}
		return tw.Flush()
	case "import-settlement":
		fs, conn := ledgerFlags("obol ledger import-settlement")
		acquirer := fs.String("acquirer", "", "the acquirer whose report this is (e.g. simulator)")
		currency := fs.String("currency", "", "refuse lines in any other currency")
		if err := cli.ParseStd(fs, args[1:]); err != nil {
			return err
		}
		if *acquirer == "" || fs.NArg() != 1 {
			return errors.New("usage: obol ledger import-settlement --acquirer NAME [--currency USD] FILE.csv")
		}
		data, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		c, cctx, closer, err := conn.dial(ctx)
		if err != nil {
			return err
		}
		defer closer()
		rep, err := c.ImportSettlement(cctx, &ledgerv1.ImportSettlementRequest{Acquirer: *acquirer, Currency: *currency, Csv: string(data)})
		if err != nil {
			return apierr.From(err)
		}
		for _, l := range rep.Results {
			if l.Outcome != "matched" {
				fmt.Fprintf(out, "line %d %s %s %d %s: %s %s\n", l.Line, l.Type, l.AcquirerReference, l.Amount, l.Currency, strings.ToUpper(l.Outcome), l.Reason)
			}
		}
		fmt.Fprintf(out, "%d lines: %d matched and posted, %d already posted, %d unmatched, %d mismatched; settled %d gross, %d acquirer fees, %d charged back (minor units)\n",
			rep.Lines, rep.Matched, rep.AlreadyPosted, rep.Unmatched, rep.Mismatched, rep.SettledGross, rep.SettledFees, rep.ChargebackGross)
		if rep.Unmatched+rep.Mismatched > 0 {
			return fmt.Errorf("%d line(s) need attention (not posted)", rep.Unmatched+rep.Mismatched)
		}
		return nil
	default:
		return fmt.Errorf("unknown ledger command %q (verify, reconcile, balances, import-settlement)", args[0])
	}
}

func runLedgerVerify(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("obol ledger verify", flag.ContinueOnError)
	url := fs.String("postgres-url", cli.Env("OBOL_LEDGER_POSTGRES_URL", ""), "ledger database URL (OBOL_LEDGER_POSTGRES_URL)")
	dataDir := fs.String("data-dir", "./.obol", "the obol dev data directory (its SQLite ledger; ignored with --postgres-url)")
	if err := cli.ParseStd(fs, args); err != nil {
		return err
	}
	var st store.Store
	var err error
	if *url != "" {
		st, err = postgres.Open(ctx, *url)
	} else {
		// Opening would create an empty ledger, which verifies: refuse.
		path := filepath.Join(*dataDir, "ledger.db")
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
}

// runPayouts implements `obol payouts run|list|mark`.
func runPayouts(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: obol payouts run|list|mark")
	}
	fs, conn := ledgerFlags("obol payouts " + args[0])
	switch args[0] {
	case "run":
		date := fs.String("date", "", "run date YYYY-MM-DD (default today, UTC)")
		merchant := fs.String("merchant", "", "only this merchant (also pays out manual-schedule merchants)")
		if err := cli.ParseStd(fs, args[1:]); err != nil {
			return err
		}
		c, cctx, closer, err := conn.dial(ctx)
		if err != nil {
			return err
		}
		defer closer()
		rep, err := c.RunPayouts(cctx, &ledgerv1.RunPayoutsRequest{Date: *date, MerchantId: *merchant})
		if err != nil {
			return apierr.From(err)
		}
		if d, perr := time.Parse(time.DateOnly, *date); perr == nil && d.After(time.Now().UTC()) {
			fmt.Fprintf(out, "note: --date %s is in the future: the run releases what has matured by now (time is not simulated); in obol dev, --payout-delay 0 releases captures at once\n", *date)
		}
		for _, r := range rep.Released {
			fmt.Fprintf(out, "released %s %s: %s (reserve %s, from reserve %s)\n", r.MerchantId, r.Currency, money.Format(r.Amount, r.Currency), money.Format(r.Reserved, r.Currency), money.Format(r.FromReserve, r.Currency))
		}
		for _, p := range rep.Payouts {
			fmt.Fprintf(out, "payout %s %s %s %s %s\n", p.Id, p.MerchantId, money.Format(p.Amount, p.Currency), p.Currency, p.Status)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintln(out, "skipped", s)
		}
		fmt.Fprintf(out, "batch %s: %d payout(s)\n", rep.Batch, len(rep.Payouts))
		return nil
	case "list":
		batch := fs.String("batch", "", "batch date YYYY-MM-DD (default today)")
		csvFile := fs.String("csv", "", "also write the batch as CSV to this file (- for stdout)")
		if err := cli.ParseStd(fs, args[1:]); err != nil {
			return err
		}
		c, cctx, closer, err := conn.dial(ctx)
		if err != nil {
			return err
		}
		defer closer()
		rep, err := c.ListPayouts(cctx, &ledgerv1.ListPayoutsRequest{Batch: *batch, Csv: *csvFile != ""})
		if err != nil {
			return apierr.From(err)
		}
		switch *csvFile {
		case "":
			for _, p := range rep.Payouts {
				fmt.Fprintf(out, "%s %s %s %s %s\n", p.Id, p.MerchantId, money.Format(p.Amount, p.Currency), p.Currency, p.Status)
			}
		case "-":
			fmt.Fprint(out, rep.Csv)
		default:
			if err := os.WriteFile(*csvFile, []byte(rep.Csv), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d payout(s) written to %s\n", len(rep.Payouts), *csvFile)
		}
		return nil
	case "mark":
		if err := cli.ParseStd(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return errors.New("usage: obol payouts mark PAYOUT_ID paid|failed")
		}
		c, cctx, closer, err := conn.dial(ctx)
		if err != nil {
			return err
		}
		defer closer()
		p, err := c.UpdatePayout(cctx, &ledgerv1.UpdatePayoutRequest{Id: fs.Arg(0), Status: fs.Arg(1)})
		if err != nil {
			return apierr.From(err)
		}
		fmt.Fprintf(out, "payout %s %s\n", p.Id, p.Status)
		return nil
	default:
		return fmt.Errorf("unknown payouts command %q (run, list, mark)", args[0])
	}
}

type ledgerConn struct {
	addr, dataDir, ca string
}

func ledgerFlags(name string) (*flag.FlagSet, *ledgerConn) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c := &ledgerConn{}
	fs.StringVar(&c.addr, "ledger-addr", cli.Env("OBOL_LEDGER_ADDR", "127.0.0.1:9092"), "ledgerd gRPC address (OBOL_LEDGER_ADDR)")
	fs.StringVar(&c.dataDir, "data-dir", "./.obol", "obol dev data directory (for the dev ledger token when OBOL_LEDGER_TOKEN is unset)")
	fs.StringVar(&c.ca, "ledger-ca", cli.Env("OBOL_LEDGER_CA", ""), "CA of ledgerd's TLS certificate (plaintext gRPC without it: dev only)")
	return fs, c
}

// dial connects to ledgerd with the service token.
func (c *ledgerConn) dial(ctx context.Context) (ledgerv1.LedgerServiceClient, context.Context, func(), error) {
	token := os.Getenv("OBOL_LEDGER_TOKEN")
	if token == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, vaultd.CredentialsFile))
		if err != nil {
			return nil, nil, nil, errors.New("OBOL_LEDGER_TOKEN is not set and there is no obol dev credentials file in --data-dir")
		}
		creds := map[string]string{}
		_ = json.Unmarshal(b, &creds)
		if token = creds["ledger_token"]; token == "" {
			return nil, nil, nil, errors.New("OBOL_LEDGER_TOKEN is not set and the dev credentials have no ledger_token (start obol dev once)")
		}
	}
	creds := insecure.NewCredentials()
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("%s: no PEM certificates", c.ca)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds), telemetry.GRPCClientOption())
	if err != nil {
		return nil, nil, nil, err
	}
	return ledgerv1.NewLedgerServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), func() { conn.Close() }, nil
}
