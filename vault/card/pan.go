// Package card owns cardholder data inside the PCI zone: the PAN type, which
// never prints its digits, and validation of number, expiry, CVC and holder
// name. This package SEES PANs; only vault/... and the egress part of proxy/...
// may import it (a test in internal/boundary enforces this).
package card

import (
	"fmt"
	"log/slog"
	"strings"
)

// PAN is a primary account number. Its digits are behind a pointer in an
// unexported field, so that fmt, encoding/json, slog and %#v print only the
// masked form, even when a PAN is nested inside another struct. The only way
// to the plaintext is RevealDigits, which a reviewer can grep for.
type PAN struct {
	p *panData
}

type panData struct {
	digits []byte // ASCII '0'..'9'
	brand  Brand
}

// NewPANFromDigits builds a PAN from already-validated ASCII digits, taking
// ownership of b. It is used when decrypting a stored card; untrusted input
// goes through ParseNumber instead.
func NewPANFromDigits(b []byte) (PAN, error) {
	if len(b) < MinLength || len(b) > MaxLength {
		return PAN{}, ErrNumberLength
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return PAN{}, ErrNumberCharacters
		}
	}
	return PAN{p: &panData{digits: b, brand: detectBrand(b)}}, nil
}

// IsZero reports whether the PAN is empty.
func (p PAN) IsZero() bool { return p.p == nil || len(p.p.digits) == 0 }

// Len is the number of digits.
func (p PAN) Len() int {
	if p.p == nil {
		return 0
	}
	return len(p.p.digits)
}

// Brand is the detected card brand.
func (p PAN) Brand() Brand {
	if p.p == nil {
		return ""
	}
	return p.p.brand
}

// RevealDigits returns the plaintext digits. The slice aliases the PAN's own
// buffer: do not retain or modify it, and call Wipe when done with the PAN.
// Every call site is part of the PCI review surface.
func (p PAN) RevealDigits() []byte {
	if p.p == nil {
		return nil
	}
	return p.p.digits
}

// Wipe overwrites the digits in memory. The PAN is empty afterwards.
func (p PAN) Wipe() {
	if p.p == nil {
		return
	}
	clear(p.p.digits)
	p.p.digits = p.p.digits[:0]
}

// visible returns how many leading and trailing digits may be shown. PCI DSS
// allows at most the first six and last four; for PANs shorter than 15 digits
// Obol shows fewer leading digits so that at least four stay hidden.
func visible(n int) (lead, trail int) {
	switch {
	case n >= 15:
		return 6, 4
	case n >= 12:
		return 4, 4
	default:
		return 0, 0
	}
}

// BIN is the leading digits that may be shown (6, or 4 for short PANs).
func (p PAN) BIN() string {
	if p.IsZero() {
		return ""
	}
	lead, _ := visible(len(p.p.digits))
	return string(p.p.digits[:lead])
}

// Last4 is the trailing four digits.
func (p PAN) Last4() string {
	if p.IsZero() {
		return ""
	}
	_, trail := visible(len(p.p.digits))
	return string(p.p.digits[len(p.p.digits)-trail:])
}

// Masked is the display form, e.g. 424242******4242.
func (p PAN) Masked() string {
	if p.IsZero() {
		return ""
	}
	n := len(p.p.digits)
	lead, trail := visible(n)
	return p.BIN() + strings.Repeat("*", n-lead-trail) + p.Last4()
}

// String prints the masked form.
func (p PAN) String() string { return p.Masked() }

// GoString prints the masked form for %#v.
func (p PAN) GoString() string { return fmt.Sprintf("card.PAN(%q)", p.Masked()) }

// Format prints the masked form for every verb.
func (p PAN) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(p.GoString()))
		return
	}
	_, _ = f.Write([]byte(p.Masked()))
}

// LogValue makes slog print the masked form.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }

// MarshalJSON encodes the masked form; there is deliberately no UnmarshalJSON.
func (p PAN) MarshalJSON() ([]byte, error) {
	return []byte(`"` + p.Masked() + `"`), nil
}

// MarshalText encodes the masked form (used by some encoders and log sinks).
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.Masked()), nil }

// CVC is a card verification code. Like PAN it never prints its digits.
type CVC struct {
	p *cvcData
}

type cvcData struct{ digits []byte }

// NewCVCFromDigits takes ownership of already-validated digits.
func NewCVCFromDigits(b []byte) CVC {
	if len(b) == 0 {
		return CVC{}
	}
	return CVC{p: &cvcData{digits: b}}
}

// IsZero reports whether no CVC is held.
func (c CVC) IsZero() bool { return c.p == nil || len(c.p.digits) == 0 }

// RevealDigits returns the plaintext digits (aliasing; see PAN.RevealDigits).
func (c CVC) RevealDigits() []byte {
	if c.p == nil {
		return nil
	}
	return c.p.digits
}

// Wipe overwrites the digits.
func (c CVC) Wipe() {
	if c.p == nil {
		return
	}
	clear(c.p.digits)
	c.p.digits = c.p.digits[:0]
}

func (c CVC) masked() string {
	if c.IsZero() {
		return ""
	}
	return "***"
}

func (c CVC) String() string               { return c.masked() }
func (c CVC) GoString() string             { return `card.CVC("***")` }
func (c CVC) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(c.masked())) }
func (c CVC) LogValue() slog.Value         { return slog.StringValue(c.masked()) }
func (c CVC) MarshalJSON() ([]byte, error) { return []byte(`"` + c.masked() + `"`), nil }
func (c CVC) MarshalText() ([]byte, error) { return []byte(c.masked()), nil }
