package server

import "testing"

// FuzzPaymentToken: any page token a client sends parses or is refused
// (never a panic, never an empty cursor that would restart the listing
// silently), and every token the server issues parses back to its id.
func FuzzPaymentToken(f *testing.F) {
	for _, s := range []string{"", "p", "pcGF5X2E", "s12", "p!!", "pay_a", "p===="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, ok := decodePaymentToken(s); ok && id == "" {
			t.Fatalf("token %q parsed to an empty cursor", s)
		}
		if s == "" {
			return
		}
		id, ok := decodePaymentToken(encodePaymentToken(s))
		if !ok || id != s {
			t.Fatalf("round trip of %q: %q %v", s, id, ok)
		}
	})
}
