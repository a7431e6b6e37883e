// Package panscan finds what looks like a card number in text the gateway
// did not write (upstream answers, acquirer codes, merchant free text), so
// that it is masked or refused before it is stored, logged or returned.
// It sees card numbers (the ones a request revealed, to mask them in the
// answer): PCI zone (proxy/).
package panscan

// Redact masks, in place, what looks like a card number, keeping the last
// four digits (4242 4242 4242 4242 becomes **** **** **** 4242), and
// every occurrence of the known numbers (see Redactor). What looks like a
// card number is a run of 13 to 19 digits, optionally grouped by single
// spaces or dashes, that starts with 2 to 6 (the card networks' ranges)
// and passes the Luhn check. Digits count in any script and escaped
// (\u0034, \x34, %34, %u0034, &#52;, &#x34;), and NUL bytes are skipped
// (UTF-16 and UTF-32 text). The length of b never changes. It returns how
// many numbers it masked.
func Redact(b []byte, known ...[]byte) int {
	return NewRedactor(known, nil).Redact(b)
}

// redactLuhn masks the Luhn-valid card-like runs.
func redactLuhn(b []byte) int {
	type digit struct{ at, w, d int }
	n := 0
	var run []digit
	for i := 0; i < len(b); {
		u := decodeAt(b, i, luhnSep)
		if digitValue(u.r) < 0 {
			i += u.w
			continue
		}
		run = run[:0]
		j := i
		for j < len(b) {
			u := decodeAt(b, j, luhnSep)
			if u.r == ignorable {
				j += u.w
				continue
			}
			if d := digitValue(u.r); d >= 0 {
				run = append(run, digit{j, u.w, d})
				j += u.w
				continue
			}
			if luhnSep(u.r) {
				k := skipNUL(b, j+u.w)
				if k < len(b) && digitValue(decodeAt(b, k, luhnSep).r) >= 0 {
					j = k
					continue
				}
			}
			break
		}
		if len(run) >= 13 && len(run) <= 19 && run[0].d >= 2 && run[0].d <= 6 {
			sum := 0
			for k := len(run) - 1; k >= 0; k-- {
				d := run[k].d
				if (len(run)-1-k)%2 == 1 {
					if d *= 2; d > 9 {
						d -= 9
					}
				}
				sum += d
			}
			if sum%10 == 0 {
				for _, d := range run[:len(run)-4] {
					mask(b, d.at, d.w)
				}
				n++
			}
		}
		i = j
	}
	return n
}

func skipNUL(b []byte, i int) int {
	for i < len(b) && b[i] == 0 {
		i++
	}
	return i
}

// Contains reports whether s holds something Redact would mask.
func Contains(s string) bool {
	b := []byte(s)
	n := Redact(b)
	clear(b)
	return n > 0
}

// String is s with what looks like a card number masked.
func String(s string) string {
	b := []byte(s)
	if Redact(b) == 0 {
		return s
	}
	return string(b)
}

// Loose is s with every card-number-shaped digit sequence masked, all but
// its last four digits: 13 or more digits (in any script, escaped or not)
// where any two in a row are apart by at most four characters that are
// neither letters nor digits (4111.1111.1111.1111, 4111_1111…, 4111%2E1111…,
// 4111 -- 1111…).
// Unlike String it needs no Luhn check and no known separator: it is for
// merchant text shown back or logged (a destination), where masking an
// innocent long number costs nothing.
func Loose(s string) string {
	b := []byte(s)
	any := func(rune) bool { return true }
	var run []pos
	flush := func() {
		if len(run) >= 13 {
			for _, p := range run[:len(run)-4] {
				mask(b, p.at, p.w)
			}
		}
		run = run[:0]
	}
	gap := 0
	for i := 0; i < len(b); {
		u := decodeAt(b, i, any)
		switch {
		case u.r == ignorable:
		case digitValue(u.r) >= 0:
			run = append(run, pos{i, u.w})
			gap = 0
		case isAlnum(u.r):
			flush()
		default:
			if gap++; gap > 4 {
				flush()
			}
		}
		i += u.w
	}
	flush()
	return string(b)
}
