package sqltime

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"nanoseconds are truncated", time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC), "2026-12-01T12:00:00.123456Z"},
		{"whole seconds keep six digits", time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), "2026-12-01T12:00:00.000000Z"},
		{"another zone is stored as UTC", time.Date(2026, 12, 1, 13, 0, 0, 5000, time.FixedZone("CET", 3600)), "2026-12-01T12:00:00.000005Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Format(tt.in)
			assert.Equal(t, tt.want, got)
			back, err := Parse(got)
			require.NoError(t, err)
			assert.True(t, back.Equal(tt.in.Truncate(time.Microsecond)), "round trip %v", back)
		})
	}
}

func TestTextOrderIsTimeOrder(t *testing.T) {
	a := time.Date(2026, 12, 1, 12, 0, 0, 999999000, time.UTC)
	b := a.Add(time.Microsecond)
	assert.Less(t, Format(a), Format(b))
}

func TestScan(t *testing.T) {
	want := time.Date(2026, 12, 1, 12, 0, 0, 123456000, time.UTC)
	tests := []struct {
		name    string
		in      any
		want    time.Time
		wantErr string
	}{
		{"text", "2026-12-01T12:00:00.123456Z", want, ""},
		{"bytes", []byte("2026-12-01T12:00:00.123456Z"), want, ""},
		{"an older nanosecond value", "2026-12-01T12:00:00.123456000Z", want, ""},
		{"a driver time", want.In(time.FixedZone("X", 7200)), want, ""},
		{"null is zero", nil, time.Time{}, ""},
		{"garbage is an error", "yesterday", time.Time{}, `stored time "yesterday" is not RFC 3339`},
		{"a number is an error", int64(5), time.Time{}, "unexpected int64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
			err := Into(&got).Scan(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, got.Equal(tt.want), "got %v", got)
			assert.Equal(t, time.UTC, got.Location())
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("2026-12-01T12:00:00.123456Z")
	f.Add("2026-12-01T12:00:00+02:00")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(Format(got))
		require.NoError(t, err)
		assert.True(t, back.Equal(got.Truncate(time.Microsecond)))
	})
}
