// Package cardtext tells whether free text that Obol stores or logs
// (payment descriptions and metadata, refund reasons, Idempotency-Keys,
// ledger descriptions) looks like it carries a card number, so that the
// text is refused before it is stored.
//
// It is PAN-free in the boundary's sense: it answers yes or no, keeps
// nothing, and imports nothing from vault/ or proxy/, so services outside
// PCI scope (riskd, ledgerd) may use it. It is deliberately stricter than
// proxy/panscan (which masks upstream answers in place): it reads several
// texts as one stream, so a number split across metadata values is found,
// and it accepts any grouping separator, not only spaces and dashes.
package cardtext

import (
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// maxGap is the longest separator (in characters) between two digit groups
// of one number: "4242 - 4242" still groups, a sentence between two numbers
// does not.
const maxGap = 3

// Contains reports whether texts, read in order as one stream, hold what
// looks like a card number: 13 to 19 digits, starting with 2 to 6 (the card
// networks' ranges), passing the Luhn check, either unbroken or made of
// whole digit groups joined by one separator used throughout (any run of
// up to three characters that are neither letters nor digits:
// "4242.4242.4242.4242", "4242/4242/…", "4242 - 4242 - …"); a number may
// be preceded or followed by other groups ("qty 2 4242 4242 4242 4242").
// Where one text ends and the next begins counts as a separator that
// matches any grouping, so "4242 4242" followed by "4242 4242" is one
// number. A letter ends a number; an unbroken run of more than 19 digits
// is not a card number.
//
// Digits are read in any form a reader would take for one: every Unicode
// decimal digit ("٤", "४", fullwidth "４"), compatibility forms of digits
// (superscripts "⁴", circled "④", through their NFKD decomposition), and
// one level of escapes: percent-encoding ("%34", UTF-8 "%EF%BC%94"), HTML
// numeric character references ("&#52;", "&#x34;", the ";" optional) and
// "\u0034" / "\x34". A doubly escaped digit ("%2534") is not decoded.
func Contains(texts ...string) bool {
	var sc scanner
	for _, t := range texts {
		sc.text(t)
		sc.boundary()
	}
	sc.end()
	return sc.found
}

// ContainsMetadata reports whether a description and a metadata map,
// read as every stream a card number could be split across, hold one: the
// values in key order, the keys in order, keys and values interleaved
// (key, value, key, value in key order, so a number split between a key
// and its value, or a value and the next key, is found), and the
// description followed by the values and by the interleaved stream.
// description may be "".
func ContainsMetadata(description string, md map[string]string) bool {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vals := make([]string, len(keys))
	both := make([]string, 0, 1+2*len(keys))
	both = append(both, description)
	for i, k := range keys {
		vals[i] = md[k]
		both = append(both, k, md[k])
	}
	return Contains(keys...) || Contains(append([]string{description}, vals...)...) || Contains(both...)
}

// text feeds one text to the scanner, decoding escapes and digit forms.
func (s *scanner) text(t string) {
	for i := 0; i < len(t); {
		r, n := unescape(t[i:])
		if n == 0 {
			r, n = utf8.DecodeRuneInString(t[i:])
		}
		s.char(r)
		i += n
	}
}

// char normalises one character: an ASCII character as is, a decimal
// digit of any script as its value, a compatibility form of digits
// through its decomposition.
func (s *scanner) char(r rune) {
	if r < utf8.RuneSelf {
		s.rune(r)
		return
	}
	if unicode.IsDigit(r) {
		s.rune('0' + digitValue(r))
		return
	}
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], r)
	d := norm.NFKD.Properties(buf[:n]).Decomposition()
	if len(d) == 0 || !hasDigit(d) {
		s.rune(r)
		return
	}
	for len(d) > 0 {
		c, size := utf8.DecodeRune(d)
		d = d[size:]
		if c >= utf8.RuneSelf && unicode.IsDigit(c) {
			c = '0' + digitValue(c)
		}
		s.rune(c)
	}
}

func hasDigit(d []byte) bool {
	for _, c := range string(d) {
		if unicode.IsDigit(c) {
			return true
		}
	}
	return false
}

// digitValue is the value of a decimal digit (Unicode Nd). Unicode encodes
// every decimal digit set as a contiguous run from 0 to 9, so a digit's
// value is its distance from the start of its run of digits, modulo 10.
func digitValue(r rune) rune {
	k := rune(0)
	for k < 100 && unicode.IsDigit(r-k-1) {
		k++
	}
	return k % 10
}

// unescape decodes one escape at the start of t: %HH (a UTF-8 sequence of
// %HH escapes as one character), &#N; / &#xH; (";" optional), \uHHHH or
// \xHH. n is 0 when t does not start with one.
func unescape(t string) (r rune, n int) {
	switch {
	case len(t) >= 3 && t[0] == '%':
		b, ok := hexByte(t[1:3])
		if !ok {
			return 0, 0
		}
		if b < utf8.RuneSelf {
			return rune(b), 3
		}
		var buf [utf8.UTFMax]byte
		k := 0
		for k < len(buf) && len(t) >= 3*(k+1) && t[3*k] == '%' {
			c, ok := hexByte(t[3*k+1 : 3*k+3])
			if !ok {
				break
			}
			buf[k] = c
			k++
			if utf8.FullRune(buf[:k]) {
				break
			}
		}
		if c, size := utf8.DecodeRune(buf[:k]); c != utf8.RuneError && size == k {
			return c, 3 * k
		}
		return 0, 0
	case len(t) >= 3 && t[0] == '&' && t[1] == '#':
		i, base := 2, rune(10)
		if t[2] == 'x' || t[2] == 'X' {
			i, base = 3, 16
		}
		start := i
		v := rune(0)
		for i < len(t) && i-start < 8 {
			d, ok := hexDigit(t[i])
			if !ok || d >= base {
				break
			}
			v = v*base + d
			i++
		}
		if i == start || v > unicode.MaxRune {
			return 0, 0
		}
		if i < len(t) && t[i] == ';' {
			i++
		}
		return v, i
	case len(t) >= 6 && t[0] == '\\' && t[1] == 'u':
		hi, ok1 := hexByte(t[2:4])
		lo, ok2 := hexByte(t[4:6])
		if !ok1 || !ok2 {
			return 0, 0
		}
		return rune(hi)<<8 | rune(lo), 6
	case len(t) >= 4 && t[0] == '\\' && t[1] == 'x':
		b, ok := hexByte(t[2:4])
		if !ok || b >= utf8.RuneSelf {
			return 0, 0
		}
		return rune(b), 4
	}
	return 0, 0
}

func hexByte(h string) (byte, bool) {
	a, ok1 := hexDigit(h[0])
	b, ok2 := hexDigit(h[1])
	return byte(a<<4 | b), ok1 && ok2
}

func hexDigit(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// maxRun bounds the digits of one grouped run that are kept; a longer run
// is checked and restarted.
const maxRun = 64

// scanner follows one run of digit groups at a time. Its digits are kept
// in a fixed array, so nothing escapes to the heap, and are wiped as soon
// as the run ends.
type scanner struct {
	digits [maxRun]byte
	n      int
	starts [maxRun + 1]int // start index of each group, then n
	groups int
	sep    [maxGap]rune // the run's separator, once it has one (seps > 0)
	seps   int
	gap    [maxGap + 1]rune // separator characters since the last digit
	gaps   int
	long   bool // in a group of more than 19 digits: no card number spans it
	joined bool // a text boundary lies in the gap: any separator matches
	found  bool
}

func (s *scanner) rune(r rune) {
	switch {
	case r >= '0' && r <= '9':
		s.digit(byte(r - '0'))
	case unicode.IsLetter(r) || unicode.IsDigit(r): // a letter, or a digit of another script
		s.end()
	default:
		s.long = false // a long group ends at a separator
		if s.n == 0 || s.joined {
			return // around a text boundary, separators do not count
		}
		s.gap[s.gaps] = r
		s.gaps++
		if s.gaps > maxGap {
			s.end()
		}
	}
}

func (s *scanner) boundary() {
	s.long = false
	if s.n > 0 {
		s.joined = true
	}
}

func (s *scanner) digit(d byte) {
	if s.n == maxRun {
		s.shift()
	}
	switch {
	case s.long: // still in the long group
	case s.n == 0:
		s.long = false
		s.newGroup()
	case s.joined:
		s.newGroup()
	case s.gaps == 0: // same group
	case s.seps == 0:
		s.seps = copy(s.sep[:], s.gap[:s.gaps])
		s.newGroup()
	case s.sameSep():
		s.newGroup()
	default:
		// Another separator: the run ends here, and a new one starts with
		// its last group.
		s.keepLastGroup()
		s.seps = copy(s.sep[:], s.gap[:s.gaps])
		s.newGroup()
	}
	s.gaps, s.joined = 0, false
	if s.long {
		return
	}
	if s.n-s.starts[s.groups-1] == 19 {
		// This group is longer than any card number: check the groups
		// before it, and skip it.
		s.groups--
		s.n = s.starts[s.groups]
		s.end()
		s.long = true
		return
	}
	s.digits[s.n] = d
	s.n++
}

// keepLastGroup checks the run, then keeps only its last group.
func (s *scanner) keepLastGroup() {
	s.check()
	last := s.starts[s.groups-1]
	copy(s.digits[:], s.digits[last:s.n])
	s.n -= last
	clear(s.digits[s.n:])
	s.starts[0], s.groups = 0, 1
}

// shift checks the full run, then keeps only its trailing groups that may
// still be part of a card number with what follows (at most 19 digits).
func (s *scanner) shift() {
	s.check()
	i := 0
	for s.n-s.starts[i] > 19 {
		i++
	}
	base := s.starts[i]
	copy(s.digits[:], s.digits[base:s.n])
	clear(s.digits[s.n-base : s.n])
	for j := i; j < s.groups; j++ {
		s.starts[j-i] = s.starts[j] - base
	}
	s.groups -= i
	s.n -= base
}

func (s *scanner) newGroup() {
	s.starts[s.groups] = s.n
	s.groups++
}

// end checks the current run, then clears it.
func (s *scanner) end() {
	s.check()
	clear(s.digits[:])
	s.n, s.groups, s.seps, s.gaps, s.joined, s.long = 0, 0, 0, 0, false, false
}

// check looks at every span of whole groups in the current run.
func (s *scanner) check() {
	if s.n > 0 {
		s.starts[s.groups] = s.n
		for i := 0; i < s.groups && !s.found; i++ {
			for j := i + 1; j <= s.groups; j++ {
				a, b := s.starts[i], s.starts[j]
				if b-a > 19 {
					break
				}
				if b-a >= 13 && s.digits[a] >= 2 && s.digits[a] <= 6 && luhn(s.digits[a:b]) {
					s.found = true
					break
				}
			}
		}
	}
}

// sameSep reports whether the gap is the run's separator.
func (s *scanner) sameSep() bool {
	if s.seps != s.gaps {
		return false
	}
	for i := 0; i < s.gaps; i++ {
		if s.sep[i] != s.gap[i] {
			return false
		}
	}
	return true
}

func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}
