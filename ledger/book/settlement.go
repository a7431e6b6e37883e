package book

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
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
	Type     string // one of the Line* types
	// DisputeReason is a chargeback's reason (the reason column: one of
	// DisputeReasons; general by default). Other lines leave it empty.
	DisputeReason string
	// ReportID is the acquirer's id of the report the line came in (the
	// optional report_id column): lines of one payment, type and date in
	// two reports (two refunds a day) are then two lines, not a replay.
	ReportID string
}

// Types of settlement lines. A capture and a dispute_won are positive; a
// refund and a chargeback negative; dispute_review and dispute_lost move
// no money (amount and fee 0).
const (
	TypeCapture       = "capture"
	TypeRefund        = "refund"
	TypeChargeback    = "chargeback"     // opens a dispute (needs_response)
	TypeDisputeReview = "dispute_review" // the acquirer reviews the merchant's evidence (under_review)
	TypeDisputeWon    = "dispute_won"    // the chargeback returned: amount = the disputed amount, fee = the dispute fee returned
	TypeDisputeLost   = "dispute_lost"   // closed for the cardholder: the chargeback stands
)

// DisputeReasons are the reasons a chargeback line may give (the card
// networks' categories, as Stripe names them).
var DisputeReasons = []string{"bank_cannot_process", "credit_not_processed", "customer_initiated", "debit_not_authorized",
	"duplicate", "fraudulent", "general", "incorrect_account_details", "insufficient_funds", "product_not_received",
	"product_unacceptable", "subscription_canceled", "unrecognized"}

func validReason(r string) bool {
	for _, x := range DisputeReasons {
		if r == x {
			return true
		}
	}
	return false
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
// type (capture, refund, chargeback, dispute_review, dispute_won,
// dispute_lost; default by sign: positive capture, negative refund),
// reason (a chargeback's) and report_id (the acquirer's report). Every line is checked; any error refuses the whole file
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
		amountOK := true
		if l.Amount, err = strconv.ParseInt(get("amount"), 10, 64); err != nil {
			bad("amount", "must be an integer in minor units")
			amountOK = false
		}
		feeOK := true
		if l.Fee, err = strconv.ParseInt(get("fee"), 10, 64); err != nil || l.Fee < 0 {
			bad("fee", "must be a non-negative integer in minor units")
			feeOK = false
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
		l.Type = TypeCapture
		if l.Amount < 0 {
			l.Type = TypeRefund
		}
		if hasType && typeCol < len(rec) && strings.TrimSpace(rec[typeCol]) != "" {
			l.Type = strings.ToLower(strings.TrimSpace(rec[typeCol]))
		}
		if reasonCol, ok := cols["reason"]; ok && reasonCol < len(rec) {
			l.DisputeReason = strings.ToLower(strings.TrimSpace(rec[reasonCol]))
		}
		if idCol, ok := cols["report_id"]; ok && idCol < len(rec) {
			if l.ReportID = strings.TrimSpace(rec[idCol]); l.ReportID != "" && !validID(l.ReportID) {
				bad("report_id", "must be 1-64 letters, digits, '_' or '-'")
			}
		}
		switch l.Type {
		case TypeCapture, TypeDisputeWon:
			if amountOK && l.Amount <= 0 {
				bad("amount", fmt.Sprintf("must be a non-zero integer in minor units, positive for a %s", l.Type))
			} else if feeOK && l.Type == TypeCapture && l.Fee > l.Amount {
				bad("fee", "exceeds the amount")
			}
		case TypeRefund, TypeChargeback:
			if amountOK && l.Amount >= 0 {
				bad("amount", fmt.Sprintf("must be a non-zero integer in minor units, negative for a %s", l.Type))
			}
		case TypeDisputeReview, TypeDisputeLost:
			if amountOK && l.Amount != 0 {
				bad("amount", fmt.Sprintf("must be 0 for a %s (it moves no money)", l.Type))
			}
			if feeOK && l.Fee != 0 {
				bad("fee", fmt.Sprintf("must be 0 for a %s (it moves no money)", l.Type))
			}
		default:
			bad("type", "must be capture, refund, chargeback, dispute_review, dispute_won or dispute_lost")
		}
		switch {
		case l.Type == TypeChargeback && l.DisputeReason == "":
			l.DisputeReason = "general"
		case l.Type == TypeChargeback && !validReason(l.DisputeReason):
			bad("reason", "must be one of "+strings.Join(DisputeReasons, ", "))
		case l.Type != TypeChargeback && l.DisputeReason != "":
			bad("reason", "only a chargeback line gives a reason")
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
	Outcome    string
	PaymentID  string
	MerchantID string
	// DisputeID is the dispute a chargeback or dispute line opened or
	// changed.
	DisputeID string
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
		case "chargeback", "chargeback_reversal":
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
			switch l.Type {
			case TypeChargeback:
				rep.ChargebackGross += -l.Amount
			case TypeCapture, TypeRefund:
				rep.SettledGross += l.Amount
			}
			if l.Type != TypeDisputeWon { // a won dispute's fee is returned, not charged
				rep.SettledFees += l.Fee
			}
		case LineReplayed:
			rep.Replayed++
		case LineUnmatched:
			rep.Unmatched++
		case LineMismatched:
			rep.Mismatched++
		}
		rep.Results = append(rep.Results, res)
	}
	if err := b.st.AddEvents(ctx, settlementEvents(acquirer, rep.Results, b.now())...); err != nil {
		return rep, fmt.Errorf("settlement events: %w", err)
	}
	return rep, nil
}

// SettlementJSON is the data of a settlement.reconciled event: one
// merchant's lines of one import, with their outcomes (mismatches
// included).
type SettlementJSON struct {
	ID            string               `json:"id"`
	Object        string               `json:"object"`
	Acquirer      string               `json:"acquirer"`
	Matched       int                  `json:"matched"`
	AlreadyPosted int                  `json:"already_posted"`
	Mismatched    int                  `json:"mismatched"`
	Lines         []SettlementLineJSON `json:"lines"`
}

// SettlementLineJSON is one line of a SettlementJSON.
type SettlementLineJSON struct {
	Line        int    `json:"line"`
	Type        string `json:"type"`
	Payment     string `json:"payment"`
	Dispute     string `json:"dispute,omitempty"`
	Amount      int64  `json:"amount"`
	Fee         int64  `json:"fee"`
	Currency    string `json:"currency"`
	SettledDate string `json:"settled_date"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
}

// settlementEvents are an import's settlement.reconciled events, one per
// merchant with lines in it (lines matching no payment belong to no
// merchant: the operator's report has them). The settlement's id is
// derived from the acquirer and the lines, so a re-import of the same file
// finds the event already in the outbox.
func settlementEvents(acquirer string, results []LineResult, at time.Time) []store.Event {
	h := sha256.New()
	h.Write([]byte(acquirer))
	for _, r := range results {
		fmt.Fprintf(h, "\x00%s|%s|%s|%s|%d|%d|%s", r.ReportID, r.Reference, r.Type, r.Date, r.Amount, r.Fee, r.Currency)
	}
	id := "stl_" + hex.EncodeToString(h.Sum(nil)[:12])
	per := map[string]*SettlementJSON{}
	var order []string
	for _, r := range results {
		if r.MerchantID == "" {
			continue
		}
		s := per[r.MerchantID]
		if s == nil {
			s = &SettlementJSON{ID: id, Object: "settlement", Acquirer: acquirer}
			per[r.MerchantID] = s
			order = append(order, r.MerchantID)
		}
		switch r.Outcome {
		case LineMatched:
			s.Matched++
		case LineReplayed:
			s.AlreadyPosted++
		case LineMismatched:
			s.Mismatched++
		}
		s.Lines = append(s.Lines, SettlementLineJSON{Line: r.Line, Type: r.Type, Payment: r.PaymentID, Dispute: r.DisputeID, Amount: r.Amount, Fee: r.Fee,
			Currency: r.Currency, SettledDate: r.Date, Outcome: r.Outcome, Reason: r.Reason})
	}
	var out []store.Event
	for _, m := range order {
		data, _ := json.Marshal(per[m])
		out = append(out, store.Event{ID: EventID("settlement", id+":"+m, 1, "settlement.reconciled"), Type: "settlement.reconciled", MerchantID: m,
			ObjectType: "settlement", ObjectID: id, ObjectVersion: 1, Data: data, CreatedAt: at.UTC().Truncate(time.Microsecond)})
	}
	return out
}

func (b *Book) settleLine(ctx context.Context, acquirer string, l SettlementLine) (LineResult, error) {
	res := LineResult{SettlementLine: l}
	id := "settle:" + acquirer + ":" + l.Reference + ":" + l.Type + ":" + l.Date
	if l.ReportID != "" {
		id = "settle:" + acquirer + ":" + l.ReportID + ":" + l.Reference + ":" + l.Type + ":" + l.Date
	}
	if t, err := b.st.Transaction(ctx, id); err == nil {
		res.Outcome, res.PaymentID, res.MerchantID, res.DisputeID = LineReplayed, t.Metadata["payment_id"], t.Metadata["merchant_id"], t.Metadata["dispute_id"]
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
	res.PaymentID, res.MerchantID = pv.id, pv.merchant
	mismatch := func(format string, a ...any) (LineResult, error) {
		res.Outcome, res.Reason = LineMismatched, fmt.Sprintf(format, a...)
		return res, nil
	}
	if pv.currency != l.Currency {
		return mismatch("the payment is in %s, the line in %s", pv.currency, l.Currency)
	}
	switch l.Type {
	case TypeDisputeReview, TypeDisputeWon, TypeDisputeLost:
		return b.settleDispute(ctx, acquirer, pv, l, res)
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
		// Then the dispute (a replay if an interrupted import made it).
		d, err := b.openDispute(ctx, acquirer, pv, l)
		if err != nil {
			return res, err
		}
		res.DisputeID, meta["dispute_id"] = d.ID, d.ID
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
