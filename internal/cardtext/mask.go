package cardtext

import (
	"strings"
	"unicode/utf8"
)

// Mask masks, in a log line or a span, every run of 12 or more ASCII digits whose
// groups are joined by up to three characters that are neither letters,
// digits nor ':' ("4242 4242…", "4242.4242…", "[4242/4242…]", "4242 - 4242")
// with "[digits]"; a ':' ends a run, so an address's port stays apart from
// it. A line that still looks like it holds a card number after that
// (Contains: other scripts, escapes, colon groups) is withheld
// whole.
func Mask(s string) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		if !isASCIIDigit(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j, n, end := i, 0, i
		for j < len(s) {
			if isASCIIDigit(s[j]) {
				n++
				j++
				end = j
				continue
			}
			k := j
			for k < len(s) && k-j < 3 && isJoiner(s[k]) {
				k++
			}
			if k > j && k < len(s) && isASCIIDigit(s[k]) {
				j = k
				continue
			}
			break
		}
		if n >= 12 {
			b.WriteString("[digits]")
		} else {
			b.WriteString(s[i:end])
		}
		i = end
	}
	out := b.String()
	if Contains(out) {
		return "[withheld: the line looks like it holds a card number]"
	}
	return out
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// isJoiner: a byte that may join two digit groups of one number.
func isJoiner(c byte) bool {
	return c != ':' && c < utf8.RuneSelf && !isASCIIDigit(c) && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z')
}
