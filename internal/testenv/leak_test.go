package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLeakScannerFindsLeaks proves the scanner can fail: each form a PAN
// could take in a log line or a dump is found.
func TestLeakScannerFindsLeaks(t *testing.T) {
	const pan, cvc = "4242424242424242", "123"
	tests := []struct {
		name string
		data string
		hit  bool
	}{
		{"plain digits", `{"msg":"x","number":"4242424242424242"}`, true},
		{"spaced", "card 4242 4242 4242 4242 ok", true},
		{"dashed", "4242-4242-4242-4242", true},
		{"hex (bytea)", `\x` + hex.EncodeToString([]byte(pan)), true},
		{"base64 ([]byte in JSON)", base64.StdEncoding.EncodeToString([]byte(pan)), true},
		{"cvc after pan", "4242424242424242|123", true},
		{"masked", "424242******4242", false},
		{"last4 only", "ending 4242", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewLeakScanner()
			s.AddCard(pan, cvc)
			s.Scan("src", []byte(tt.data))
			hits, _ := s.Report()
			assert.Equal(t, tt.hit, len(hits) > 0, "hits = %v", hits)
		})
	}
}
