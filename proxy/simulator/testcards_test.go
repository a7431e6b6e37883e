package simulator

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTestCardsDocument: TESTCARDS.md (the table docs and tests cite) and
// the simulator's behaviour agree, row by row.
func TestTestCardsDocument(t *testing.T) {
	b, err := os.ReadFile("TESTCARDS.md")
	require.NoError(t, err)
	row := regexp.MustCompile(`(?m)^\| ([0-9 ]+) \| [^|]+ \| ([^|]+) \|$`)
	rows := row.FindAllStringSubmatch(string(b), -1)
	require.Len(t, rows, 15)
	seen := map[string]bool{}
	for _, r := range rows {
		number, outcome := strings.ReplaceAll(r[1], " ", ""), strings.TrimSpace(r[2])
		b, special := testCards[number]
		seen[number] = special
		switch {
		case strings.HasPrefix(outcome, "declined, `"):
			code := strings.TrimSuffix(strings.TrimPrefix(outcome, "declined, `"), "`")
			assert.Equal(t, code, b.decline, number)
		case strings.Contains(outcome, "HTTP 500"):
			assert.True(t, b.serverErr, number)
		case strings.Contains(outcome, "after 30 s"):
			assert.True(t, b.slow, number)
		case strings.Contains(outcome, "chargeback"):
			want := regexp.MustCompile("reason `([a-z_]+)`\\), then the dispute is (won|lost)").FindStringSubmatch(outcome)
			if assert.Len(t, want, 3, "%s: %q", number, outcome) {
				assert.Equal(t, want[1], b.disputeReason, number)
				assert.Equal(t, want[2], b.dispute, number)
			}
		case strings.HasPrefix(outcome, "approved"):
			assert.False(t, special, "%s is documented as approved", number)
		default:
			assert.Failf(t, "outcome not understood", "%s: %q", number, outcome)
		}
	}
	for n := range testCards {
		assert.True(t, seen[n], "test card %s of the simulator is not in TESTCARDS.md", n)
	}
}
