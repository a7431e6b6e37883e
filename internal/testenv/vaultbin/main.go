// Command vault builds the stock HashiCorp Vault server and CLI from the Go
// module proxy, for Obol's integration tests. It lives in its own module so
// that Vault's very large dependency graph never enters Obol's go.mod.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
