package main

import "github.com/spf13/cobra"

func newCertsCmd() *cobra.Command {
	return group("certs", "Create the CA and the TLS certificates of a deployment (non-dev PKI; see deploy/PKI.md)", newCertsCreateCmd())
}
