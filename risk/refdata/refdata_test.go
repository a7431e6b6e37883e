package refdata

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBINLookup(t *testing.T) {
	tb := SampleBINs()
	tests := []struct {
		bin, brand, country string
		ok                  bool
	}{
		{"424242", "visa", "US", true},
		{"42424242", "visa", "US", true},
		{"512345", "mastercard", "US", true},
		{"356600", "jcb", "JP", true},
		{"999999", "", "", false},
		{"4242", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.bin, func(t *testing.T) {
			b, ok := tb.Lookup(tt.bin)
			assert.Equal(t, tt.ok, ok, "Lookup(%s) found", tt.bin)
			assert.Equal(t, tt.brand, b.Brand, "Lookup(%s) brand", tt.bin)
			assert.Equal(t, tt.country, b.Country, "Lookup(%s) country", tt.bin)
		})
	}
}

func TestIPCountry(t *testing.T) {
	tb := SampleIPs()
	tests := []struct{ ip, want string }{
		{"192.0.2.10", "US"}, {"198.51.100.1", "GB"}, {"203.0.113.255", "DE"},
		{"2001:db8::1", "FR"}, {"::ffff:192.0.2.1", "US"}, {"8.8.8.8", ""}, {"not an ip", ""}, {"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			assert.Equal(t, tt.want, tb.Country(tt.ip), "Country(%q)", tt.ip)
		})
	}
}

func TestLoadErrorsNameTheLine(t *testing.T) {
	tests := []struct{ name, csv string }{
		{"bad header", "a,b,c,d,e\n"},
		{"bad range", "first,last,brand,type,country\n424242,4242,visa,credit,US\n"},
		{"letters", "first,last,brand,type,country\n42424x,424242,visa,credit,US\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBINs(strings.NewReader(tt.csv))
			require.Error(t, err, "accepted")
		})
	}
	_, err := LoadIPs(strings.NewReader("first,last,country\n10.0.0.9,10.0.0.1,US\n"))
	require.ErrorContains(t, err, "line 2")
}

func FuzzIPCountry(f *testing.F) {
	tb := SampleIPs()
	f.Add("192.0.2.1")
	f.Add("::1")
	f.Fuzz(func(t *testing.T, ip string) { _ = tb.Country(ip) })
}
