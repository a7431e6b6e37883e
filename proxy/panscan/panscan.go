// Package panscan finds what looks like a card number in text the gateway
// did not write (upstream answers, acquirer codes, merchant free text), so
// that it is masked or refused before it is stored, logged or returned.
package panscan

import "bytes"

// Redact masks, in place, what looks like a card number, keeping the
// last four digits (4242 4242 4242 4242 becomes **** **** **** 4242): every
// run of 13 to 19 digits, optionally grouped by single spaces or dashes,
// that starts with 2 to 6 (the card networks' ranges) and passes the Luhn
// check; and every occurrence of the known numbers, wherever they are
// (glued to other digits too). The length of b never changes. It returns
// how many numbers it masked.
func Redact(b []byte, known ...[]byte) int {
	n := 0
	for _, k := range known {
		if len(k) < 13 {
			continue
		}
		for off := 0; ; {
			i := bytes.Index(b[off:], k)
			if i < 0 {
				break
			}
			at := off + i
			for p := at; p < at+len(k)-4; p++ {
				b[p] = '*'
			}
			n++
			off = at + len(k)
		}
	}
	var idx []int
	for i := 0; i < len(b); {
		if !isDigit(b[i]) {
			i++
			continue
		}
		idx = idx[:0]
		j := i
		for j < len(b) {
			if isDigit(b[j]) {
				idx = append(idx, j)
				j++
				continue
			}
			if (b[j] == ' ' || b[j] == '-') && j+1 < len(b) && isDigit(b[j+1]) {
				j++
				continue
			}
			break
		}
		if len(idx) >= 13 && len(idx) <= 19 && b[idx[0]] >= '2' && b[idx[0]] <= '6' && luhnAt(b, idx) {
			for _, p := range idx[:len(idx)-4] {
				b[p] = '*'
			}
			n++
		}
		i = j
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func luhnAt(b []byte, pos []int) bool {
	sum := 0
	for k := len(pos) - 1; k >= 0; k-- {
		d := int(b[pos[k]] - '0')
		if (len(pos)-1-k)%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// Contains reports whether s holds something Redact would mask.
func Contains(s string) bool {
	b := []byte(s)
	n := Redact(b)
	for i := range b {
		b[i] = 0
	}
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
