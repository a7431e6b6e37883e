package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// LeakScanner looks for test card numbers (and CVCs next to them) in
// captured logs and stored data. Patterns per PAN: the plain digits, groups
// of 4 (and Amex 4-6-5) separated by space or dash, the hex and base64 of the
// digits (how bytea and []byte fields print), and the CVC right after the PAN
// with common separators.
type LeakScanner struct {
	mu       sync.Mutex
	patterns map[string]string // pattern -> description (never the PAN itself)
	scanned  map[string]int    // source -> bytes
	hits     []string
}

// NewLeakScanner returns an empty scanner.
func NewLeakScanner() *LeakScanner {
	return &LeakScanner{patterns: map[string]string{}, scanned: map[string]int{}}
}

func group(d string, sizes []int, sep string) string {
	var parts []string
	i := 0
	for _, n := range sizes {
		if i+n > len(d) {
			break
		}
		parts = append(parts, d[i:i+n])
		i += n
	}
	if i < len(d) {
		parts = append(parts, d[i:])
	}
	return strings.Join(parts, sep)
}

// AddCard registers a PAN (digits only) and optionally its CVC.
func (s *LeakScanner) AddCard(pan, cvc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := fmt.Sprintf("PAN ending %s", pan[len(pan)-4:])
	add := func(p, what string) { s.patterns[p] = label + " (" + what + ")" }
	add(pan, "digits")
	for _, sep := range []string{" ", "-"} {
		add(group(pan, []int{4, 4, 4, 4}, sep), "4-4-4-4 with "+fmt.Sprintf("%q", sep))
		add(group(pan, []int{4, 6, 5}, sep), "4-6-5 with "+fmt.Sprintf("%q", sep))
	}
	add(hex.EncodeToString([]byte(pan)), "hex")
	add(base64.StdEncoding.EncodeToString([]byte(pan))[:16], "base64")
	if cvc != "" {
		for _, sep := range []string{"", " ", "|", ",", ":", "/", `","cvc":"`, `" cvc:"`} {
			add(pan+sep+cvc, "followed by its CVC")
		}
	}
}

// Scan checks data from source and records hits (as descriptions only).
func (s *LeakScanner) Scan(source string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scanned[source] += len(data)
	for p, what := range s.patterns {
		if n := bytes.Count(data, []byte(p)); n > 0 {
			s.hits = append(s.hits, fmt.Sprintf("%s: %s found %d time(s)", source, what, n))
		}
	}
}

// Report returns the hits and a summary line.
func (s *LeakScanner) Report() (hits []string, summary string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var srcs []string
	total := 0
	for k, n := range s.scanned {
		srcs = append(srcs, fmt.Sprintf("%s=%dB", k, n))
		total += n
	}
	sort.Strings(srcs)
	return append([]string(nil), s.hits...), fmt.Sprintf("leak scan: %d patterns over %d sources (%d bytes): %s; hits=%d",
		len(s.patterns), len(s.scanned), total, strings.Join(srcs, " "), len(s.hits))
}
