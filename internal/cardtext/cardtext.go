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

import "unicode"

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
func Contains(texts ...string) bool {
	var sc scanner
	for _, t := range texts {
		for _, r := range t {
			sc.rune(r)
		}
		sc.boundary()
	}
	sc.end()
	return sc.found
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
