// Package sqltime is how the SQLite stores keep times: as text, UTC, RFC
// 3339 with exactly six fractional digits. Fixed width makes text order
// time order (the stores compare and sort these columns), and microseconds
// are PostgreSQL's precision, so both backends of a store read back equal
// times. A stored value that is not a time is an error, never a zero time.
// PAN-free.
package sqltime

import (
	"database/sql"
	"fmt"
	"time"
)

// Layout is the stored form.
const Layout = "2006-01-02T15:04:05.000000Z07:00"

// Format is t as stored: UTC, truncated to the microsecond.
func Format(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(Layout) }

// Parse reads a stored time. It also takes any other RFC 3339 precision
// (older databases kept nanoseconds).
func Parse(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q is not RFC 3339: %w", s, err)
	}
	return t.UTC(), nil
}

// Into is a Scan destination that parses a stored time into t; a NULL
// makes t zero.
func Into(t *time.Time) sql.Scanner { return (*dest)(t) }

type dest time.Time

// Scan implements sql.Scanner.
func (d *dest) Scan(v any) error {
	var t time.Time
	var err error
	switch v := v.(type) {
	case nil:
	case string:
		t, err = Parse(v)
	case []byte:
		t, err = Parse(string(v))
	case time.Time:
		t = v.UTC()
	default:
		err = fmt.Errorf("stored time: unexpected %T", v)
	}
	if err != nil {
		return err
	}
	*d = dest(t)
	return nil
}
