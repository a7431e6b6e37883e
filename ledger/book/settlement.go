package book

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
)

// SettlementLine is one line of an acquirer's settlement report.
type SettlementLine struct {
	Line      int // 1-based, the header is line 1
	Reference string
	// Amount is signed minor units: positive for a capture, negative for a
	// refund or chargeback.
	Amount   int64
	Fee      int64
	Currency string
	Date     string // YYYY-MM-DD
	Type     string // capture, refund or chargeback
}

// LineError is a problem with one line of a settlement file.
type LineError struct {
	Line    int
	Field   string
	Message string
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Message) }

// FileError is a settlement file refused whole: nothing was posted.
type FileError struct{ Lines []LineError }

func (e *FileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "settlement file refused, nothing posted: %d error(s)", len(e.Lines))
	for i, l := range e.Lines {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Lines)-10)
			break
		}
		b.WriteString("; " + l.Error())
	}
	return b.String()
}

var settlementColumns = []string{"acquirer_reference", "amount", "fee", "currency", "settled_date"}

// MaxSettlementLines bounds one import.
const MaxSettlementLines = 100_000

// ParseSettlement reads a settlement CSV: a header with the columns
// acquirer_reference, amount, fee, currency, settled_date and optionally
// type (capture, refund, chargeback; default by sign: positive capture,
// negative refund). Every line is checked; any error refuses the whole file
// (a *FileError listing each line's problem). If currency is not empty,
// every line must be in it.
func ParseSettlement(r io.Reader, currency string) ([]SettlementLine, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, &FileError{Lines: []LineError{{Line: 1, Field: "header", Message: "the file is empty or not CSV"}}}
	}
	cols := map[string]int{}
	for i, h := range header {
		cols[strings.ToLower(strings.TrimSpace(h))] = i
	}
	var errs []LineError
	for _, c := range settlementColumns {
		if _, ok := cols[c]; !ok {
			errs = append(errs, LineError{Line: 1, Field: "header", Message: fmt.Sprintf("missing column %q (want %s[,type])", c, strings.Join(settlementColumns, ","))})
		}
	}
	if len(errs) > 0 {
		return nil, &FileError{Lines: errs}
	}
	typeCol, hasType := cols["type"]
	var out []SettlementLine
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, LineError{Line: line, Field: "csv", Message: "malformed CSV"})
			break
		}
		if len(out) >= MaxSettlementLines {
			errs = append(errs, LineError{Line: line, Field: "file", Message: fmt.Sprintf("more than %d lines: split the file", MaxSettlementLines)})
			break
		}
		get := func(c string) string {
			if i := cols[c]; i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		l := SettlementLine{Line: line, Reference: get("acquirer_reference"), Currency: strings.ToUpper(get("currency")), Date: get("settled_date")}
		bad := func(field, msg string) { errs = append(errs, LineError{Line: line, Field: field, Message: msg}) }
		if len(rec) < len(header) {
			bad("columns", fmt.Sprintf("%d columns, the header has %d", len(rec), len(header)))
			continue
		}
		if l.Reference == "" || len(l.Reference) > 128 {
			bad("acquirer_reference", "required, at most 128 characters")
		}
		if l.Amount, err = strconv.ParseInt(get("amount"), 10, 64); err != nil || l.Amount == 0 {
			bad("amount", "must be a non-zero integer in minor units")
		}
		if l.Fee, err = strconv.ParseInt(get("fee"), 10, 64); err != nil || l.Fee < 0 {
			bad("fee", "must be a non-negative integer in minor units")
		}
		switch {
		case !money.Valid(l.Currency):
			bad("currency", "must be an ISO 4217 code")
		case currency != "" && l.Currency != currency:
			bad("currency", fmt.Sprintf("is %s; this import is for %s", l.Currency, currency))
		}
		if _, err := time.Parse("2006-01-02", l.Date); err != nil {
			bad("settled_date", "must be YYYY-MM-DD")
		}
		l.Type = "capture"
		if l.Amount < 0 {
			l.Type = "refund"
		}
		if hasType && typeCol < len(rec) && strings.TrimSpace(rec[typeCol]) != "" {
			l.Type = strings.ToLower(strings.TrimSpace(rec[typeCol]))
		}
		switch {
		case l.Type != "capture" && l.Type != "refund" && l.Type != "chargeback":
			bad("type", "must be capture, refund or chargeback")
		case l.Type == "capture" && l.Amount < 0, l.Type != "capture" && l.Amount > 0:
			bad("amount", "a capture is positive; a refund or chargeback negative")
		case l.Type == "capture" && l.Fee > l.Amount:
			bad("fee", "exceeds the amount")
		}
		key := l.Reference + "|" + l.Type + "|" + l.Date
		if first, dup := seen[key]; dup {
			bad("acquirer_reference", fmt.Sprintf("duplicate of line %d (same reference, type and date)", first))
		}
		seen[key] = line
		out = append(out, l)
	}
	if len(errs) > 0 {
		return nil, &FileError{Lines: errs}
	}
	return out, nil
}

// Outcomes of a settlement line.
const (
	LineMatched    = "matched"        // posted
	LineReplayed   = "already_posted" // imported before: nothing posted again
	LineUnmatched  = "unmatched"      // no captured payment with this reference
	LineMismatched = "mismatched"     // the payment differs (amount or currency)
)

// LineResult is what an import did with one line.
type LineResult struct {
	SettlementLine
	Outcome   string
	PaymentID string
	Reason    string
}

// SettlementReport is the outcome of an import.
type SettlementReport struct {
	Lines                                      int
	Matched, Replayed, Unmatched, Mismatched   int
	Results                                    []LineResult
	SettledGross, SettledFees, ChargebackGross int64
}

type paymentView struct {
	id, merchant, currency string
	captured, refunded     int64
	// cleared by earlier settlement lines
	settledCaptures, settledRefunds, chargedBack int64
}

func (b *Book) paymentByReference(ctx context.Context, acquirer, ref string) (*paymentView, error) {
	txs, err := b.st.FindTransactions(ctx, "acquirer_reference", ref, 1000)
	if err != nil {
		return nil, err
	}
	var pv *paymentView
	for _, t := range txs {
		if a := t.Metadata["acquirer"]; a != "" && a != acquirer {
			continue
		}
		if pv == nil && t.Metadata["payment_id"] != "" {
			pv = &paymentView{id: t.Metadata["payment_id"], merchant: t.Metadata["merchant_id"]}
		}
		if pv == nil || len(t.Postings) == 0 {
			continue
		}
		switch t.Metadata["type"] {
		case "capture":
			pv.currency, pv.captured = t.Postings[0].Currency, pv.captured-t.Postings[0].Amount
		case "settlement_capture":
			pv.settledCaptures += t.Postings[0].Amount
		case "settlement_refund":
			pv.settledRefunds -= t.Postings[0].Amount
		case "chargeback":
			pv.chargedBack -= t.Postings[0].Amount
		}
	}
	if pv == nil {
		return nil, nil
	}
	tot, err := b.Totals(ctx, pv.id)
	if err != nil {
		return nil, err
	}
	pv.refunded = tot.Refunded
	return pv, nil
}

// ImportSettlement reconciles an acquirer's settlement lines against the
// captured payments and posts each matched line: a capture clears the
// acquirer receivable into the bank (net of the acquirer's fee), a refund
// clears the refunds account, and a chargeback reverses the payment against
// the merchant (who also bears the acquirer's dispute fee) and clears it.
// Unmatched and mismatched lines are reported and post nothing; a line
// imported before replays. Lines must come from ParseSettlement.
func (b *Book) ImportSettlement(ctx context.Context, acquirer string, lines []SettlementLine) (SettlementReport, error) {
	rep := SettlementReport{Lines: len(lines)}
	if !validID(acquirer) {
		return rep, errors.New("acquirer name must be 1-64 letters, digits, '_' or '-'")
	}
	for _, l := range lines {
		res, err := b.settleLine(ctx, acquirer, l)
		if err != nil {
			return rep, fmt.Errorf("line %d: %w", l.Line, err)
		}
		switch res.Outcome {
		case LineMatched:
			rep.Matched++
			if l.Type == "chargeback" {
				rep.ChargebackGross += -l.Amount
			} else {
				rep.SettledGross += l.Amount
			}
			rep.SettledFees += l.Fee
		case LineReplayed:
			rep.Replayed++
		case LineUnmatched:
			rep.Unmatched++
		case LineMismatched:
			rep.Mismatched++
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func (b *Book) settleLine(ctx context.Context, acquirer string, l SettlementLine) (LineResult, error) {
	res := LineResult{SettlementLine: l}
	id := "settle:" + acquirer + ":" + l.Reference + ":" + l.Type + ":" + l.Date
	if _, err := b.st.Transaction(ctx, id); err == nil {
		res.Outcome = LineReplayed
		return res, nil
	} else if !errors.Is(err, store.ErrNoTransaction) {
		return res, err
	}
	pv, err := b.paymentByReference(ctx, acquirer, l.Reference)
	if err != nil {
		return res, err
	}
	if pv == nil || pv.captured == 0 {
		res.Outcome, res.Reason = LineUnmatched, "no captured payment with this acquirer reference"
		return res, nil
	}
	res.PaymentID = pv.id
	mismatch := func(format string, a ...any) (LineResult, error) {
		res.Outcome, res.Reason = LineMismatched, fmt.Sprintf(format, a...)
		return res, nil
	}
	if pv.currency != l.Currency {
		return mismatch("the payment is in %s, the line in %s", pv.currency, l.Currency)
	}
	cur := l.Currency
	meta := map[string]string{"type": "settlement_" + l.Type, "payment_id": pv.id, "merchant_id": pv.merchant, "acquirer": acquirer,
		"acquirer_reference": l.Reference, "settled_date": l.Date, "line_fee": strconv.FormatInt(l.Fee, 10)}
	var legs []journal.Posting
	switch l.Type {
	case "capture":
		if due := pv.captured - pv.settledCaptures; l.Amount != due {
			return mismatch("amount %d, but %d of the capture is unsettled", l.Amount, due)
		}
		legs = []journal.Posting{
			{AccountID: PlatformAccount(cur, Receivable), Amount: l.Amount, Currency: cur},
			{AccountID: PlatformAccount(cur, Bank), Amount: -(l.Amount - l.Fee), Currency: cur},
		}
	case "refund":
		if due := pv.refunded - pv.settledRefunds; -l.Amount > due {
			return mismatch("refund of %d, but only %d of refunds is unsettled", -l.Amount, due)
		}
		legs = []journal.Posting{
			{AccountID: PlatformAccount(cur, Refunds), Amount: l.Amount, Currency: cur},
			{AccountID: PlatformAccount(cur, Bank), Amount: -(l.Amount - l.Fee), Currency: cur},
		}
	case "chargeback":
		cbID := "pay:" + pv.id + ":chargeback:" + l.Date
		_, err := b.st.Transaction(ctx, cbID)
		posted := err == nil
		if err != nil && !errors.Is(err, store.ErrNoTransaction) {
			return res, err
		}
		if open := pv.captured - pv.refunded - pv.chargedBack; !posted && -l.Amount > open {
			return mismatch("chargeback of %d, but only %d of the payment is not refunded or disputed", -l.Amount, open)
		}
		// The merchant side: the disputed amount and the acquirer's fee
		// (posted first; an interrupted import replays it when rerun).
		cb := journal.Transaction{ID: cbID, Postings: []journal.Posting{
			{AccountID: MerchantAccount(pv.merchant, cur, Pending), Amount: l.Amount, Currency: cur},
			{AccountID: PlatformAccount(cur, Chargebacks), Amount: -l.Amount, Currency: cur},
		}, Description: "chargeback", Metadata: map[string]string{"type": "chargeback", "payment_id": pv.id, "merchant_id": pv.merchant, "acquirer": acquirer, "acquirer_reference": l.Reference}}
		if l.Fee > 0 {
			cb.Postings = append(cb.Postings,
				journal.Posting{AccountID: MerchantAccount(pv.merchant, cur, Pending), Amount: -l.Fee, Currency: cur},
				journal.Posting{AccountID: PlatformAccount(cur, AcquirerFees), Amount: l.Fee, Currency: cur})
		}
		if _, err := b.st.Post(ctx, cb); err != nil {
			return res, err
		}
		legs = []journal.Posting{
			{AccountID: PlatformAccount(cur, Chargebacks), Amount: l.Amount, Currency: cur},
			{AccountID: PlatformAccount(cur, Bank), Amount: -(l.Amount - l.Fee), Currency: cur},
		}
	}
	if l.Fee > 0 {
		legs = append(legs, journal.Posting{AccountID: PlatformAccount(cur, AcquirerFees), Amount: -l.Fee, Currency: cur})
	}
	if _, err := b.st.Post(ctx, journal.Transaction{ID: id, Postings: legs, Description: "settlement " + l.Type, Metadata: meta}); err != nil {
		return res, err
	}
	res.Outcome = LineMatched
	return res, nil
}
