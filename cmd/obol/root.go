package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
)

const overview = `obol — card tokenization vault and gateway

  obol dev runs Obol on the embedded default: local keyring, SQLite,
  in-process CVC store, and a demo shop with the hosted card fields. NOT FOR
  PRODUCTION. Everything lives in the data dir (--data-dir, default .obol)
  and survives a restart; obol dev --payout-delay 0 releases captured funds
  at once (default T+2), so payouts can be tried today.

  The ledger, payouts, reconcile and gateway outbox commands find a running
  obol dev's addresses and tokens in --data-dir (default .obol); flags and
  OBOL_* variables (deploy/CONFIG.md) override them for ledgerd and gatewayd.
  Run obol COMMAND -h for each command's flags.`

// newRoot builds the command tree; help goes to out.
func newRoot(out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "obol",
		Short:         "Card tokenization vault and payments gateway",
		Long:          overview,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return fmt.Errorf("a command is required")
		},
	}
	root.SetOut(out)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.FlagError(err) })
	root.AddCommand(newDevCmd(), newMerchantsCmd(), newVaultCmd(), newKeysCmd(), newAuditCmd(),
		newLedgerCmd(), newReconcileCmd("reconcile"), newPayoutsCmd(), newGatewayCmd(), newEventsCmd(), newListenCmd(), newCertsCmd(), newMigrateCmd(), newVersionCmd())
	return root
}

// group is a command that only holds subcommands: without one, or with an
// unknown one, it prints its help and fails.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			_ = cmd.Help()
			return fmt.Errorf("%s: a subcommand is required", cmd.CommandPath())
		},
	}
	c.AddCommand(subs...)
	return c
}

// bind registers cfg's flags on cmd (see internal/cli) and names its
// environment-only variables in the help; call the returned Loader's Load
// first thing in RunE.
//
// Before it runs, the command warns on stderr about OBOL_* variables that
// no Obol binary reads (a typo such as OBOL_LEDGR_ADDR would otherwise be
// silently ignored), naming them, never their values.
func bind(cmd *cobra.Command, cfg any) *cli.Loader {
	l := cli.Bind(cmd.Flags(), cfg)
	cmd.PreRun = func(cmd *cobra.Command, _ []string) { warnUnknownEnv(cmd.ErrOrStderr()) }
	if h := cli.EnvHelp(cfg); h != "" {
		if cmd.Long == "" {
			cmd.Long = cmd.Short
		}
		cmd.Long += "\n\n" + h
	}
	return l
}

// loadCmd binds a config C's flags to cmd (see bind) and sets its RunE to
// load C, then run with it.
func loadCmd[C any](cmd *cobra.Command, run func(cmd *cobra.Command, args []string, c C) error) *cobra.Command {
	var c C
	l := bind(cmd, &c)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := l.Load(); err != nil {
			return err
		}
		return run(cmd, args, c)
	}
	return cmd
}

// warnUnknownEnv writes, to w, the names of the OBOL_* variables set that
// no Obol binary reads.
func warnUnknownEnv(w io.Writer) {
	typos, renamed := config.SplitUnknown()
	if len(typos) > 0 {
		fmt.Fprintf(w, "obol: warning: ignoring OBOL_* variables that no Obol binary reads (a typo?); see deploy/CONFIG.md: %s\n", strings.Join(typos, ", "))
	}
	if len(renamed) > 0 {
		fmt.Fprintf(w, "obol: warning: ignoring renamed OBOL_* variables; see deploy/CONFIG.md: %s\n", strings.Join(renamed, ", "))
	}
}
