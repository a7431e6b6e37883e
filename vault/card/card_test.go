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
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				var ae *apierr.Error
				if !errors.As(err, &ae) || ae.Field != FieldNumber {
					t.Fatalf("error does not name field %s: %#v", FieldNumber, err)
				}
				if tt.raw != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.raw)) {
					t.Fatalf("error echoes the input")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if pan.Brand() != tt.wantBrand {
				t.Fatalf("brand = %q, want %q", pan.Brand(), tt.wantBrand)
			}
			want := strings.NewReplacer(" ", "", "-", "").Replace(tt.raw)
			if got := string(pan.RevealDigits()); got != want {
				t.Fatalf("digits mismatch")
			}
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
			if err := ValidateExpiry(tt.month, tt.year, now); !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
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
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got := string(c.CVC.RevealDigits()); got != tt.in.CVC {
					t.Fatalf("cvc mismatch")
				}
				return
			}
			var ae *apierr.Error
			if !errors.As(err, &ae) {
				t.Fatalf("want typed error, got %v", err)
			}
			if ae.Code != tt.code || ae.Field != tt.field || ae.Kind != apierr.KindInvalidArgument {
				t.Fatalf("got code=%s field=%s kind=%d, want code=%s field=%s", ae.Code, ae.Field, ae.Kind, tt.code, tt.field)
			}
		})
	}
}

// TestMaskedEverywhere prints a card through every printer a developer might
// reach for and fails if the digits or CVC ever appear.
func TestMaskedEverywhere(t *testing.T) {
	const number, cvc = "4242424242424242", "987"
	c, err := Parse(Input{Number: number, ExpMonth: 12, ExpYear: 2030, CVC: cvc, HolderName: "Ada Lovelace"}, now)
	if err != nil {
		t.Fatal(err)
	}
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
		if strings.Contains(out, number) || strings.Contains(out, "4242 4242") || strings.Contains(out, "Ada Lovelace") {
			t.Errorf("%s leaks card data: %s", name, out)
		}
		if strings.Contains(out, cvc) {
			t.Errorf("%s leaks the CVC: %s", name, out)
		}
		// hex-encoded digits must not appear either
		if strings.Contains(out, fmt.Sprintf("%x", number)) {
			t.Errorf("%s leaks hex digits: %s", name, out)
		}
	}
	if got := c.Number.Masked(); got != "424242******4242" {
		t.Fatalf("masked = %q", got)
	}
}

func TestMaskShortPAN(t *testing.T) {
	p, err := NewPANFromDigits([]byte("500000000000"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Masked(); got != "5000****0000" {
		t.Fatalf("masked = %q", got)
	}
	if p.BIN() != "5000" || p.Last4() != "0000" {
		t.Fatalf("bin/last4 = %s/%s", p.BIN(), p.Last4())
	}
}

func TestWipe(t *testing.T) {
	p, err := ParseNumber("4242424242424242")
	if err != nil {
		t.Fatal(err)
	}
	buf := p.RevealDigits()
	full := buf[:cap(buf)]
	p.Wipe()
	if !p.IsZero() {
		t.Fatal("PAN not empty after Wipe")
	}
	for _, b := range full[:16] {
		if b != 0 {
			t.Fatal("buffer not zeroed")
		}
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
			if !errors.As(err, &ae) || ae.Field != FieldNumber {
				t.Fatalf("untyped error %v", err)
			}
			if len(raw) >= 6 && strings.Contains(ae.Message, raw) {
				t.Fatalf("error echoes input")
			}
			return
		}
		d := p.RevealDigits()
		if want := strings.NewReplacer(" ", "", "-", "").Replace(raw); string(d) != want {
			t.Fatalf("round trip: got %d digits, want %d", len(d), len(want))
		}
		if !luhnValid(d) || len(d) < MinLength || len(d) > MaxLength || p.Brand() == "" {
			t.Fatalf("accepted an invalid number")
		}
		if strings.Contains(p.String(), string(d)) {
			t.Fatalf("String leaks")
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add("4242424242424242", 12, 2030, "123", "Ada")
	f.Add("378282246310005", 1, 2027, "1234", "")
	f.Fuzz(func(t *testing.T, number string, month, year int, cvc, holder string) {
		c, err := Parse(Input{Number: number, ExpMonth: month, ExpYear: year, CVC: cvc, HolderName: holder}, now)
		if err != nil {
			var ae *apierr.Error
			if !errors.As(err, &ae) || ae.Field == "" || ae.Kind != apierr.KindInvalidArgument {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if ValidateExpiry(c.ExpMonth, c.ExpYear, now) != nil {
			t.Fatal("accepted expired card")
		}
	})
}

func ExamplePAN_String() {
	pan, _ := ParseNumber("4242 4242 4242 4242")
	defer pan.Wipe()
	fmt.Println(pan, pan.Brand(), pan.BIN(), pan.Last4())
	// Output: 424242******4242 visa 424242 4242
}
