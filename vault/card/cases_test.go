package card

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apierr"
)

// ValidationCase is one row of testdata/validation_cases.json, the table
// that vault/hosted's browser test runs through the hosted fields' rules.js.
type validationCase struct {
	Name     string `json:"name"`
	Number   string `json:"number"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
	CVC      string `json:"cvc"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Brand    string `json:"brand"`
}

// TestValidationCasesShared runs the table shared with the browser: the
// server's code, field and brand for each case must be the table's (the
// browser test checks rules.js against the same rows).
func TestValidationCasesShared(t *testing.T) {
	b, err := os.ReadFile("testdata/validation_cases.json")
	require.NoError(t, err)
	var table struct {
		Now   time.Time        `json:"now"`
		Cases []validationCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(b, &table))
	require.NotEmpty(t, table.Cases)
	for _, tc := range table.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			c, err := Parse(Input{Number: tc.Number, ExpMonth: tc.ExpMonth, ExpYear: tc.ExpYear, CVC: tc.CVC}, table.Now)
			if tc.Code == "" {
				require.NoError(t, err)
				require.Equal(t, tc.Brand, string(c.Number.Brand()))
				c.Wipe()
				return
			}
			var ae *apierr.Error
			require.True(t, errors.As(err, &ae), "want a typed error, got %v", err)
			require.Equal(t, tc.Code, ae.Code)
			require.Equal(t, tc.Field, ae.Field)
		})
	}
}
