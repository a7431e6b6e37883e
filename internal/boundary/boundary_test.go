// Package boundary holds the test that enforces the PCI boundary in the
// build graph (ARCHITECTURE.md, "The PCI boundary is in the tree"). PAN-free.
package boundary

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mod = "github.com/obolpay/obol"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps=false", "-json"}, patterns...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		err := dec.Decode(&p)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func inCDE(path string) bool {
	return strings.HasPrefix(path, mod+"/vault/") || strings.HasPrefix(path, mod+"/vault") && path == mod+"/vault" ||
		strings.HasPrefix(path, mod+"/proxy/") || path == mod+"/proxy"
}

// TestOutOfScopeLinksNoCardData: risk, ledger (with eventsd under
// ledger/events), their binaries and the shared
// internal plumbing link nothing under vault/ or proxy/ (so never the PAN
// type), and only CDE packages and binaries import vault/card directly.
func TestOutOfScopeLinksNoCardData(t *testing.T) {
	pkgs := list(t, "./...")
	checked, events := 0, 0
	for _, p := range pkgs {
		outOfScope := strings.HasPrefix(p.ImportPath, mod+"/risk") || strings.HasPrefix(p.ImportPath, mod+"/ledger") ||
			strings.HasPrefix(p.ImportPath, mod+"/internal/") || p.ImportPath == mod+"/cmd/riskd" || p.ImportPath == mod+"/cmd/ledgerd" ||
			p.ImportPath == mod+"/cmd/eventsd" || strings.HasPrefix(p.ImportPath, mod+"/proto/obol/events") ||
			strings.HasPrefix(p.ImportPath, mod+"/proto/obol/risk") || strings.HasPrefix(p.ImportPath, mod+"/proto/obol/ledger")
		if outOfScope {
			checked++
			if p.ImportPath == mod+"/cmd/eventsd" || strings.HasPrefix(p.ImportPath, mod+"/ledger/events") {
				events++
			}
			for _, d := range p.Deps {
				assert.False(t, inCDE(d), "%s (outside PCI scope) links %s", p.ImportPath, d)
			}
		}
		if !inCDE(p.ImportPath) {
			assert.NotContains(t, p.Imports, mod+"/vault/card", "%s imports vault/card; only vault/... and proxy/... may", p.ImportPath)
		}
	}
	require.NotZero(t, checked, "no out-of-scope packages found: the test would pass vacuously")
	require.GreaterOrEqual(t, events, 6, "eventsd (cmd/eventsd, ledger/events/...) must be checked: it sends to merchant URLs outside the CDE")
	t.Logf("checked %d out-of-scope packages of %d", checked, len(pkgs))
}
