package cardtext

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestContains(t *testing.T) {
	cases := []struct {
		name  string
		texts []string
		want  bool
	}{
		{"unbroken", []string{"4242424242424242"}, true},
		{"spaces", []string{"card 4242 4242 4242 4242 thanks"}, true},
		{"dashes", []string{"4242-4242-4242-4242"}, true},
		{"dots", []string{"4242.4242.4242.4242"}, true},
		{"slashes", []string{"4242/4242/4242/4242"}, true},
		{"underscores", []string{"4242_4242_4242_4242"}, true},
		{"spaced dashes", []string{"4242 - 4242 - 4242 - 4242"}, true},
		{"amex grouping", []string{"3782 822463 10005"}, true},
		{"13 digits", []string{"4222222222222"}, true},
		{"19 digits", []string{"6011 0009 9000 0023 757"}, true},
		{"a card number followed by digits of the same grouping", []string{"6011 0009 9013 9424 123"}, true},
		{"preceded by another group", []string{"qty 2 4242 4242 4242 4242"}, true},
		{"followed by another group", []string{"4242 4242 4242 4242 7"}, true},
		{"after a date", []string{"2024-01-15 4242 4242 4242 4242"}, true},
		{"split across texts", []string{"4242 4242", "4242 4242"}, true},
		{"split across three texts", []string{"4242", "42424242", "4242"}, true},
		{"split with trailing separators", []string{"4242.4242.", " 4242.4242"}, true},
		{"unicode spaces", []string{"4242\u00a04242\u00a04242\u00a04242"}, true},
		{"luhn invalid", []string{"4242 4242 4242 4241"}, false},
		{"starts with 1", []string{"1234 5678 9012 3452"}, false},
		{"starts with 9", []string{"9242424242424242"}, false},
		{"too long unbroken", []string{"42424242424242424242"}, false},
		{"mixed separators are not one number", []string{"2024-01-15 10:30:00"}, false},
		{"iso timestamp", []string{"2024-01-15T10:30:00Z"}, false},
		{"letters break", []string{"4242a4242b4242c4242"}, false},
		{"long gap breaks", []string{"4242    4242    4242    4242"}, false},
		{"phone number", []string{"+44 20 7946 0958"}, false},
		{"order id", []string{"order 100234"}, false},
		{"empty", nil, false},
		{"keys with letters split a number", []string{"p1", "4242 4242", "p2", "4242 4242"}, false},
		// Digits in any form a reader takes for one (a non-ASCII digit
		// used to end a number, so these were stored).
		{"fullwidth", []string{"\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}, true},
		{"arabic-indic", []string{"\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661"}, true},
		{"devanagari grouped", []string{"\u096a\u0968\u096a\u0968 \u096a\u0968\u096a\u0968 \u096a\u0968\u096a\u0968 \u096a\u0968\u096a\u0968"}, true},
		{"superscripts", []string{"\u2074\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9"}, true},
		{"circled", []string{"\u2463\u2461\u2463\u2461 \u2463\u2461\u2463\u2461 \u2463\u2461\u2463\u2461 \u2463\u2461\u2463\u2461"}, true},
		{"mathematical bold", []string{"\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0"}, true},
		{"mixed scripts", []string{"4\uff12\u0664\u0662 4242 \u2074\u00b2\u2074\u00b2 4242"}, true},
		{"percent-encoded", []string{"%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31"}, true},
		{"percent-encoded fullwidth", []string{"%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91" + "111111111111"}, true},
		{"percent-encoded separators", []string{"4242%204242%204242%204242"}, true},
		{"html decimal entities", []string{"&#52;111&#49;11111111111"}, true},
		{"html hex entities without semicolons", []string{"&#x34&#x31&#x31&#x31;" + "111111111111"}, true},
		{"html entities of fullwidth digits", []string{"&#65300;111111111111111"}, true},
		{"json escapes", []string{"\\u0034\\u0031\\u0031\\u0031111111111111"}, true},
		{"hex escapes", []string{"\\x34\\x31\\x31\\x31111111111111"}, true},
		{"escapes split across texts", []string{"%34%31%31%31%31%31%31%31", "&#49;1111111"}, true},
		{"arabic-indic luhn invalid", []string{"\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0662"}, false},
		{"percent sign", []string{"100% of 4242 items"}, false},
		{"bad escapes", []string{"%zz &#; &#x; \\u00 %"}, false},
		{"fraction", []string{"\u00bd cup"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Contains(tc.texts...))
		})
	}
}

func TestContainsMetadata(t *testing.T) {
	cases := []struct {
		name        string
		description string
		md          map[string]string
		want        bool
	}{
		{"clean", "order 42", map[string]string{"order": "1001", "sku": "A-77"}, false},
		{"in a value", "", map[string]string{"note": "4242 4242 4242 4242"}, true},
		{"in a key", "", map[string]string{"4242424242424242": "x"}, true},
		{"split across values", "", map[string]string{"a": "41111111", "b": "11111111"}, true},
		{"split across keys", "", map[string]string{"41111111": "x", "51111112": "y"}, true},
		{"split between key and value", "", map[string]string{"41111111": "11111111"}, true},
		{"split between value and next key", "", map[string]string{"a": "41111111", "b1111111": "z"}, false},
		{"split between a value and the next key", "", map[string]string{"0": "41111111", "11111111": "z"}, true},
		{"split between description and a value", "card 4111 1111", map[string]string{"a": "1111 1111"}, true},
		{"split between description and a key", "card 4111 1111", map[string]string{"1111 1111": "x"}, true},
		{"fullwidth in a value", "", map[string]string{"n": "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}, true},
		{"fullwidth description", "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ContainsMetadata(tc.description, tc.md))
		})
	}
}

func TestContainsNoAllocs(t *testing.T) {
	s := strings.Repeat("4242.4242.4242.4242 and 2024-01-15 ", 4)
	assert.Zero(t, testing.AllocsPerRun(20, func() { Contains(s, s) }))
}

// FuzzContains: Contains never panics; a text it accepts still passes when
// split in two (the split is a separator that matches any grouping, so it
// can only join digit groups, which may make a number appear, never hide
// one that is whole in either half); and a known card number anywhere,
// between letters, is always found.
func FuzzContains(f *testing.F) {
	f.Add("4242 4242 4242 4242", 4)
	f.Add("2024-01-15 10:30:00", 3)
	f.Add("x", 0)
	f.Fuzz(func(t *testing.T, s string, at int) {
		found := Contains(s)
		if at < 0 {
			at = -at
		}
		if len(s) > 0 {
			at %= len(s) + 1
			a, b := s[:at], s[at:]
			if Contains(a) || Contains(b) {
				// whatever each half holds is still there when joined by a boundary
				require.True(t, Contains(a, b) || found, "a number in a half vanished when read as two texts: %q | %q", a, b)
			}
		}
		require.True(t, Contains("x "+s+" x 4242424242424242 x"), "a card number between letters was not found")
		// ... in whatever digit form or escape.
		for _, enc := range []string{
			"\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12",
			"\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662",
			"%34%32%34%32%34%32%34%32%34%32%34%32%34%32%34%32",
			"&#52;&#50;&#52;&#50;&#52;&#50;&#52;&#50;&#52;&#50;&#52;&#50;&#52;&#50;&#52;&#50;",
		} {
			require.True(t, Contains("x "+s+" x "+enc+" x"), "an encoded card number between letters was not found: %q", enc)
		}
	})
}

func TestContainsLongRuns(t *testing.T) {
	cases := []struct {
		name  string
		texts []string
		want  bool
	}{
		{"long group then a card", []string{strings.Repeat("0", 70) + " 4242 4242 4242 4242"}, true},
		{"long group then a card in the next text", []string{strings.Repeat("1", 30), "4242424242424242"}, true},
		{"long group glued to a card", []string{strings.Repeat("0", 30) + "4242424242424242"}, false},
		{"many short groups then a card", []string{strings.Repeat("1 ", 80) + "4242 4242 4242 4242"}, true},
		{"card after 64 digits of groups", []string{strings.Repeat("12 ", 40) + "4242424242424242"}, true},
		{"many short groups", []string{strings.Repeat("7 ", 200)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Contains(tc.texts...))
		})
	}
}

// BenchmarkContains: a payment's description and 50 metadata values.
func BenchmarkContains(b *testing.B) {
	texts := []string{"Order 2026-12-01 #100234 for customer 5567821, 3 items"}
	for range 50 {
		texts = append(texts, "sku-A77 qty 2 ref 2026-12-01T10:30:00Z")
	}
	n := 0
	for _, t := range texts {
		n += len(t)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		if Contains(texts...) { // not require.False: keep the loop body to the call measured
			require.FailNow(b, "false positive")
		}
	}
}
