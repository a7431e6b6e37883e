// Package money is Obol's one table of currencies (ISO 4217 codes and their
// minor-unit exponents) and its integer arithmetic: amounts are int64 minor
// units, every operation checks for overflow, and fees round by one
// documented rule. PAN-free; shared by the gateway, risk and ledger.
package money

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// Errors.
var (
	// ErrUnknownCurrency: not an active ISO 4217 code (upper case).
	ErrUnknownCurrency = errors.New("unknown currency")
	// ErrOverflow: the result does not fit in int64 minor units.
	ErrOverflow = errors.New("amount overflow")
	// ErrNegative: a negative amount or rate where none is allowed.
	ErrNegative = errors.New("negative amount")
)

// exponents maps each active ISO 4217 currency to its number of minor-unit
// digits (e.g. USD 2, JPY 0, KWD 3). Funds and precious metals are left out.
var exponents = map[string]int{
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
	"BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BRL": 2,
	"BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0, "CNY": 2,
	"COP": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2,
	"ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2,
	"GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
	"IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0,
	"KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2,
	"LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
	"MVR": 2, "MWK": 2, "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2,
	"NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2,
	"RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2,
	"SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2,
	"TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0,
	"USD": 2, "UYU": 2, "UZS": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XOF": 0,
	"XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}

// Exponent returns the number of minor-unit digits of an ISO 4217 code.
func Exponent(code string) (int, error) {
	e, ok := exponents[code]
	if !ok {
		return 0, ErrUnknownCurrency
	}
	return e, nil
}

// Valid reports whether code is an active ISO 4217 currency (upper case).
func Valid(code string) bool {
	_, ok := exponents[code]
	return ok
}

// Add returns a+b or ErrOverflow.
func Add(a, b int64) (int64, error) {
	s := a + b
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		return 0, ErrOverflow
	}
	return s, nil
}

// Sub returns a-b or ErrOverflow.
func Sub(a, b int64) (int64, error) {
	if b == math.MinInt64 {
		return 0, ErrOverflow
	}
	return Add(a, -b)
}

// Sum adds amounts, failing on overflow.
func Sum(amounts ...int64) (int64, error) {
	var s int64
	var err error
	for _, a := range amounts {
		if s, err = Add(s, a); err != nil {
			return 0, err
		}
	}
	return s, nil
}

// Fee is a percentage in basis points (1 bp = 0.01 %) plus a fixed amount in
// minor units.
type Fee struct {
	BasisPoints int64
	Fixed       int64
}

// Of computes the fee on a non-negative amount: amount × bp / 10,000,
// rounded half up (half a minor unit rounds away from zero; exact for every
// int64 amount: the product is computed in 128 bits), plus Fixed. The fee
// never exceeds the amount.
func (f Fee) Of(amount int64) (int64, error) {
	if amount < 0 || f.BasisPoints < 0 || f.Fixed < 0 {
		return 0, ErrNegative
	}
	hi, lo := bits.Mul64(uint64(amount), uint64(f.BasisPoints))
	// (amount*bp + 5000) / 10000, in 128 bits.
	lo, carry := bits.Add64(lo, 5000, 0)
	hi += carry
	if hi >= 10000 {
		return 0, ErrOverflow
	}
	q, _ := bits.Div64(hi, lo, 10000)
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	fee, err := Add(int64(q), f.Fixed)
	if err != nil {
		return 0, err
	}
	if fee > amount {
		fee = amount
	}
	return fee, nil
}

// Format renders minor units as a decimal string in the currency's
// exponent (1234 USD → "12.34", 1234 JPY → "1234", -5 KWD → "-0.005").
// Unknown currencies render as plain minor units.
func Format(amount int64, currency string) string {
	exp, err := Exponent(currency)
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = -u
	}
	digits := strconv.FormatUint(u, 10)
	if err == nil && exp > 0 {
		for len(digits) <= exp {
			digits = "0" + digits
		}
		digits = digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}
