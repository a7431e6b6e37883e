// Package policies embeds Obol's HashiCorp Vault policies (vault/*.hcl) so
// that `obol vault setup` writes exactly the files security teams review.
// The files use the default names (transit mount "transit", KEK "obol-kek",
// KV v2 mount "secret"); Render substitutes others. PAN-free.
package policies

import (
	"embed"
	"sort"
	"strings"
)

//go:embed vault/*.hcl
var files embed.FS

// Names of the policies, as written to Vault.
const (
	VaultD     = "obol-vaultd"
	KeyAdmin   = "obol-key-admin"
	Auditor    = "obol-auditor"
	BreakGlass = "obol-break-glass"
)

// Names lists every policy.
func Names() []string {
	n := []string{VaultD, KeyAdmin, Auditor, BreakGlass}
	sort.Strings(n)
	return n
}

// Names used in the files.
const (
	defaultTransit = "transit/"
	defaultKEK     = "obol-kek"
	defaultKV      = "secret/"
)

// Render returns policy name's HCL for the given transit mount, KEK name and
// KV v2 mount.
func Render(name, transitMount, kek, kvMount string) (string, error) {
	b, err := files.ReadFile("vault/" + name + ".hcl")
	if err != nil {
		return "", err
	}
	s := string(b)
	s = strings.ReplaceAll(s, `"`+defaultTransit, `"`+strings.Trim(transitMount, "/")+"/")
	s = strings.ReplaceAll(s, "/"+defaultKEK, "/"+kek)
	s = strings.ReplaceAll(s, `"`+defaultKV, `"`+strings.Trim(kvMount, "/")+"/")
	return s, nil
}
