package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLookupsUseIndexes: the lookups by payment id (reconciliation),
// acquirer reference (settlement) and payout id use their expression
// indexes instead of scanning the journal once per lookup.
func TestLookupsUseIndexes(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	require.NoError(t, err)
	defer s.Close()
	for _, key := range []string{"payment_id", "acquirer_reference", "payout_id"} {
		t.Run(key, func(t *testing.T) {
			q, args := findQuery(key, "x", 10)
			rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+q, args...)
			require.NoError(t, err)
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
				plan = append(plan, detail)
			}
			require.NoError(t, rows.Err())
			require.Contains(t, strings.Join(plan, "; "), fmt.Sprintf("USING INDEX transactions_%s", map[string]string{"payment_id": "payment_id", "acquirer_reference": "acquirer_reference", "payout_id": "payout"}[key]))
		})
	}
}
