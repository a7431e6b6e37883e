package main

import "github.com/spf13/cobra"

func newPayoutsCmd() *cobra.Command {
	return group("payouts", "Run, list and settle merchant payouts", newPayoutsRunCmd(), newPayoutsListCmd(), newPayoutsMarkCmd())
}
