package panscan

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	cases := []struct {
		name, in, out string
		n             int
	}{
		{"plain", `{"pan":"4242424242424242"}`, `{"pan":"************4242"}`, 1},
		{"spaced", "card 4242 4242 4242 4242 ok", "card **** **** **** 4242 ok", 1},
		{"dashed amex", "378282246310005", "***********0005", 1},
		{"bad luhn stays", "4242424242424241", "4242424242424241", 0},
		{"timestamp stays", "1700000000000000", "1700000000000000", 0},
		{"short stays", "424242424242", "424242424242", 0},
		{"too long stays", "42424242424242424242", "42424242424242424242", 0},
		{"two", "5555555555554444,6011111111111117", "************4444,************1117", 2},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			n := Redact(b)
			require.Equal(t, tt.out, string(b))
			require.Equal(t, tt.n, n)
		})
	}
	glued := []byte("ref9424242424242424242x")
	require.GreaterOrEqual(t, Redact(glued, []byte("4242424242424242")), 1, "known PAN glued to digits")
	require.NotContains(t, string(glued), "4242424242424242", "known PAN glued to digits")
}

func TestContainsAndString(t *testing.T) {
	require.True(t, Contains("card 4242-4242-4242-4242"))
	require.False(t, Contains("order 1700000000000000"))
	require.False(t, Contains(""))
	require.Equal(t, "x ************4444 y", String("x 5555555555554444 y"))
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"pan":"4242 4242 4242 4242"}`))
	f.Add([]byte("5555-5555-5555-4444"))
	f.Add([]byte(`{"cvc":"123","n":"\u0034242424242424242"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		Redact(b)
		require.Len(t, b, len(in), "length changed")
		again := bytes.Clone(b)
		Redact(again)
		require.Equal(t, b, again, "not idempotent")
		// With a revealed number and CVC: the same, and the number is gone.
		r := NewRedactor([][]byte{[]byte(testPAN)}, [][]byte{[]byte(testCVC)})
		k := bytes.Clone(in)
		r.Redact(k)
		require.Len(t, k, len(in), "revealed number: %q -> %q", in, k)
		require.NotContains(t, string(k), testPAN, "revealed number: %q -> %q", in, k)
		again = bytes.Clone(k)
		r.Redact(again)
		require.Equal(t, k, again, "not idempotent with revealed values")
	})
}

// TestLoose: any card-number-shaped digit sequence is masked, whatever
// separates its digits; letters end a sequence, short ones stay.
func TestLoose(t *testing.T) {
	cases := []struct{ name, in, out string }{
		{"dots", "https://4111.1111.1111.1111/num/x", "https://****.****.****.1111/num/x"},
		{"underscores", "4111_1111_1111_1111", "****_****_****_1111"},
		{"escaped dots", "q=4111%2E1111%2E1111%2E1111", "q=****%2E****%2E****%2E1111"},
		{"escaped digits", "q=%34111111111111111", "q=**************1111"},
		{"many separators", "4111 -- 1111 -- 1111 -- 1111", "**** -- **** -- **** -- 1111"},
		{"not Luhn", "1234.5678.9012.3456", "****.****.****.3456"},
		{"letters break", "4111a1111b1111c1111", "4111a1111b1111c1111"},
		{"too far apart", "4111.....1111.....1111.....1111", "4111.....1111.....1111.....1111"},
		{"short", "/v1/charges/123456789012", "/v1/charges/123456789012"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.out, Loose(tt.in))
		})
	}
}

// FuzzLoose: Loose keeps the length, never panics, and masks a dotted card
// number wherever it is put.
func FuzzLoose(f *testing.F) {
	f.Add("https://acq.example/v1/x?n=", "&b=1")
	f.Add("%3", "4%2E")
	f.Fuzz(func(t *testing.T, pre, post string) {
		in := pre + "/4111.1111.1111.1111/" + post
		out := Loose(in)
		assert.Len(t, out, len(in))
		assert.NotContains(t, out, "4111.1111.1111.1111")
		_ = Loose(pre + post)
	})
}
