package book_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/book/booktest"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/sqlite"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestBookSQLite(t *testing.T) {
	booktest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBookPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	booktest.Run(t, func(t *testing.T) store.Store {
		url := testenv.SharedPostgres(t).NewDatabase(t, "ledger", postgres.MigrateURL)
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestParseSettlementRefusesBadFiles(t *testing.T) {
	const header = "acquirer_reference,amount,fee,currency,settled_date,type\n"
	tests := []struct {
		name, file, currency string
		want                 []string // substrings of the error, with line numbers
	}{
		{"empty file", "", "", []string{"line 1: header"}},
		{"missing column", "acquirer_reference,amount,currency,settled_date\nr,1,USD,2026-11-20\n", "", []string{`line 1: header: missing column "fee"`}},
		{"bad amount", header + "r1,12.50,0,USD,2026-11-20,capture\n", "", []string{"line 2: amount"}},
		{"zero amount", header + "r1,0,0,USD,2026-11-20,capture\n", "", []string{"line 2: amount"}},
		{"negative fee", header + "r1,100,-1,USD,2026-11-20,capture\n", "", []string{"line 2: fee"}},
		{"fee above amount", header + "r1,100,101,USD,2026-11-20,capture\n", "", []string{"line 2: fee: exceeds"}},
		{"unknown currency", header + "r1,100,0,ABC,2026-11-20,capture\n", "", []string{"line 2: currency"}},
		{"other currency", header + "r1,100,0,EUR,2026-11-20,capture\n", "USD", []string{"line 2: currency: is EUR; this import is for USD"}},
		{"bad date", header + "r1,100,0,USD,20/11/2026,capture\n", "", []string{"line 2: settled_date"}},
		{"bad type", header + "r1,100,0,USD,2026-11-20,bonus\n", "", []string{"line 2: type"}},
		{"negative capture", header + "r1,-100,0,USD,2026-11-20,capture\n", "", []string{"line 2: amount"}},
		{"short line", header + "r1,100,0\n", "", []string{"line 2: columns"}},
		{"duplicate line", header + "r1,100,0,USD,2026-11-20,capture\nr2,5,0,USD,2026-11-20,capture\nr1,100,0,USD,2026-11-20,capture\n", "", []string{"line 4: acquirer_reference: duplicate of line 2"}},
		{"every error reported", header + "r1,x,0,USD,2026-11-20,capture\nr2,5,0,USD,bad,capture\n", "", []string{"2 error(s)", "line 2: amount", "line 3: settled_date"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := book.ParseSettlement(strings.NewReader(tt.file), tt.currency)
			var fe *book.FileError
			if !errors.As(err, &fe) || lines != nil {
				t.Fatalf("got %v, %v; want a FileError and no lines", lines, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSettlementDefaultsTypeBySign(t *testing.T) {
	lines, err := book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date\nr1,100,3,usd,2026-11-20\nr1,-40,0,USD,2026-11-20\n"), "")
	if err != nil || len(lines) != 2 || lines[0].Type != "capture" || lines[1].Type != "refund" || lines[0].Currency != "USD" || lines[1].Line != 3 {
		t.Fatalf("%+v %v", lines, err)
	}
}

func FuzzParseSettlement(f *testing.F) {
	f.Add("acquirer_reference,amount,fee,currency,settled_date,type\nr1,100,3,USD,2026-11-20,capture\n")
	f.Add("acquirer_reference,amount,fee,currency,settled_date\nr1,-9223372036854775808,0,USD,2026-11-20\n")
	f.Add("\"a\nb\",1,2\n")
	f.Fuzz(func(t *testing.T, file string) {
		lines, err := book.ParseSettlement(strings.NewReader(file), "")
		if err != nil {
			var fe *book.FileError
			if !errors.As(err, &fe) || len(fe.Lines) == 0 || lines != nil {
				t.Fatalf("error without line detail: %v", err)
			}
			return
		}
		for _, l := range lines {
			if l.Amount == 0 || l.Fee < 0 || l.Reference == "" || (l.Type == "capture") != (l.Amount > 0) || l.Line < 2 {
				t.Fatalf("accepted a bad line: %+v", l)
			}
		}
	})
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"fee too high", "defaults: {fee_bps: 10001}", "defaults.fee_bps"},
		{"bad schedule", "merchants: {mer_a: {payout_schedule: hourly}}", "merchants.mer_a.payout_schedule"},
		{"bad weekday", "defaults: {payout_weekday: someday}", "defaults.payout_weekday"},
		{"bad fixed fee currency", "defaults: {fee_fixed: {ZZZ: 1}}", "defaults.fee_fixed.ZZZ"},
		{"unknown key", "defaults: {fees: 1}", "field fees not found"},
		{"bad merchant id", "merchants: {\"a b\": {}}", "merchants.a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := book.ParseConfig([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
	c, err := book.ParseConfig([]byte("merchants: {mer_a: {fee_bps: 100, payout_schedule: weekly, payout_weekday: Friday}}"))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Merchant("mer_a"); m.FeeBasisPoints != 100 || m.Schedule != "weekly" || m.PayoutWeekday.String() != "Friday" || m.DelayDays != 2 {
		t.Fatalf("override: %+v", m)
	}
	if d := c.Merchant("other"); d.FeeBasisPoints != 290 || d.Schedule != "daily" {
		t.Fatalf("defaults: %+v", d)
	}
}
