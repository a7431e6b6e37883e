package journal

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func accts() map[string]*Account {
	return map[string]*Account{
		"cash":     {ID: "cash", Currency: "USD"},
		"merchant": {ID: "merchant", Currency: "USD", Flags: FlagNoNegativeAvailable},
		"eur":      {ID: "eur", Currency: "EUR"},
		"eur2":     {ID: "eur2", Currency: "EUR"},
	}
}

func tx(ps ...Posting) *Transaction { return &Transaction{ID: "t1", Postings: ps} }

func TestValidateAndApply(t *testing.T) {
	tests := []struct {
		name string
		t    *Transaction
		err  error
	}{
		{"balanced", tx(Posting{"cash", -100, "USD"}, Posting{"merchant", 100, "USD"}), nil},
		{"multi-currency balanced", tx(Posting{"cash", -100, "USD"}, Posting{"merchant", 100, "USD"}, Posting{"eur", -5, "EUR"}, Posting{"eur2", 5, "EUR"}), nil},
		{"one posting", tx(Posting{"cash", -100, "USD"}), ErrTooFewPostings},
		{"zero amount", tx(Posting{"cash", 0, "USD"}, Posting{"merchant", 0, "USD"}), ErrZeroAmount},
		{"unbalanced", tx(Posting{"cash", -100, "USD"}, Posting{"merchant", 99, "USD"}), ErrUnbalanced},
		{"balanced across currencies only", tx(Posting{"cash", -100, "USD"}, Posting{"eur", 100, "EUR"}), ErrUnbalanced},
		{"unknown currency", tx(Posting{"cash", -100, "XYZ"}, Posting{"merchant", 100, "XYZ"}), ErrUnknownCurrency},
		{"currency mismatch with account", tx(Posting{"cash", -100, "EUR"}, Posting{"eur", 100, "EUR"}), ErrCurrencyMismatch},
		{"unknown account", tx(Posting{"nope", -100, "USD"}, Posting{"merchant", 100, "USD"}), ErrUnknownAccount},
		{"would overdraw a protected account", tx(Posting{"merchant", -1, "USD"}, Posting{"cash", 1, "USD"}), ErrInsufficientFunds},
		{"overflow", tx(Posting{"cash", math.MinInt64, "USD"}, Posting{"cash", -1, "USD"}, Posting{"merchant", 1, "USD"}), ErrOverflow},
		{"no id", &Transaction{Postings: []Posting{{"cash", -1, "USD"}, {"merchant", 1, "USD"}}}, ErrIDRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := accts()
			err := tt.t.Validate()
			if err == nil {
				err = Apply(tt.t, a)
			}
			require.ErrorIs(t, err, tt.err) // errors.Is(nil, nil) holds: a nil want needs a nil error
			if tt.err != nil {
				for _, acc := range a {
					require.Zero(t, acc.Balance.Posted, "a failed transaction changed %s", acc.ID)
				}
			}
		})
	}
}

func TestApplyNetsPostingsToOneAccount(t *testing.T) {
	a := accts()
	a["merchant"].Balance.Posted = 50
	// Debit 80 and credit 40 on the protected account nets to -40: allowed (50-40=10).
	t1 := tx(Posting{"merchant", -80, "USD"}, Posting{"merchant", 40, "USD"}, Posting{"cash", 40, "USD"})
	require.NoError(t, Apply(t1, a))
	assert.EqualValues(t, 10, a["merchant"].Balance.Posted, "merchant")
	assert.EqualValues(t, 40, a["cash"].Balance.Posted, "cash")
}

func TestHashes(t *testing.T) {
	a := tx(Posting{"cash", -100, "USD"}, Posting{"merchant", 100, "USD"})
	b := tx(Posting{"cash", -100, "USD"}, Posting{"merchant", 100, "USD"})
	b.Metadata = map[string]string{"k": "v"}
	assert.NotEqual(t, RequestHash(a), RequestHash(b), "metadata is not part of the request hash")
	c := tx(Posting{"merchant", 100, "USD"}, Posting{"cash", -100, "USD"})
	assert.NotEqual(t, RequestHash(a), RequestHash(c), "posting order is not part of the request hash")
}
