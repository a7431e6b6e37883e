package kubernetes_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pendingRenames are variables the manifests use under their new names
// while deploy/CONFIG.md may still list the old ones (issue 18 renames the
// variables several daemons read with different meanings): new -> old.
var pendingRenames = map[string]string{
	"OBOL_VAULT_POSTGRES_URL":  "OBOL_POSTGRES_URL",
	"OBOL_CVC_REDIS_URL":       "OBOL_REDIS_URL",
	"OBOL_RISK_REDIS_URL":      "OBOL_REDIS_URL",
	"OBOL_AUTHLIMIT_REDIS_URL": "OBOL_REDIS_URL",
}

// configReference reads deploy/CONFIG.md (generated from the daemons'
// config structs): per binary, its flags and variables.
func configReference(t *testing.T) (flags, env map[string]map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../CONFIG.md")
	require.NoError(t, err)
	flags, env = map[string]map[string]bool{}, map[string]map[string]bool{}
	quoted := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 5 || !strings.HasPrefix(line, "| ") {
			continue
		}
		bin := strings.TrimSpace(cols[1])
		if flags[bin] == nil {
			flags[bin], env[bin] = map[string]bool{}, map[string]bool{}
		}
		for _, m := range quoted.FindAllStringSubmatch(cols[2], -1) {
			env[bin][m[1]] = true
		}
		for _, m := range quoted.FindAllStringSubmatch(cols[3], -1) {
			flags[bin][m[1]] = true
		}
	}
	require.NotEmpty(t, flags["vaultd"], "CONFIG.md lists vaultd's flags")
	return flags, env
}

// TestArgsAndVariablesExist: every flag and OBOL_* variable a Deployment
// passes is one its binary reads (a typo would stop the daemon at start, or,
// for a variable, only warn).
func TestArgsAndVariablesExist(t *testing.T) {
	flags, env := configReference(t)
	for _, dir := range overlays {
		o := build(t, dir)
		for _, d := range o.deployments {
			t.Run(dir+"/"+d.Name, func(t *testing.T) {
				require.NotEmpty(t, flags[d.Name], "CONFIG.md has no binary %s", d.Name)
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, a := range c.Args {
						flag, _, _ := strings.Cut(a, "=")
						assert.True(t, flags[d.Name][flag], "%s: %s takes no flag %s (deploy/CONFIG.md)", c.Name, d.Name, flag)
					}
					for _, e := range c.Env {
						if !strings.HasPrefix(e.Name, "OBOL_") {
							continue
						}
						known := env[d.Name][e.Name] || env[d.Name][pendingRenames[e.Name]]
						assert.True(t, known, "%s: %s reads no variable %s (deploy/CONFIG.md)", c.Name, d.Name, e.Name)
					}
				}
			})
		}
	}
}
