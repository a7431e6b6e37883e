package panscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Redactor masks the card data one request revealed (its card numbers and
// CVCs) in the answer to that request, in every form it recognises, and
// what looks like any other card number (see Redact).
//
// A revealed card number is masked, all but its last four digits, wherever
// it appears: glued to other digits, grouped by up to three separators
// between any two digits (space, tab, - . _ + / , and the Unicode spaces
// used in numbers), its digits written in any script or escaped (\u0034,
// \x34, %34, %u0034, &#52;, &#x34;) or padded with NULs (UTF-16, UTF-32),
// and as the hex or base64 (standard or URL alphabet, at any alignment)
// of its digits, which is masked whole.
//
// A revealed CVC is short, so it is masked (every digit) only where it is
// a whole value: a standalone run of its digits (no letter or digit next
// to it), decoded as above, that is
//   - a whole quoted string: "123" or '123';
//   - a whole form, query or cookie value: =123 followed by the end, & ; , # | a
//     space, a quote, < } ] or );
//   - the value of a key that names a security code (the key's letters and
//     digits end with cvc, cvv, cvn, csc, cid, cvd, cvc2, cvv2, cvn2, cav2,
//     securitycode, cardcode or verificationcode, before a : = or >): "cvc": 123,
//     <cvv>123</cvv>, card[cvc]=123, cvc: 123;
//   - a whole header value (RedactHeader);
//   - inside a literal (AddLiteral): the exact text a request sent with the
//     CVC in it (a route's template, "12/2031 123"), masked whole.
//
// Elsewhere (an amount of 123, a year equal to a four-digit CVC, 123 inside
// a longer number) it stays. The base64 of a CVC is not looked for (four
// characters would match by chance).
type Redactor struct {
	numbers [][]byte
	cvcs    [][]byte
	forms   [][]byte // hex and base64 forms of the numbers
	literal [][]byte // rendered text holding a CVC
}

// minLiteral is the shortest literal masked: shorter ones ("123", "\"123\"")
// are the CVC alone, which the whole-value rules cover.
const minLiteral = 8

// AddLiteral registers text the request sent that holds card data (a
// rendered template with the CVC in it): wherever it appears, as is, it
// is masked whole. Text shorter than 8 bytes is ignored. It copies v.
func (r *Redactor) AddLiteral(v []byte) {
	if len(v) >= minLiteral && !containsForm(r.literal, v) {
		r.literal = append(r.literal, bytes.Clone(v))
	}
}

// NewRedactor returns a redactor for the revealed numbers (digits; those
// shorter than 13 digits are ignored) and CVCs (3 or 4 digits; others are
// ignored). It copies them; Wipe zeroes its copies.
func NewRedactor(numbers, cvcs [][]byte) *Redactor {
	r := &Redactor{}
	for _, k := range numbers {
		if len(k) < 13 || !allDigits(k) {
			continue
		}
		k = bytes.Clone(k)
		r.numbers = append(r.numbers, k)
		r.forms = append(r.forms, []byte(hex.EncodeToString(k)), bytes.ToUpper([]byte(hex.EncodeToString(k))))
		for _, s := range []int{0, 1, 2} {
			part := k[s:]
			part = part[:len(part)/3*3]
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				f := []byte(enc.EncodeToString(part))
				if !containsForm(r.forms, f) {
					r.forms = append(r.forms, f)
				}
			}
		}
	}
	for _, c := range cvcs {
		if (len(c) == 3 || len(c) == 4) && allDigits(c) {
			r.cvcs = append(r.cvcs, bytes.Clone(c))
		}
	}
	return r
}

func containsForm(forms [][]byte, f []byte) bool {
	for _, g := range forms {
		if bytes.Equal(g, f) {
			return true
		}
	}
	return false
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Wipe zeroes the redactor's copies of the revealed values.
func (r *Redactor) Wipe() {
	for _, s := range [][][]byte{r.numbers, r.cvcs, r.forms, r.literal} {
		for _, b := range s {
			for i := range b {
				b[i] = 0
			}
		}
	}
}

// Redact masks b in place (its length never changes) and returns how many
// values it masked.
func (r *Redactor) Redact(b []byte) int {
	n := 0
	for _, f := range append(r.literal[:len(r.literal):len(r.literal)], r.forms...) {
		for off := 0; ; {
			i := bytes.Index(b[off:], f)
			if i < 0 {
				break
			}
			mask(b, off+i, len(f))
			n++
			off += i + len(f)
		}
	}
	for _, k := range r.numbers {
		n += redactNumber(b, k)
	}
	for _, c := range r.cvcs {
		n += redactCVC(b, c)
	}
	return n + redactLuhn(b)
}

// RedactHeader masks a header value (or name): as Redact, and a CVC that
// is the whole value (spaces aside).
func (r *Redactor) RedactHeader(b []byte) int {
	n := r.Redact(b)
	t := bytes.TrimSpace(b)
	for _, c := range r.cvcs {
		if digitsEqual(t, c) {
			mask(b, bytes.Index(b, t), len(t))
			n++
		}
	}
	return n
}

// digitsEqual reports whether t, decoded, is exactly the digits of c.
func digitsEqual(t, c []byte) bool {
	k := 0
	for i := 0; i < len(t); {
		u := decodeAt(t, i, knownSep)
		i += u.w
		if u.r == ignorable {
			continue
		}
		if k >= len(c) || digitValue(u.r) != int(c[k]-'0') {
			return false
		}
		k++
	}
	return k == len(c)
}

type pos struct{ at, w int }

// redactNumber masks every occurrence of the known number k.
func redactNumber(b []byte, k []byte) int {
	n := 0
	var got []pos
	for i := 0; i < len(b); i++ {
		if c := b[i]; c != k[0] && c != '\\' && c != '%' && c != '&' && c < 0x80 {
			continue
		}
		got = got[:0]
		if end, ok := matchNumber(b, i, k, &got); ok {
			for _, p := range got[:len(got)-4] {
				mask(b, p.at, p.w)
			}
			n++
			i = end - 1
		}
	}
	return n
}

// matchNumber matches k's digits from b[i], allowing up to three
// separators (and any NUL padding) between two digits.
func matchNumber(b []byte, i int, k []byte, got *[]pos) (int, bool) {
	j := i
	for m := 0; m < len(k); m++ {
		if m > 0 {
			seps := 0
			for j < len(b) {
				u := decodeAt(b, j, knownSep)
				if u.r == ignorable {
					j += u.w
					continue
				}
				if !knownSep(u.r) || seps == 3 {
					break
				}
				seps++
				j += u.w
			}
		}
		if j >= len(b) {
			return 0, false
		}
		u := decodeAt(b, j, knownSep)
		if m == 0 && u.r == ignorable {
			return 0, false
		}
		if digitValue(u.r) != int(k[m]-'0') {
			return 0, false
		}
		*got = append(*got, pos{j, u.w})
		j += u.w
	}
	return j, true
}

// cvcKeys end the name of a key whose value is a security code.
var cvcKeys = []string{"cvc", "cvv", "cvn", "csc", "cid", "cvd", "cvc2", "cvv2", "cvn2", "cav2", "securitycode", "cardcode", "verificationcode"}

// redactCVC masks the CVC c where it is a whole value (see Redactor).
func redactCVC(b []byte, c []byte) int {
	n := 0
	var hist []rune // the decoded text before the current unit (its tail)
	var run []pos
	var digits []byte
	for i := 0; i < len(b); {
		u := decodeAt(b, i, knownSep)
		if u.r == ignorable {
			i += u.w
			continue
		}
		if digitValue(u.r) < 0 {
			hist = appendHist(hist, u.r)
			i += u.w
			continue
		}
		run, digits = run[:0], digits[:0]
		j := i
		for j < len(b) {
			u := decodeAt(b, j, knownSep)
			if u.r == ignorable {
				j += u.w
				continue
			}
			d := digitValue(u.r)
			if d < 0 {
				break
			}
			run = append(run, pos{j, u.w})
			digits = append(digits, byte('0'+d))
			j += u.w
		}
		next := rune(-1) // the end of the text
		if j < len(b) {
			next = decodeAt(b, j, knownSep).r
		}
		if bytes.Equal(digits, c) && !isAlnum(next) && wholeValue(hist, next) {
			for _, p := range run {
				mask(b, p.at, p.w)
			}
			n++
		}
		for _, d := range digits {
			hist = appendHist(hist, rune(d))
		}
		i = j
	}
	return n
}

func appendHist(h []rune, r rune) []rune {
	if len(h) >= 128 {
		h = append(h[:0], h[len(h)-64:]...)
	}
	return append(h, r)
}

// wholeValue decides, from the text before a digit run and the character
// after it, whether the run is a whole value (see Redactor).
func wholeValue(hist []rune, next rune) bool {
	prev := rune(-1)
	if len(hist) > 0 {
		prev = hist[len(hist)-1]
	}
	if isAlnum(prev) {
		return false
	}
	if (prev == '"' || prev == '\'') && next == prev {
		return true
	}
	if prev == '=' && strings.ContainsRune("&;,#| \t\r\n\"'<}])", next) || prev == '=' && next == -1 {
		return true
	}
	// The key before: skip quotes and spaces, one of : = >, then the key.
	i := len(hist) - 1
	for i >= 0 && strings.ContainsRune("\"' \t", hist[i]) {
		i--
	}
	if i < 0 || !strings.ContainsRune(":=>", hist[i]) {
		return false
	}
	i--
	for i >= 0 && strings.ContainsRune("\"' \t", hist[i]) {
		i--
	}
	var key []rune
	for ; i >= 0 && len(key) < 40; i-- {
		r := hist[i]
		if isAlnum(r) {
			key = append(key, r)
			continue
		}
		if strings.ContainsRune("_-[].", r) {
			continue
		}
		break
	}
	// key is reversed and holds letters and digits only.
	var s strings.Builder
	for k := len(key) - 1; k >= 0; k-- {
		s.WriteRune(key[k])
	}
	name := strings.ToLower(s.String())
	for _, k := range cvcKeys {
		if strings.HasSuffix(name, k) {
			return true
		}
	}
	return false
}
