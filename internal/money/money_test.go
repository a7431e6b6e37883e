package money

import (
	"math"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExponent(t *testing.T) {
	tests := []struct {
		code string
		exp  int
		err  error
	}{
		{"USD", 2, nil}, {"EUR", 2, nil}, {"JPY", 0, nil}, {"KRW", 0, nil}, {"KWD", 3, nil}, {"BHD", 3, nil},
		{"usd", 0, ErrUnknownCurrency}, {"XXX", 0, ErrUnknownCurrency}, {"", 0, ErrUnknownCurrency}, {"US", 0, ErrUnknownCurrency},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e, err := Exponent(tt.code)
			require.ErrorIs(t, err, tt.err) // errors.Is(nil, nil) holds: a nil want needs a nil error
			assert.Equal(t, tt.exp, e, "Exponent(%q)", tt.code)
			assert.Equal(t, tt.err == nil, Valid(tt.code), "Valid(%q)", tt.code)
		})
	}
	assert.GreaterOrEqual(t, len(exponents), 150, "currencies")
}

func TestArithmeticOverflow(t *testing.T) {
	tests := []struct {
		name string
		f    func() (int64, error)
		want int64
		err  error
	}{
		{"add", func() (int64, error) { return Add(2, 3) }, 5, nil},
		{"add overflow", func() (int64, error) { return Add(math.MaxInt64, 1) }, 0, ErrOverflow},
		{"add underflow", func() (int64, error) { return Add(math.MinInt64, -1) }, 0, ErrOverflow},
		{"sub", func() (int64, error) { return Sub(2, 3) }, -1, nil},
		{"sub min", func() (int64, error) { return Sub(0, math.MinInt64) }, 0, ErrOverflow},
		{"sum", func() (int64, error) { return Sum(1, 2, 3, -6) }, 0, nil},
		{"sum overflow", func() (int64, error) { return Sum(math.MaxInt64/2, math.MaxInt64/2, 2) }, 0, ErrOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f()
			require.ErrorIs(t, err, tt.err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFee(t *testing.T) {
	tests := []struct {
		name   string
		fee    Fee
		amount int64
		want   int64
		err    error
	}{
		{"2.9% + 30 on 10.00", Fee{290, 30}, 1000, 59, nil},
		{"half rounds up", Fee{50, 0}, 100, 1, nil},         // 0.5 -> 1
		{"below half rounds down", Fee{49, 0}, 100, 0, nil}, // 0.49 -> 0
		{"zero amount, fixed capped by amount", Fee{290, 30}, 0, 0, nil},
		{"fee capped at the amount", Fee{0, 500}, 100, 100, nil},
		{"huge amount exact", Fee{10000, 0}, math.MaxInt64, math.MaxInt64, nil},
		{"negative amount", Fee{290, 30}, -1, 0, ErrNegative},
		{"negative rate", Fee{-1, 0}, 100, 0, ErrNegative},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.fee.Of(tt.amount)
			require.ErrorIs(t, err, tt.err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzFee checks the fee against exact big-integer arithmetic.
func FuzzFee(f *testing.F) {
	f.Add(int64(1000), int64(290), int64(30))
	f.Add(int64(math.MaxInt64), int64(9999), int64(0))
	f.Fuzz(func(t *testing.T, amount, bp, fixed int64) {
		got, err := Fee{bp, fixed}.Of(amount)
		if amount < 0 || bp < 0 || fixed < 0 {
			require.ErrorIs(t, err, ErrNegative, "negative input accepted: %d", got)
			return
		}
		exact := new(big.Int).Mul(big.NewInt(amount), big.NewInt(bp))
		exact.Add(exact, big.NewInt(5000))
		exact.Quo(exact, big.NewInt(10000))
		exact.Add(exact, big.NewInt(fixed))
		if exact.Cmp(big.NewInt(amount)) > 0 {
			exact = big.NewInt(amount)
		}
		if err != nil {
			require.ErrorIs(t, err, ErrOverflow)
			return
		}
		require.Zero(t, exact.Cmp(big.NewInt(got)), "Fee{%d,%d}.Of(%d) = %d, exact %s", bp, fixed, amount, got, exact)
	})
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name     string
		amount   int64
		currency string
		want     string
	}{
		{"dollars and cents", 1234, "USD", "12.34"},
		{"cents only", 5, "USD", "0.05"},
		{"zero", 0, "EUR", "0.00"},
		{"yen has no minor unit", 1234, "JPY", "1234"},
		{"dinar has three", -5, "KWD", "-0.005"},
		{"most negative int64", math.MinInt64, "USD", "-92233720368547758.08"},
		{"unknown currency", 42, "XXX", "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Format(tt.amount, tt.currency), "Format(%d, %s)", tt.amount, tt.currency)
		})
	}
}
