package panscan

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"io"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The backstop (Echoed) does not mask: it decides whether an answer, once
// masked, still spells a revealed card number in some way Redact did not
// recognise, so that the caller refuses the answer whole (fail closed).
//
// It reads the text as a digit stream: every character with a decimal
// digit value (any script; superscript, circled, fullwidth and other
// compatibility digits through NFKC) becomes its digit, everything else
// (separators of any kind, quotes, brackets, markup, NULs, zero-width
// characters) is dropped. A revealed number that appears in the stream is
// an echo. The streams read are those of
//   - the text as it is, and unescaped up to three times (\uXXXX,
//     \UXXXXXXXX, \xHH, octal \NNN, %HH, %uXXXX, &#N and &#xH with any
//     number of digits, with or without ";"; escaped bytes form UTF-8);
//   - the text read as UTF-16 (both byte orders, both alignments) and as
//     EBCDIC (digits 0xF0-0xF9);
//   - each run of base64 (standard or URL alphabet, any alignment) or hex
//     of 16 characters or more, decoded (and gunzipped when it is gzip),
//     read the same way, two levels deep.
//
// Thirteen to nineteen given digits appearing by chance in a stream of a
// million is about 1e-7 or less: an echo is not a coincidence.

const (
	unescapeLevels = 3
	blobDepth      = 2
	minBlob        = 16
	maxGunzip      = 1 << 20
)

// Echoed reports whether any revealed number can be read in the parts,
// taken in order as one text (so that a number split across two header
// values is read whole).
func (r *Redactor) Echoed(parts ...[]byte) bool {
	if len(r.numbers) == 0 {
		return false
	}
	text := bytes.Join(parts, nil)
	defer clear(text)
	return r.echoed(text, 0)
}

func (r *Redactor) echoed(text []byte, depth int) bool {
	if r.inStream(digitStream(text)) || r.inStream(ebcdicDigits(text)) {
		return true
	}
	for _, be := range []bool{false, true} {
		for off := 0; depth == 0 && off < 2 && off < len(text); off++ {
			if r.inStream(utf16Digits(text[off:], be)) {
				return true
			}
		}
	}
	// Unescaped levels: each decodes every escape of the one before.
	levels := [][]byte{text}
	defer func() {
		for _, l := range levels[1:] {
			clear(l)
		}
	}()
	for l := 0; l < unescapeLevels; l++ {
		next, changed := unescape(levels[len(levels)-1])
		if !changed {
			clear(next)
			break
		}
		levels = append(levels, next)
		if r.inStream(digitStream(next)) {
			return true
		}
	}
	if depth >= blobDepth {
		return false
	}
	for _, t := range levels {
		for _, blob := range blobs(t, depth) {
			if bytes.HasPrefix(blob, []byte{0x1f, 0x8b}) {
				if zr, err := gzip.NewReader(bytes.NewReader(blob)); err == nil {
					g, _ := io.ReadAll(io.LimitReader(zr, maxGunzip))
					clear(blob)
					blob = g
				}
			}
			hit := r.echoed(blob, depth+1)
			clear(blob)
			if hit {
				return true
			}
		}
	}
	return false
}

func (r *Redactor) inStream(s []byte) bool {
	defer clear(s)
	for _, k := range r.numbers {
		if bytes.Contains(s, k) {
			return true
		}
	}
	return false
}

// runeDigits appends the digits r stands for: its own decimal value, or
// those of its compatibility decomposition (⁴ ④ ⒋ ㉑ → 4, 4, 4, 21).
func runeDigits(s []byte, r rune) []byte {
	if r >= '0' && r <= '9' {
		return append(s, byte(r))
	}
	if r < 0x80 || r < 0x10000 && bmpDigit[r>>6]&(1<<(r&63)) == 0 {
		return s
	}
	if d := digitValue(r); d >= 0 {
		return append(s, byte('0'+d))
	}
	if ds, ok := compatDigits[r]; ok {
		return append(s, ds...)
	}
	return s
}

// bmpDigit is a bitmap of the BMP characters that stand for digits:
// decimal digits of any script, and compatDigits.
var bmpDigit = func() (m [0x10000 / 64]uint64) {
	for r := range compatDigits {
		if r < 0x10000 {
			m[r>>6] |= 1 << (r & 63)
		}
	}
	for _, rg := range unicode.Nd.R16 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			m[r>>6] |= 1 << (r & 63)
		}
	}
	return m
}()

// compatBlocks are the blocks holding characters whose NFKC form holds a
// digit (superscripts, fractions, number forms, enclosed and
// parenthesised numbers, CJK compatibility, digits with a comma).
var compatBlocks = [][2]rune{{0x00A0, 0x00FF}, {0x2070, 0x209F}, {0x2150, 0x218F}, {0x2460, 0x24FF}, {0x2776, 0x2793},
	{0x3200, 0x33FF}, {0xFF00, 0xFFEF}, {0x1F100, 0x1F1FF}}

// compatDigits maps each such character to the digits of its NFKC form.
var compatDigits = func() map[rune][]byte {
	m := map[rune][]byte{}
	for _, b := range compatBlocks {
		for r := b[0]; r <= b[1]; r++ {
			if digitValue(r) >= 0 {
				continue
			}
			var ds []byte
			for _, c := range norm.NFKC.String(string(r)) {
				if d := digitValue(c); d >= 0 {
					ds = append(ds, byte('0'+d))
				}
			}
			if len(ds) > 0 {
				m[r] = ds
			}
		}
	}
	return m
}()

// digitStream is the digits of UTF-8 text, everything else dropped.
func digitStream(b []byte) []byte {
	var s []byte
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c >= '0' && c <= '9' {
				s = append(s, c)
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		s = runeDigits(s, r)
		i += w
	}
	return s
}

func ebcdicDigits(b []byte) []byte {
	var s []byte
	for _, c := range b {
		if c >= 0xF0 && c <= 0xF9 {
			s = append(s, '0'+c-0xF0)
		}
	}
	return s
}

func utf16Digits(b []byte, bigEndian bool) []byte {
	var s []byte
	for i := 0; i+1 < len(b); i += 2 {
		u := rune(b[i+1])<<8 | rune(b[i])
		if bigEndian {
			u = rune(b[i])<<8 | rune(b[i+1])
		}
		// Surrogates (characters past the BMP) are not joined: the BMP
		// holds the digits a merchant would read.
		s = runeDigits(s, u)
	}
	return s
}

// unescape decodes one level of escapes, every one of them (not only
// those of digits); changed reports whether any was decoded.
func unescape(b []byte) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	changed := false
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' && c != '%' && c != '&' || i+1 >= len(b) {
			out = append(out, c)
			i++
			continue
		}
		r, raw, w := escapeAt(b, i)
		if w == 0 {
			out = append(out, c)
			i++
			continue
		}
		if raw {
			out = append(out, byte(r))
		} else {
			out = utf8.AppendRune(out, r)
		}
		changed = true
		i += w
	}
	return out, changed
}

// escapeAt decodes the escape at b[i]: a rune, or a raw byte (raw) that
// may be part of an escaped UTF-8 sequence; w is 0 when there is none.
func escapeAt(b []byte, i int) (r rune, raw bool, w int) {
	switch b[i] {
	case '\\':
		switch n := b[i+1]; {
		case n == 'u':
			if r, ok := hexAt(b, i+2, 4); ok {
				return r, false, 6
			}
		case n == 'U':
			if r, ok := hexAt(b, i+2, 8); ok && r <= utf8.MaxRune {
				return r, false, 10
			}
		case n == 'x' || n == 'X':
			if r, ok := hexAt(b, i+2, 2); ok {
				return r, true, 4
			}
		case n >= '0' && n <= '7':
			v, k := 0, i+1
			for ; k < len(b) && k < i+4 && b[k] >= '0' && b[k] <= '7'; k++ {
				v = v*8 + int(b[k]-'0')
			}
			if v < 256 {
				return rune(v), true, k - i
			}
		case n == '\\':
			return '\\', true, 2
		}
	case '%':
		if b[i+1] == 'u' || b[i+1] == 'U' {
			if r, ok := hexAt(b, i+2, 4); ok {
				return r, false, 6
			}
		}
		if r, ok := hexAt(b, i+1, 2); ok {
			return r, true, 3
		}
	case '&':
		if b[i+1] != '#' || i+2 >= len(b) {
			return 0, false, 0
		}
		j, base := i+2, rune(10)
		if b[j] == 'x' || b[j] == 'X' {
			j, base = j+1, 16
		}
		var v rune
		k := j
		for ; k < len(b); k++ {
			d := hexValue(b[k])
			if d < 0 || d >= base {
				break
			}
			if v = v*base + d; v > utf8.MaxRune {
				v = utf8.RuneError
			}
		}
		if k == j {
			return 0, false, 0
		}
		if k < len(b) && b[k] == ';' {
			k++
		}
		return v, false, k - i
	}
	return 0, false, 0
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// blobs decodes the runs of base64 and hex of at least minBlob characters
// in b (at each alignment in the answer itself, at the first inside a
// decoded blob).
func blobs(b []byte, depth int) [][]byte {
	aligns := 4 // a run may start with text glued to it
	if depth > 0 {
		aligns = 1
	}
	var out [][]byte
	for i := 0; i < len(b); {
		if !isB64(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isB64(b[j]) {
			j++
		}
		run := b[i:j]
		i = j
		// A run without letters is digits (hex, below), not base64.
		if len(run) < minBlob || bytes.IndexFunc(run, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' }) < 0 {
			continue
		}
		enc := base64.RawStdEncoding
		if bytes.ContainsAny(run, "-_") {
			enc = base64.RawURLEncoding
		}
		for off := 0; off < aligns; off++ {
			part := run[off:]
			if len(part)%4 == 1 {
				part = part[:len(part)-1]
			}
			if d, err := enc.DecodeString(string(part)); err == nil {
				out = append(out, d)
			}
		}
	}
	for i := 0; i < len(b); {
		if hexValue(b[i]) < 0 {
			i++
			continue
		}
		j := i
		for j < len(b) && hexValue(b[j]) >= 0 {
			j++
		}
		run := b[i:j]
		i = j
		for off := 0; off < 2 && len(run)-off >= minBlob; off++ {
			h := run[off:]
			if d, err := hex.DecodeString(string(h[:len(h)/2*2])); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}
