package boundary

import (
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// devTools are the binaries under cmd/ that are never shipped: the load
// tool starts the real stack through the test harness (internal/testenv).
var devTools = map[string]bool{mod + "/cmd/obol-load": true}

// testOnly reports whether a package is test code: the standard testing
// packages, testify, the test harness and the conformance suites and
// helpers (packages named *test).
func testOnly(p string) bool {
	switch {
	case p == "testing" || strings.HasPrefix(p, "testing/"):
		return true
	case strings.HasPrefix(p, "github.com/stretchr/testify"):
		return true
	case strings.HasPrefix(p, mod+"/"):
		name := path.Base(p)
		return name == "testenv" || strings.HasSuffix(name, "test")
	}
	return false
}

// TestShippedBinariesLinkNoTestCode: every binary under cmd/ but the dev
// tools (the daemons, obol, the simulator) links no test harness, no
// conformance suite, no testify and no package testing.
func TestShippedBinariesLinkNoTestCode(t *testing.T) {
	shipped := 0
	for _, p := range list(t, "./cmd/...") {
		if devTools[p.ImportPath] {
			continue
		}
		shipped++
		for _, d := range p.Deps {
			assert.False(t, testOnly(d), "%s (a shipped binary) links %s (test code)", p.ImportPath, d)
		}
	}
	require.GreaterOrEqual(t, shipped, 6, "shipped binaries found: the test would pass vacuously")
}

func TestTestOnly(t *testing.T) {
	tests := []struct {
		pkg  string
		want bool
	}{
		{"testing", true},
		{"testing/synctest", true},
		{"internal/synctest", false},
		{"github.com/stretchr/testify/require", true},
		{mod + "/internal/testenv", true},
		{mod + "/internal/cli/clitest", true},
		{mod + "/vault/store/storetest", true},
		{mod + "/ledger/book/booktest", true},
		{mod + "/vault/store/postgres", false},
		{mod + "/proxy/service", false},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			assert.Equal(t, tt.want, testOnly(tt.pkg))
		})
	}
}
