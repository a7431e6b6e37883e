package panscan

import (
	"unicode"
	"unicode/utf8"
)

// unit is one character of text as a reader of it would see it: a plain
// byte, a UTF-8 sequence, or one escape (\uXXXX, \xHH, %HH, %uXXXX, &#NN;,
// &#xHH;). w is how many bytes of the text it spans.
type unit struct {
	r       rune
	w       int
	escaped bool
}

// ignorable is a NUL byte: the padding of UTF-16 and UTF-32 text, skipped
// so that "4\x002\x00" reads as "42".
const ignorable rune = -2

// decodeAt decodes the unit at b[i]. An escape is taken only when what it
// decodes to matters to a scanner (a digit or a separator); otherwise its
// first byte stands for itself, so that "%4242…" still reads as a "%"
// followed by digits.
func decodeAt(b []byte, i int, sep func(rune) bool) unit {
	if c := b[i]; c != 0 && c < utf8.RuneSelf && c != '\\' && c != '%' && c != '&' {
		return unit{r: rune(c), w: 1} // the common case: a plain ASCII byte
	}
	u := rawAt(b, i)
	if zeroWidth(u.r) {
		// Invisible: "7\u200b38" reads as 738 (and is masked as such).
		u.r = ignorable
		return u
	}
	if u.escaped && digitValue(u.r) < 0 && !sep(u.r) {
		return unit{r: rune(b[i]), w: 1}
	}
	return u
}

func rawAt(b []byte, i int) unit {
	c := b[i]
	switch {
	case c == 0:
		return unit{r: ignorable, w: 1}
	case c == '\\' && i+1 < len(b):
		switch b[i+1] {
		case 'u', 'U':
			if r, ok := hexAt(b, i+2, 4); ok {
				return unit{r: r, w: 6, escaped: true}
			}
		case 'x', 'X':
			if r, ok := hexAt(b, i+2, 2); ok {
				return unit{r: r, w: 4, escaped: true}
			}
		}
	case c == '%' && i+1 < len(b):
		if b[i+1] == 'u' || b[i+1] == 'U' {
			if r, ok := hexAt(b, i+2, 4); ok {
				return unit{r: r, w: 6, escaped: true}
			}
		}
		if r, ok := hexAt(b, i+1, 2); ok {
			return unit{r: r, w: 3, escaped: true}
		}
	case c == '&' && i+3 < len(b) && b[i+1] == '#':
		return entityAt(b, i)
	case c >= utf8.RuneSelf:
		r, w := utf8.DecodeRune(b[i:])
		return unit{r: r, w: w}
	}
	return unit{r: rune(c), w: 1}
}

// entityAt decodes an HTML/XML numeric character reference (&#52; or
// &#x34;) at b[i], or returns the '&' alone.
func entityAt(b []byte, i int) unit {
	j, base := i+2, rune(10)
	if b[j] == 'x' || b[j] == 'X' {
		j, base = j+1, 16
	}
	var r rune
	k := j
	for ; k < len(b) && k-j < 7; k++ {
		d := hexValue(b[k])
		if d < 0 || d >= base {
			break
		}
		r = r*base + d
	}
	if k == j || k >= len(b) || b[k] != ';' {
		return unit{r: '&', w: 1}
	}
	return unit{r: r, w: k + 1 - i, escaped: true}
}

func hexAt(b []byte, i, n int) (rune, bool) {
	if i+n > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+n] {
		d := hexValue(c)
		if d < 0 {
			return 0, false
		}
		r = r<<4 | d
	}
	return r, true
}

func hexValue(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

// digitValue is the value of a decimal digit in any script (ASCII,
// fullwidth, Arabic-Indic, …), or -1.
func digitValue(r rune) int {
	if r >= '0' && r <= '9' {
		return int(r - '0')
	}
	if r < utf8.RuneSelf || !unicode.IsDigit(r) {
		return -1
	}
	// Unicode lays decimal digits out in runs of ten, each starting at its
	// zero; the Nd ranges start at a zero.
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// zeroWidth are characters a reader does not see: zero-width space,
// non-joiner, joiner, word joiner, BOM (zero-width no-break space) and the
// soft hyphen. They are skipped like NUL padding.
func zeroWidth(r rune) bool {
	switch r {
	case 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD:
		return true
	}
	return false
}

// mask overwrites a unit with '*' (NUL padding stays, so UTF-16 text stays
// UTF-16); the length of b never changes.
func mask(b []byte, at, w int) {
	for p := at; p < at+w; p++ {
		if b[p] != 0 {
			b[p] = '*'
		}
	}
}

// luhnSep separates the groups of a card number that nothing revealed
// (single spaces or dashes, as printed on receipts).
func luhnSep(r rune) bool { return r == ' ' || r == '-' }

// knownSep separates the groups of a revealed card number: anything a
// formatter might put between digits.
func knownSep(r rune) bool {
	switch r {
	case ' ', '\t', '-', '.', '_', '+', '/', ',', 0xA0, 0x2007, 0x2009, 0x202F:
		return true
	}
	return false
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || digitValue(r) >= 0 || r >= utf8.RuneSelf && unicode.IsLetter(r)
}
