package card

// Brand is a card network.
type Brand string

// Supported brands.
const (
	Visa       Brand = "visa"
	Mastercard Brand = "mastercard"
	Amex       Brand = "amex"
	Discover   Brand = "discover"
	JCB        Brand = "jcb"
	Diners     Brand = "diners"
	UnionPay   Brand = "unionpay"
	Maestro    Brand = "maestro"
)

// iinRange is an inclusive range of issuer identification number prefixes of
// a fixed width (e.g. 2221–2720 for Mastercard's 2-series).
type iinRange struct {
	lo, hi int
	width  int
	brand  Brand
}

// iinRanges is checked in order: narrower, more specific ranges come first so
// that co-branded ranges (Discover inside 62…, Maestro inside 5…/6…) resolve
// the way networks route them. Sources: the networks' published IIN tables.
var iinRanges = []iinRange{
	{622126, 622925, 6, Discover},
	{6011, 6011, 4, Discover},
	{644, 649, 3, Discover},
	{65, 65, 2, Discover},
	{3095, 3095, 4, Diners},
	{300, 305, 3, Diners},
	{36, 36, 2, Diners},
	{38, 39, 2, Diners},
	{3528, 3589, 4, JCB},
	{34, 34, 2, Amex},
	{37, 37, 2, Amex},
	{2221, 2720, 4, Mastercard},
	{51, 55, 2, Mastercard},
	{5018, 5018, 4, Maestro},
	{5020, 5020, 4, Maestro},
	{5038, 5038, 4, Maestro},
	{5893, 5893, 4, Maestro},
	{6304, 6304, 4, Maestro},
	{6759, 6759, 4, Maestro},
	{6761, 6763, 4, Maestro},
	{50, 50, 2, Maestro},
	{56, 58, 2, Maestro},
	{62, 62, 2, UnionPay},
	{81, 81, 2, UnionPay},
	{4, 4, 1, Visa},
}

var brandLengths = map[Brand][]int{
	Visa:       {13, 16, 19},
	Mastercard: {16},
	Amex:       {15},
	Discover:   {16, 17, 18, 19},
	JCB:        {16, 17, 18, 19},
	Diners:     {14, 15, 16, 17, 18, 19},
	UnionPay:   {16, 17, 18, 19},
	Maestro:    {12, 13, 14, 15, 16, 17, 18, 19},
}

func (b Brand) acceptsLength(n int) bool {
	for _, l := range brandLengths[b] {
		if l == n {
			return true
		}
	}
	return false
}

// detectBrand returns the brand of ASCII digits d, or "" if none matches.
func detectBrand(d []byte) Brand {
	for _, r := range iinRanges {
		if len(d) < r.width {
			continue
		}
		p := 0
		for _, c := range d[:r.width] {
			p = p*10 + int(c-'0')
		}
		if p >= r.lo && p <= r.hi {
			return r.brand
		}
	}
	return ""
}
