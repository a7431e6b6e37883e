package card

import (
	"fmt"
	"log/slog"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/obolpay/obol/internal/apierr"
)

// Length limits of a PAN, in digits (ISO/IEC 7812).
const (
	MinLength = 12
	MaxLength = 19
	// MaxHolderName is the longest accepted cardholder name, in characters.
	MaxHolderName = 100
	// maxRawNumber bounds the raw number string (digits plus separators).
	maxRawNumber = 64
)

// Machine codes of card validation errors.
const (
	CodeNumberCharacters  = "number_invalid_characters"
	CodeNumberLength      = "number_invalid_length"
	CodeNumberLuhn        = "number_failed_luhn"
	CodeBrandUnsupported  = "brand_not_supported"
	CodeExpMonthInvalid   = "exp_month_invalid"
	CodeExpYearInvalid    = "exp_year_invalid"
	CodeCardExpired       = "card_expired"
	CodeCVCInvalid        = "cvc_invalid"
	CodeHolderNameInvalid = "holder_name_invalid"
)

// Field names as they appear in the public API.
const (
	FieldNumber     = "card.number"
	FieldExpMonth   = "card.exp_month"
	FieldExpYear    = "card.exp_year"
	FieldCVC        = "card.cvc"
	FieldHolderName = "card.holder_name"
)

// Validation errors. None of them carries any part of the input.
var (
	ErrNumberRequired   = apierr.Invalid(apierr.CodeFieldRequired, FieldNumber, "card number is required")
	ErrNumberCharacters = apierr.Invalid(CodeNumberCharacters, FieldNumber, "card number may contain only the digits 0-9, spaces and dashes")
	ErrNumberLength     = apierr.Invalid(CodeNumberLength, FieldNumber, "card number must have 12 to 19 digits")
	ErrNumberLuhn       = apierr.Invalid(CodeNumberLuhn, FieldNumber, "card number fails the Luhn check")
	ErrBrandUnsupported = apierr.Invalid(CodeBrandUnsupported, FieldNumber, "card number does not belong to a supported brand")
	ErrBrandLength      = apierr.Invalid(CodeNumberLength, FieldNumber, "card number has the wrong number of digits for its brand")
	ErrExpMonthRequired = apierr.Invalid(apierr.CodeFieldRequired, FieldExpMonth, "expiry month is required")
	ErrExpMonth         = apierr.Invalid(CodeExpMonthInvalid, FieldExpMonth, "expiry month must be between 1 and 12")
	ErrExpYearRequired  = apierr.Invalid(apierr.CodeFieldRequired, FieldExpYear, "expiry year is required")
	ErrExpYear          = apierr.Invalid(CodeExpYearInvalid, FieldExpYear, "expiry year must be a four-digit year no more than 50 years ahead")
	ErrExpired          = apierr.Invalid(CodeCardExpired, FieldExpYear, "card has expired")
	ErrCVC              = apierr.Invalid(CodeCVCInvalid, FieldCVC, "CVC must be 3 digits (4 for American Express)")
	ErrHolderName       = apierr.Invalid(CodeHolderNameInvalid, FieldHolderName, fmt.Sprintf("holder name must be at most %d printable characters", MaxHolderName))
)

// ParseNumber validates a raw card number: ASCII digits with optional spaces
// and dashes, 12 to 19 digits, Luhn-valid, of a supported brand with a length
// that brand issues. The returned PAN owns a fresh buffer; the caller should
// Wipe it when done.
func ParseNumber(raw string) (PAN, error) {
	if raw == "" {
		return PAN{}, ErrNumberRequired
	}
	if len(raw) > maxRawNumber {
		return PAN{}, ErrNumberLength
	}
	digits := make([]byte, 0, MaxLength)
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= '0' && c <= '9':
			if len(digits) == MaxLength {
				clear(digits)
				return PAN{}, ErrNumberLength
			}
			digits = append(digits, c)
		case c == ' ' || c == '-':
		default:
			clear(digits)
			return PAN{}, ErrNumberCharacters
		}
	}
	if len(digits) < MinLength {
		clear(digits)
		return PAN{}, ErrNumberLength
	}
	if !luhnValid(digits) {
		clear(digits)
		return PAN{}, ErrNumberLuhn
	}
	brand := detectBrand(digits)
	if brand == "" {
		clear(digits)
		return PAN{}, ErrBrandUnsupported
	}
	if !brand.acceptsLength(len(digits)) {
		clear(digits)
		return PAN{}, ErrBrandLength
	}
	return PAN{p: &panData{digits: digits, brand: brand}}, nil
}

// luhnValid checks the mod-10 check digit.
func luhnValid(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

// ValidateExpiry checks month 1–12, a plausible four-digit year, and that the
// card is valid through the end of its expiry month (UTC) at now.
func ValidateExpiry(month, year int, now time.Time) error {
	if month == 0 {
		return ErrExpMonthRequired
	}
	if month < 1 || month > 12 {
		return ErrExpMonth
	}
	if year == 0 {
		return ErrExpYearRequired
	}
	now = now.UTC()
	if year < 1000 || year > 9999 || year > now.Year()+50 {
		return ErrExpYear
	}
	if year < now.Year() || (year == now.Year() && month < int(now.Month())) {
		return ErrExpired
	}
	return nil
}

// ParseCVC validates a CVC for the brand: 3 digits, 4 for American Express.
// An empty CVC is allowed (card on file) and yields a zero CVC.
func ParseCVC(raw string, brand Brand) (CVC, error) {
	if raw == "" {
		return CVC{}, nil
	}
	want := 3
	if brand == Amex {
		want = 4
	}
	if len(raw) != want {
		return CVC{}, ErrCVC
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			clear(b)
			return CVC{}, ErrCVC
		}
		b[i] = raw[i]
	}
	return NewCVCFromDigits(b), nil
}

// ValidateHolderName accepts an empty name or up to MaxHolderName printable
// characters of valid UTF-8.
func ValidateHolderName(name string) error {
	if name == "" {
		return nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxHolderName {
		return ErrHolderName
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return ErrHolderName
		}
	}
	return nil
}

// Card is validated cardholder data. Its String, Format, LogValue and JSON
// forms are masked (holder name is withheld too).
type Card struct {
	Number     PAN
	ExpMonth   int
	ExpYear    int
	HolderName string
	CVC        CVC
}

// Input is the raw, untrusted card data as received from a client.
type Input struct {
	Number     string
	ExpMonth   int
	ExpYear    int
	CVC        string
	HolderName string
}

// Parse validates every field of in, returning the first error in field order
// (number, expiry month, expiry year, CVC, holder name).
func Parse(in Input, now time.Time) (Card, error) {
	pan, err := ParseNumber(in.Number)
	if err != nil {
		return Card{}, err
	}
	if err := ValidateExpiry(in.ExpMonth, in.ExpYear, now); err != nil {
		pan.Wipe()
		return Card{}, err
	}
	cvc, err := ParseCVC(in.CVC, pan.Brand())
	if err != nil {
		pan.Wipe()
		return Card{}, err
	}
	if err := ValidateHolderName(in.HolderName); err != nil {
		pan.Wipe()
		cvc.Wipe()
		return Card{}, err
	}
	return Card{Number: pan, ExpMonth: in.ExpMonth, ExpYear: in.ExpYear, HolderName: in.HolderName, CVC: cvc}, nil
}

// Wipe overwrites the PAN and CVC buffers.
func (c Card) Wipe() {
	c.Number.Wipe()
	c.CVC.Wipe()
}

func (c Card) describe() string {
	return fmt.Sprintf("card{%s %s exp=%02d/%04d}", c.Number.Brand(), c.Number.Masked(), c.ExpMonth, c.ExpYear)
}

func (c Card) String() string               { return c.describe() }
func (c Card) GoString() string             { return c.describe() }
func (c Card) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(c.describe())) }
func (c Card) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf("%q", c.describe())), nil }

// LogValue logs brand, masked number and expiry only.
func (c Card) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("brand", string(c.Number.Brand())),
		slog.String("number", c.Number.Masked()),
		slog.Int("exp_month", c.ExpMonth),
		slog.Int("exp_year", c.ExpYear),
	)
}
