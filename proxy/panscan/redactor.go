package panscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unicode"
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
//   - nested under such a key: the value of any key of the object, or an
//     element of the array, that is that key's value ({"cvc_check":{"value":123}},
//     "cvv":[123]); a key names a security code also when its letters hold
//     securitycode, cardcode, verificationcode or cardverification
//     (security_code_echo), or one of its words (split at punctuation and
//     camelCase) is cvc, cvv, cvn, csc, cvd or cav2, maybe with one more
//     character (cvc_check, cvcResult, cvv2);
//   - a one-element array [123], and a value at the very start of the text
//     followed by its end or a delimiter ("123 M");
//   - a whole header value (RedactHeader), and anywhere it stands alone in
//     a header whose name names a security code (RedactHeaderValue:
//     X-Cvc-Result: cvc 123);
//   - inside a literal (AddLiteral): the exact text a request sent with the
//     CVC in it (a route's template, "12/2031 123"), masked whole.
//
// Zero-width characters (U+200B-U+200D, U+2060, U+FEFF, the soft hyphen)
// are skipped, as NUL padding is, in CVCs and card numbers alike.
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
			clear(b)
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
	return r.RedactHeaderValue(nil, b)
}

// RedactHeaderValue masks a header's value b: as RedactHeader, and, when
// the header's name names a security code (X-Cvc-Result), the CVC
// wherever it stands alone in the value ("cvc 123").
func (r *Redactor) RedactHeaderValue(name, b []byte) int {
	n := r.Redact(b)
	if len(name) > 0 && namesCVC(string(name)) {
		for _, c := range r.cvcs {
			n += redactCVCRuns(b, c, true)
		}
	}
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
func redactCVC(b []byte, c []byte) int { return redactCVCRuns(b, c, false) }

// redactCVCRuns masks the CVC c where it is a whole value, or, with any,
// wherever it stands alone (no letter or digit next to it).
func redactCVCRuns(b []byte, c []byte, any bool) int {
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
		if bytes.Equal(digits, c) && !isAlnum(next) && (any && !isAlnum(lastRune(hist)) || wholeValue(hist, next)) {
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

func lastRune(h []rune) rune {
	if len(h) == 0 {
		return -1
	}
	return h[len(h)-1]
}

// delimiters end a whole form, query or cookie value (and a value at the
// start of a text).
const delimiters = "&;,#| \t\r\n\"'<}])"

// wholeValue decides, from the text before a digit run and the character
// after it, whether the run is a whole value (see Redactor).
func wholeValue(hist []rune, next rune) bool {
	prev := lastRune(hist)
	if isAlnum(prev) {
		return false
	}
	if (prev == '"' || prev == '\'') && next == prev || prev == '[' && next == ']' {
		return true
	}
	if (prev == '=' || prev == -1) && (next == -1 || strings.ContainsRune(delimiters, next)) {
		return true
	}
	// The key before (skipping quotes and spaces, then one of : = >), or,
	// when that key does not name a security code, the key of the object
	// or array the value is in: {"cvc_check":{"value":123}}, "cvc":[123].
	i := len(hist) - 1
	for level := 0; level < 3 && i >= 0; level++ {
		for i >= 0 && strings.ContainsRune("\"' \t\r\n", hist[i]) {
			i--
		}
		if i >= 0 && (hist[i] == '[' || hist[i] == '{') {
			i-- // an array's first element: the array's key
		} else {
			if i < 0 || !strings.ContainsRune(":=>", hist[i]) {
				return false
			}
			i--
			key, start := keyBefore(hist, i)
			if namesCVC(key) {
				return true
			}
			// Back to the opener of the object or array holding this key.
			depth := 0
			for i = start; i >= 0; i-- {
				switch hist[i] {
				case '}', ']':
					depth++
				case '{', '[':
					depth--
				}
				if depth < 0 {
					break
				}
			}
			if i < 0 {
				return false
			}
			i--
		}
		for i >= 0 && strings.ContainsRune(" \t\r\n", hist[i]) {
			i--
		}
		if i < 0 || !strings.ContainsRune(":=>", hist[i]) {
			return false
		}
		i--
		key, start := keyBefore(hist, i)
		if namesCVC(key) {
			return true
		}
		i = start
	}
	return false
}

// keyBefore reads the key that ends at hist[i] (quotes and spaces
// skipped): its text, and the index before it.
func keyBefore(hist []rune, i int) (string, int) {
	for i >= 0 && strings.ContainsRune("\"' \t", hist[i]) {
		i--
	}
	end := i
	for ; i >= 0 && end-i < 40; i-- {
		if r := hist[i]; !isAlnum(r) && !strings.ContainsRune("_-[].", r) {
			break
		}
	}
	return string(hist[i+1 : end+1]), i
}

// namesCVC reports whether a key or header name names a security code:
// its letters and digits end with one of cvcKeys, or hold one of the long
// ones (security_code_echo), or one of its words (split at _ - . [ ] and
// lower-to-upper case changes) starts with a short one (cvc_check,
// cvcResult).
func namesCVC(key string) bool {
	var words []string
	var collapsed, w strings.Builder
	var prev rune
	for _, r := range key {
		if !isAlnum(r) {
			words, prev = append(words, strings.ToLower(w.String())), 0
			w.Reset()
			continue
		}
		if prev != 0 && unicode.IsLower(prev) && unicode.IsUpper(r) {
			words = append(words, strings.ToLower(w.String()))
			w.Reset()
		}
		w.WriteRune(r)
		collapsed.WriteRune(unicode.ToLower(r))
		prev = r
	}
	words = append(words, strings.ToLower(w.String()))
	name := collapsed.String()
	for _, k := range cvcKeys {
		if strings.HasSuffix(name, k) {
			return true
		}
	}
	for _, k := range []string{"securitycode", "cardcode", "verificationcode", "cardverification"} {
		if strings.Contains(name, k) {
			return true
		}
	}
	for _, w := range words {
		for _, k := range []string{"cvc", "cvv", "cvn", "csc", "cvd", "cav2", "cid"} {
			if w == k || k != "cid" && strings.HasPrefix(w, k) && len(w) <= len(k)+1 {
				return true
			}
		}
	}
	return false
}
