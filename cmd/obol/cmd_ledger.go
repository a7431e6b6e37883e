package main

import "github.com/spf13/cobra"

func newLedgerCmd() *cobra.Command {
	return group("ledger", "Verify, reconcile and query the ledger",
		newLedgerVerifyCmd(), newReconcileCmd("reconcile"), newLedgerBalancesCmd(), newLedgerImportSettlementCmd())
}
