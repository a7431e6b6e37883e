package book_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/book/booktest"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestBookSQLite(t *testing.T) {
	booktest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
		require.NoError(t, err)
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
		require.NoError(t, err)
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
		{"zero chargeback", header + "r1,0,0,USD,2026-11-20,chargeback\n", "", []string{"line 2: amount: must be a non-zero integer in minor units, negative for a chargeback"}},
		{"positive chargeback", header + "r1,100,0,USD,2026-11-20,chargeback\n", "", []string{"line 2: amount"}},
		{"negative dispute_won", header + "r1,-100,0,USD,2026-11-20,dispute_won\n", "", []string{"line 2: amount"}},
		{"money on a review", header + "r1,100,0,USD,2026-11-20,dispute_review\n", "", []string{"line 2: amount: must be 0 for a dispute_review"}},
		{"fee on a lost dispute", header + "r1,0,15,USD,2026-11-20,dispute_lost\n", "", []string{"line 2: fee: must be 0 for a dispute_lost"}},
		{"zero without a type", "acquirer_reference,amount,fee,currency,settled_date\nr1,0,0,USD,2026-11-20\n", "", []string{"line 2: amount"}},
		{"unknown reason", "acquirer_reference,amount,fee,currency,settled_date,type,reason\nr1,-100,0,USD,2026-11-20,chargeback,angry\n", "", []string{"line 2: reason: must be one of"}},
		{"reason on a capture", "acquirer_reference,amount,fee,currency,settled_date,type,reason\nr1,100,0,USD,2026-11-20,capture,fraudulent\n", "", []string{"line 2: reason: only a chargeback"}},
		{"bad report id", "acquirer_reference,amount,fee,currency,settled_date,type,report_id\nr1,100,0,USD,2026-11-20,capture,stl 1\n", "", []string{"line 2: report_id"}},
		{"every error reported", header + "r1,x,0,USD,2026-11-20,capture\nr2,5,0,USD,bad,capture\n", "", []string{"2 error(s)", "line 2: amount", "line 3: settled_date"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := book.ParseSettlement(strings.NewReader(tt.file), tt.currency)
			var fe *book.FileError
			require.ErrorAs(t, err, &fe)
			require.Nil(t, lines, "want no lines with a FileError")
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
		})
	}
}

func TestParseSettlementDefaultsTypeBySign(t *testing.T) {
	lines, err := book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date\nr1,100,3,usd,2026-11-20\nr1,-40,0,USD,2026-11-20\n"), "")
	require.NoError(t, err)
	require.Len(t, lines, 2)
	assert.Equal(t, "capture", lines[0].Type)
	assert.Equal(t, "refund", lines[1].Type)
	assert.Equal(t, "USD", lines[0].Currency)
	assert.Equal(t, 3, lines[1].Line)
}

func FuzzParseSettlement(f *testing.F) {
	f.Add("acquirer_reference,amount,fee,currency,settled_date,type\nr1,100,3,USD,2026-11-20,capture\n")
	f.Add("acquirer_reference,amount,fee,currency,settled_date\nr1,-9223372036854775808,0,USD,2026-11-20\n")
	f.Add("\"a\nb\",1,2\n")
	f.Add("acquirer_reference,amount,fee,currency,settled_date,type,reason\nr1,-100,1500,USD,2026-11-20,chargeback,fraudulent\nr1,0,0,USD,2026-11-21,dispute_review,\nr1,100,1500,USD,2026-11-22,dispute_won,\n")
	f.Fuzz(func(t *testing.T, file string) {
		lines, err := book.ParseSettlement(strings.NewReader(file), "")
		if err != nil {
			var fe *book.FileError
			require.ErrorAs(t, err, &fe, "error without line detail")
			require.NotEmpty(t, fe.Lines, "error without line detail: %v", err)
			require.Nil(t, lines, "lines returned with an error")
			return
		}
		for _, l := range lines {
			positive := l.Type == book.TypeCapture || l.Type == book.TypeDisputeWon
			zero := l.Type == book.TypeDisputeReview || l.Type == book.TypeDisputeLost
			ok := l.Fee >= 0 && l.Reference != "" && positive == (l.Amount > 0) && zero == (l.Amount == 0) && (!zero || l.Fee == 0) && l.Line >= 2 &&
				(l.Type == book.TypeChargeback) == (l.DisputeReason != "")
			require.True(t, ok, "accepted a bad line: %+v", l)
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
			_, err := book.ParseConfig([]byte(tt.yaml))
			require.ErrorContains(t, err, tt.want)
		})
	}
	c, err := book.ParseConfig([]byte("merchants: {mer_a: {fee_bps: 100, payout_schedule: weekly, payout_weekday: Friday}}"))
	require.NoError(t, err)
	m := c.Merchant("mer_a")
	assert.EqualValues(t, 100, m.FeeBasisPoints, "override")
	assert.EqualValues(t, "weekly", m.Schedule, "override")
	assert.Equal(t, "Friday", m.PayoutWeekday.String(), "override")
	assert.EqualValues(t, 2, m.DelayDays, "override")
	d := c.Merchant("other")
	assert.EqualValues(t, 290, d.FeeBasisPoints, "defaults")
	assert.EqualValues(t, "daily", d.Schedule, "defaults")
}
