package refdata

import (
	"strings"
	"testing"
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
			if ok != tt.ok || b.Brand != tt.brand || b.Country != tt.country {
				t.Fatalf("Lookup(%s) = %+v %v", tt.bin, b, ok)
			}
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
			if got := tb.Country(tt.ip); got != tt.want {
				t.Fatalf("Country(%q) = %q, want %q", tt.ip, got, tt.want)
			}
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
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := LoadIPs(strings.NewReader("first,last,country\n10.0.0.9,10.0.0.1,US\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzIPCountry(f *testing.F) {
	tb := SampleIPs()
	f.Add("192.0.2.1")
	f.Add("::1")
	f.Fuzz(func(t *testing.T, ip string) { _ = tb.Country(ip) })
}
