// Package refdata holds the reference tables risk rules use: BIN ranges
// (brand, card type, issuing country) and IP ranges (country). Sample tables
// are embedded; full tables load from CSV files with the same columns. It
// sees only BINs (leading digits), never a PAN.
package refdata

import (
	"bytes"
	"embed"
	"encoding/csv"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
)

//go:embed data/*.csv
var samples embed.FS

// BIN is what a BIN range says about a card.
type BIN struct {
	Brand   string
	Type    string // credit, debit, prepaid
	Country string // ISO 3166-1 alpha-2
}

type binRange struct {
	first, last string
	info        BIN
}

// BINTable looks up BINs by prefix range.
type BINTable struct{ ranges []binRange }

func readCSV(r io.Reader, want []string) ([][]string, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = len(want)
	cr.TrimLeadingSpace = true
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != strings.Join(want, ",") {
		return nil, fmt.Errorf("header must be %s", strings.Join(want, ","))
	}
	return rows[1:], nil
}

// LoadBINs parses a BIN CSV (first,last,brand,type,country).
func LoadBINs(r io.Reader) (*BINTable, error) {
	rows, err := readCSV(r, []string{"first", "last", "brand", "type", "country"})
	if err != nil {
		return nil, fmt.Errorf("BIN table: %w", err)
	}
	t := &BINTable{}
	for i, row := range rows {
		first, last := row[0], row[1]
		if len(first) != len(last) || (len(first) != 6 && len(first) != 8) || strings.Trim(first+last, "0123456789") != "" || first > last {
			return nil, fmt.Errorf("BIN table line %d: first/last must be equal-length 6- or 8-digit prefixes with first <= last", i+2)
		}
		t.ranges = append(t.ranges, binRange{first, last, BIN{Brand: row[2], Type: row[3], Country: strings.ToUpper(row[4])}})
	}
	sort.Slice(t.ranges, func(a, b int) bool { return t.ranges[a].first < t.ranges[b].first })
	return t, nil
}

// SampleBINs is the embedded sample table.
func SampleBINs() *BINTable {
	b, _ := samples.ReadFile("data/bins.csv")
	t, err := LoadBINs(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	return t
}

// Lookup finds the range covering bin (6 or 8 leading digits; longer
// ranges are matched on their own length).
func (t *BINTable) Lookup(bin string) (BIN, bool) {
	var best BIN
	found := false
	for _, r := range t.ranges {
		n := len(r.first)
		if len(bin) < n {
			continue
		}
		p := bin[:n]
		if p >= r.first && p <= r.last && (!found || n == 8) {
			best, found = r.info, true
		}
	}
	return best, found
}

type ipRange struct {
	first, last netip.Addr
	country     string
}

// IPTable maps IP ranges to countries.
type IPTable struct{ ranges []ipRange }

// LoadIPs parses an IP CSV (first,last,country).
func LoadIPs(r io.Reader) (*IPTable, error) {
	rows, err := readCSV(r, []string{"first", "last", "country"})
	if err != nil {
		return nil, fmt.Errorf("IP table: %w", err)
	}
	t := &IPTable{}
	for i, row := range rows {
		f, err1 := netip.ParseAddr(row[0])
		l, err2 := netip.ParseAddr(row[1])
		if err1 != nil || err2 != nil || f.Is4() != l.Is4() || l.Less(f) {
			return nil, fmt.Errorf("IP table line %d: first/last must be addresses of one family with first <= last", i+2)
		}
		t.ranges = append(t.ranges, ipRange{f, l, strings.ToUpper(row[2])})
	}
	sort.Slice(t.ranges, func(a, b int) bool { return t.ranges[a].first.Less(t.ranges[b].first) })
	return t, nil
}

// SampleIPs is the embedded sample table.
func SampleIPs() *IPTable {
	b, _ := samples.ReadFile("data/ip_countries.csv")
	t, err := LoadIPs(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	return t
}

// Country returns the country of ip, or "" when unknown or unparsable.
func (t *IPTable) Country(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	i := sort.Search(len(t.ranges), func(i int) bool { return a.Less(t.ranges[i].first) })
	if i == 0 {
		return ""
	}
	r := t.ranges[i-1]
	if r.first.Is4() == a.Is4() && !r.last.Less(a) {
		return r.country
	}
	return ""
}

// LoadFile opens path and parses it with load.
func LoadFile[T any](path string, load func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, err
	}
	defer f.Close()
	t, err := load(f)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
