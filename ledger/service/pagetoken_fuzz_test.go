package service

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzPaymentToken: any page token a client sends parses or is refused
// (never a panic, never an empty cursor that would restart the listing
// silently), and every token the server issues parses back to its id.
func FuzzPaymentToken(f *testing.F) {
	for _, s := range []string{"", "p", "pcGF5X2E", "s12", "p!!", "pay_a", "p===="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, ok := decodePaymentToken(s); ok {
			require.NotEmpty(t, id, "token %q parsed to an empty cursor", s)
		}
		if s == "" {
			return
		}
		id, ok := decodePaymentToken(encodePaymentToken(s))
		require.True(t, ok, "round trip of %q", s)
		require.Equal(t, s, id, "round trip of %q", s)
	})
}

// FuzzDisputeToken: a dispute page token parses to a well-formed dispute id
// or is refused, and every issued token parses back.
func FuzzDisputeToken(f *testing.F) {
	for _, s := range []string{"", "d", "dnope", "p" + "ZHBf", encodeDisputeToken("dp_0123456789abcdef01234567")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, ok := decodeDisputeToken(s); ok {
			require.True(t, validDisputeID(id), "token %q parsed to %q", s, id)
			require.Equal(t, s, encodeDisputeToken(id), "token %q is not canonical", s)
		}
	})
}
