package card

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		wantBrand Brand
		wantErr   error
	}{
		{"visa", "4242424242424242", Visa, nil},
		{"visa with spaces", "4242 4242 4242 4242", Visa, nil},
		{"visa with dashes", "4242-4242-4242-4242", Visa, nil},
		{"mastercard", "5555555555554444", Mastercard, nil},
		{"mastercard 2-series", "2223003122003222", Mastercard, nil},
		{"amex", "378282246310005", Amex, nil},
		{"discover", "6011111111111117", Discover, nil},
		{"jcb", "3566002020360505", JCB, nil},
		{"unionpay", "6200000000000005", UnionPay, nil},
		{"diners 14", "36227206271667", Diners, nil},
		{"maestro", "6759649826438453", Maestro, nil},
		{"visa declined card", "4000000000000002", Visa, nil},
		{"empty", "", "", ErrNumberRequired},
		{"bad luhn", "4111111111111112", "", ErrNumberLuhn},
		{"letters", "4242abcd42424242", "", ErrNumberCharacters},
		{"non-ascii digits", "４２４２４２４２４２４２４２４２", "", ErrNumberCharacters},
		{"arabic-indic digits", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "", ErrNumberCharacters},
		{"dot separator", "4242.4242.4242.4242", "", ErrNumberCharacters},
		{"too short", "42424242424", "", ErrNumberLength},
		{"too long", "42424242424242424242", "", ErrNumberLength},
		{"very long raw", strings.Repeat(" ", 100) + "4242424242424242", "", ErrNumberLength},
		{"unknown brand", "9999999999999995", "", ErrBrandUnsupported},
		{"visa wrong length", "424242424242424242", "", ErrBrandLength},
		{"amex 16 digits", "3782822463100051", "", ErrNumberLuhn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pan, err := ParseNumber(tt.raw)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				var ae *apierr.Error
				require.ErrorAs(t, err, &ae)
				require.Equal(t, FieldNumber, ae.Field, "error does not name the field")
				// Not assert.NotContains: its failure message would print the number.
				if tt.raw != "" {
					require.False(t, strings.Contains(err.Error(), strings.TrimSpace(tt.raw)), "error echoes the input")
				}
				return
			}
			require.NoError(t, err, "unexpected error")
			require.Equal(t, tt.wantBrand, pan.Brand(), "brand")
			want := strings.NewReplacer(" ", "", "-", "").Replace(tt.raw)
			// Not assert.Equal: its failure message would print the digits.
			require.True(t, string(pan.RevealDigits()) == want, "digits mismatch")
		})
	}
}

func TestValidateExpiry(t *testing.T) {
	tests := []struct {
		name        string
		month, year int
		want        error
	}{
		{"this month is still valid", 11, 2026, nil},
		{"next year", 1, 2027, nil},
		{"last month expired", 10, 2026, ErrExpired},
		{"last year expired", 12, 2025, ErrExpired},
		{"month zero", 0, 2027, ErrExpMonthRequired},
		{"month 13", 13, 2027, ErrExpMonth},
		{"negative month", -1, 2027, ErrExpMonth},
		{"year missing", 5, 0, ErrExpYearRequired},
		{"two-digit year", 5, 27, ErrExpYear},
		{"too far ahead", 5, 2077, ErrExpYear},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// errors.Is(nil, nil) holds: a nil want needs a nil error.
			require.ErrorIs(t, ValidateExpiry(tt.month, tt.year, now), tt.want)
		})
	}
}

func TestParseCVCAndHolder(t *testing.T) {
	tests := []struct {
		name  string
		in    Input
		field string
		code  string
	}{
		{"visa cvc ok", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, CVC: "123"}, "", ""},
		{"amex cvc ok", Input{Number: "378282246310005", ExpMonth: 12, ExpYear: 2030, CVC: "1234"}, "", ""},
		{"no cvc is card on file", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030}, "", ""},
		{"amex 3-digit cvc", Input{Number: "378282246310005", ExpMonth: 12, ExpYear: 2030, CVC: "123"}, FieldCVC, CodeCVCInvalid},
		{"visa 4-digit cvc", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, CVC: "1234"}, FieldCVC, CodeCVCInvalid},
		{"cvc letters", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, CVC: "12a"}, FieldCVC, CodeCVCInvalid},
		{"holder name ok", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, HolderName: "Zoë Ångström"}, "", ""},
		{"holder name too long", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, HolderName: strings.Repeat("a", 101)}, FieldHolderName, CodeHolderNameInvalid},
		{"holder name control char", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, HolderName: "a\nb"}, FieldHolderName, CodeHolderNameInvalid},
		{"holder name bad utf8", Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, HolderName: "\xff"}, FieldHolderName, CodeHolderNameInvalid},
		{"expired card", Input{Number: "4242424242424242", ExpMonth: 1, ExpYear: 2020}, FieldExpYear, CodeCardExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in, now)
			if tt.code == "" {
				require.NoError(t, err, "unexpected error")
				// Not assert.Equal: its failure message would print the CVC.
				require.True(t, string(c.CVC.RevealDigits()) == tt.in.CVC, "cvc mismatch")
				return
			}
			var ae *apierr.Error
			require.ErrorAs(t, err, &ae, "want a typed error")
			assert.Equal(t, tt.code, ae.Code, "code")
			assert.Equal(t, tt.field, ae.Field, "field")
			assert.Equal(t, apierr.KindInvalidArgument, ae.Kind, "kind")
		})
	}
}

// TestMaskedEverywhere prints a card through every printer a developer might
// reach for and fails if the digits or CVC ever appear.
func TestMaskedEverywhere(t *testing.T) {
	const number, cvc = "4242424242424242", "987"
	c, err := Parse(Input{Number: number, ExpMonth: 12, ExpYear: 2030, CVC: cvc, HolderName: "Ada Lovelace"}, now)
	require.NoError(t, err)
	type wrapper struct {
		Exported   Card
		unexported PAN
		cvc        CVC
	}
	w := wrapper{Exported: c, unexported: c.Number, cvc: c.CVC}
	var logBuf bytes.Buffer
	// Timestamps are dropped: their digits could contain the CVC by chance.
	noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	logger := slog.New(slog.NewJSONHandler(&logBuf, noTime))
	logger.Info("card", "card", c, "pan", c.Number, "cvc", c.CVC, "w", w)
	slog.New(slog.NewTextHandler(&logBuf, noTime)).Info("card", "card", c, "pan", c.Number, "w", w)
	js, _ := json.Marshal(w)
	jsCard, _ := json.Marshal(c)
	outputs := map[string]string{
		"%v card":     fmt.Sprintf("%v", c),
		"%+v card":    fmt.Sprintf("%+v", c),
		"%#v card":    fmt.Sprintf("%#v", c),
		"%s pan":      fmt.Sprintf("%s", c.Number),
		"%d pan":      fmt.Sprintf("%d", c.Number),
		"%x pan":      fmt.Sprintf("%x", c.Number),
		"%q pan":      fmt.Sprintf("%q", c.Number),
		"%#v pan":     fmt.Sprintf("%#v", c.Number),
		"%v wrapper":  fmt.Sprintf("%v", w),
		"%+v wrapper": fmt.Sprintf("%+v", w),
		"%#v wrapper": fmt.Sprintf("%#v", w),
		"%v cvc":      fmt.Sprintf("%v", c.CVC),
		"json":        string(js),
		"json card":   string(jsCard),
		"slog":        logBuf.String(),
		"error":       fmt.Errorf("tokenize %v: %w", c, errors.New("boom")).Error(),
	}
	pointers := regexp.MustCompile(`0x[0-9a-f]+`) // addresses print digits that could contain the CVC
	for name, out := range outputs {
		out = pointers.ReplaceAllString(out, "0xPTR")
		leaks := strings.Contains(out, number) || strings.Contains(out, "4242 4242") || strings.Contains(out, "Ada Lovelace")
		assert.False(t, leaks, "%s leaks card data: %s", name, out)
		assert.False(t, strings.Contains(out, cvc), "%s leaks the CVC: %s", name, out)
		// hex-encoded digits must not appear either
		assert.False(t, strings.Contains(out, fmt.Sprintf("%x", number)), "%s leaks hex digits: %s", name, out)
	}
	require.Equal(t, "424242******4242", c.Number.Masked(), "masked")
}

func TestMaskShortPAN(t *testing.T) {
	p, err := NewPANFromDigits([]byte("500000000000"))
	require.NoError(t, err)
	require.Equal(t, "5000****0000", p.Masked(), "masked")
	assert.Equal(t, "5000", p.BIN(), "bin")
	assert.Equal(t, "0000", p.Last4(), "last4")
}

func TestWipe(t *testing.T) {
	p, err := ParseNumber("4242424242424242")
	require.NoError(t, err)
	buf := p.RevealDigits()
	full := buf[:cap(buf)]
	p.Wipe()
	require.True(t, p.IsZero(), "PAN not empty after Wipe")
	// Not assert.Equal on the bytes: a failure would print the digits left.
	for _, b := range full[:16] {
		require.Zero(t, b, "buffer not zeroed")
	}
}

// FuzzParseNumber checks that ParseNumber never panics, that accepted numbers
// are Luhn-valid digit strings equal to the input minus separators, and that
// errors never echo the input.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"4242424242424242", "4242 4242 4242 4242", "378282246310005", "4111111111111112", "", "abc", "６０１１", "2223-0031-2200-3222"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParseNumber(raw)
		if err != nil {
			var ae *apierr.Error
			require.ErrorAs(t, err, &ae, "untyped error")
			require.Equal(t, FieldNumber, ae.Field, "untyped error %v", err)
			if len(raw) >= 6 {
				require.False(t, strings.Contains(ae.Message, raw), "error echoes input")
			}
			return
		}
		d := p.RevealDigits()
		want := strings.NewReplacer(" ", "", "-", "").Replace(raw)
		// Lengths and booleans only: a failure must not print the digits.
		require.True(t, string(d) == want, "round trip: got %d digits, want %d", len(d), len(want))
		valid := luhnValid(d) && len(d) >= MinLength && len(d) <= MaxLength && p.Brand() != ""
		require.True(t, valid, "accepted an invalid number")
		require.False(t, strings.Contains(p.String(), string(d)), "String leaks")
	})
}

func FuzzParse(f *testing.F) {
	f.Add("4242424242424242", 12, 2030, "123", "Ada")
	f.Add("378282246310005", 1, 2027, "1234", "")
	f.Fuzz(func(t *testing.T, number string, month, year int, cvc, holder string) {
		c, err := Parse(Input{Number: number, ExpMonth: month, ExpYear: year, CVC: cvc, HolderName: holder}, now)
		if err != nil {
			var ae *apierr.Error
			require.ErrorAs(t, err, &ae, "untyped error")
			require.NotEmpty(t, ae.Field, "untyped error %v", err)
			require.Equal(t, apierr.KindInvalidArgument, ae.Kind, "untyped error %v", err)
			return
		}
		require.NoError(t, ValidateExpiry(c.ExpMonth, c.ExpYear, now), "accepted expired card")
	})
}

func ExamplePAN_String() {
	pan, _ := ParseNumber("4242 4242 4242 4242")
	defer pan.Wipe()
	fmt.Println(pan, pan.Brand(), pan.BIN(), pan.Last4())
	// Output: 424242******4242 visa 424242 4242
}
