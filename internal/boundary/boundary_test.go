// Package boundary holds the test that enforces the PCI boundary in the
// build graph (ARCHITECTURE.md, "The PCI boundary is in the tree"). PAN-free.
package boundary

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
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
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func inCDE(path string) bool {
	return strings.HasPrefix(path, mod+"/vault/") || strings.HasPrefix(path, mod+"/vault") && path == mod+"/vault" ||
		strings.HasPrefix(path, mod+"/proxy/") || path == mod+"/proxy"
}

// TestOutOfScopeLinksNoCardData: risk, ledger, their binaries and the shared
// internal plumbing link nothing under vault/ or proxy/ (so never the PAN
// type), and only CDE packages and binaries import vault/card directly.
func TestOutOfScopeLinksNoCardData(t *testing.T) {
	pkgs := list(t, "./...")
	checked := 0
	for _, p := range pkgs {
		outOfScope := strings.HasPrefix(p.ImportPath, mod+"/risk") || strings.HasPrefix(p.ImportPath, mod+"/ledger") ||
			strings.HasPrefix(p.ImportPath, mod+"/internal/") || p.ImportPath == mod+"/cmd/riskd" || p.ImportPath == mod+"/cmd/ledgerd" ||
			strings.HasPrefix(p.ImportPath, mod+"/proto/obol/risk") || strings.HasPrefix(p.ImportPath, mod+"/proto/obol/ledger")
		if outOfScope {
			checked++
			for _, d := range p.Deps {
				if inCDE(d) {
					t.Errorf("%s (outside PCI scope) links %s", p.ImportPath, d)
				}
			}
		}
		for _, imp := range p.Imports {
			if imp == mod+"/vault/card" && !inCDE(p.ImportPath) {
				t.Errorf("%s imports vault/card; only vault/... and proxy/... may", p.ImportPath)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no out-of-scope packages found: the test would pass vacuously")
	}
	t.Logf("checked %d out-of-scope packages of %d", checked, len(pkgs))
}
