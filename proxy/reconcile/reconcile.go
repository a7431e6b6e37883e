// Package reconcile compares the gateway's payments with the ledger's
// journal, payment by payment: the hold and its amount, the capture, the
// fee, each refund, the currency and the merchant. `obol ledger verify`
// checks the journal against itself; this checks it against the gateway,
// so a capture the ledger never heard of (or one it has twice, or for
// another amount) is reported. Differences that the gateway's pending
// ledger outbox will resolve when delivered are reported as explained.
//
// It reads the gateway's store directly (PAN-free columns only: amounts,
// statuses, ids) and the ledger over its gRPC API (ListPaymentLedgers), so
// the ledger stays outside the PCI zone. It never sees a PAN.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/proxy/service"
	paystore "github.com/obolpay/obol/proxy/store"
)

// Difference kinds.
const (
	// KindMissingInLedger: the gateway has a payment with money state
	// (authorized or later) that the journal knows nothing of (or a refund
	// the journal lacks: Field "refunds[<id>]").
	KindMissingInLedger = "missing_in_ledger"
	// KindMissingAtGateway: the journal has a payment (or a refund) the
	// gateway does not.
	KindMissingAtGateway = "missing_at_gateway"
	// KindAmountMismatch: both have it, for different amounts (Field names
	// which: authorized, captured, fee, refunded, refunds[<id>]).
	KindAmountMismatch = "amount_mismatch"
	// KindStatusMismatch: the journal's hold state (Field hold_status)
	// does not fit the gateway's status.
	KindStatusMismatch = "status_mismatch"
	// KindFieldMismatch: currency or merchant differ (Field currency or
	// merchant_id).
	KindFieldMismatch = "field_mismatch"
)

// Difference is one disagreement between the gateway and the ledger.
// Amounts are in minor units, as decimal strings.
type Difference struct {
	PaymentID     string `json:"payment_id"`
	MerchantID    string `json:"merchant_id,omitempty"`
	Kind          string `json:"kind"`
	Field         string `json:"field,omitempty"`
	GatewayStatus string `json:"gateway_status,omitempty"`
	Gateway       string `json:"gateway"`
	Ledger        string `json:"ledger"`
	// Explained: the gateway's pending ledger outbox entries (Outbox), or
	// the hold release the payment still owes (Compensation), resolve this
	// difference once the sweeper delivers them.
	Explained    bool     `json:"explained"`
	Outbox       []string `json:"outbox,omitempty"`
	Compensation string   `json:"compensation,omitempty"`
	// DeadOutbox lists the payment's outbox entries the ledger refused for
	// good: they explain nothing until an operator retries them (obol
	// gateway outbox retry).
	DeadOutbox []string `json:"dead_outbox,omitempty"`
}

func (d Difference) String() string {
	s := fmt.Sprintf("%s %s", d.PaymentID, d.Kind)
	if d.Field != "" {
		s += " " + d.Field
	}
	s += fmt.Sprintf(": gateway %s, ledger %s", d.Gateway, d.Ledger)
	if d.GatewayStatus != "" {
		s += " (gateway status " + d.GatewayStatus + ")"
	}
	switch {
	case d.Explained && len(d.Outbox) > 0:
		s += fmt.Sprintf(" [explained by pending outbox %v]", d.Outbox)
	case d.Explained:
		s += " [explained by the owed compensation " + d.Compensation + "]"
	}
	if len(d.DeadOutbox) > 0 {
		s += fmt.Sprintf(" [dead outbox entries %v: obol gateway outbox retry]", d.DeadOutbox)
	}
	return s
}

// Report is the outcome of a reconciliation.
type Report struct {
	// GatewayPayments compared (InFlight of them skipped: still
	// processing, or with a capture, cancel or refund in flight; their
	// request or the sweeper finishes them).
	GatewayPayments int `json:"gateway_payments"`
	InFlight        int `json:"in_flight"`
	LedgerPayments  int `json:"ledger_payments"`
	// PendingOutbox is how many ledger events wait in the gateway's
	// outbox; DeadOutbox how many the ledger refused for good.
	PendingOutbox int          `json:"pending_outbox"`
	DeadOutbox    int          `json:"dead_outbox"`
	Differences   []Difference `json:"differences"`
}

// Unexplained counts the differences no pending outbox entry explains.
func (r *Report) Unexplained() int {
	n := 0
	for _, d := range r.Differences {
		if !d.Explained {
			n++
		}
	}
	return n
}

// Gateway is what the reconciliation reads from the gateway's store
// (a proxy/store Store).
type Gateway interface {
	PaymentsAfter(ctx context.Context, after string, limit int) ([]*service.Payment, error)
	OutboxAfter(ctx context.Context, after string, limit int) ([]service.OutboxEntry, error)
}

// Ledger is what it reads from the ledger (a ledgerv1.LedgerServiceClient).
type Ledger interface {
	ListPaymentLedgers(ctx context.Context, in *ledgerv1.ListPaymentLedgersRequest, opts ...grpc.CallOption) (*ledgerv1.ListPaymentLedgersResponse, error)
}

var (
	_ Gateway = (*paystore.Store)(nil)
	_ Ledger  = ledgerv1.LedgerServiceClient(nil)
)

// Options tune a reconciliation.
type Options struct {
	// LedgerToken, when set, is sent as the ledger service token
	// (otherwise the context must carry it).
	LedgerToken string
	// PageSize for both sides (default 500).
	PageSize int
}

// Errors.
var (
	ErrGateway = errors.New("reconcile: read the gateway's payments")
	ErrLedger  = errors.New("reconcile: read the ledger")
)

// Run reads every payment on both sides and reports each difference,
// sorted by payment id. A failed read is an error, never a shorter report.
func Run(ctx context.Context, gw Gateway, lg Ledger, opt Options) (*Report, error) {
	if opt.PageSize <= 0 {
		opt.PageSize = 500
	}
	if opt.LedgerToken != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+opt.LedgerToken)
	}
	ledger := map[string]*ledgerv1.PaymentLedger{}
	for tok := ""; ; {
		resp, err := lg.ListPaymentLedgers(ctx, &ledgerv1.ListPaymentLedgersRequest{PageSize: int32(opt.PageSize), PageToken: tok})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLedger, err)
		}
		for _, p := range resp.GetPayments() {
			ledger[p.GetPaymentId()] = p
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	outbox := map[string][]service.OutboxEntry{}
	rep := &Report{LedgerPayments: len(ledger), Differences: []Difference{}}
	for after := ""; ; {
		es, err := gw.OutboxAfter(ctx, after, opt.PageSize)
		if err != nil {
			return nil, fmt.Errorf("%w: outbox: %w", ErrGateway, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			outbox[e.PaymentID] = append(outbox[e.PaymentID], e)
			if e.State == service.OutboxDead {
				rep.DeadOutbox++
			} else {
				rep.PendingOutbox++
			}
		}
		after = es[len(es)-1].ID
	}
	seen := map[string]bool{}
	var differ []*service.Payment
	for after := ""; ; {
		ps, err := gw.PaymentsAfter(ctx, after, opt.PageSize)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrGateway, err)
		}
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			rep.GatewayPayments++
			seen[p.ID] = true
			if p.Status == service.StatusProcessing || p.PendingOp != "" {
				rep.InFlight++
				continue
			}
			if d := comparePayment(p, ledger[p.ID], outbox[p.ID]); len(d) > 0 {
				differ = append(differ, p)
			}
		}
		after = ps[len(ps)-1].ID
	}
	// The ledger was read first: a payment that moved on meanwhile (a
	// hold taken, a capture recorded) is compared again with a fresh read
	// of its ledger side, so that a live system does not report it.
	for i := 0; i < len(differ); i += 1000 {
		chunk := differ[i:min(i+1000, len(differ))]
		ids := make([]string, len(chunk))
		for j, p := range chunk {
			ids[j] = p.ID
			delete(ledger, p.ID) // replaced by the fresh read, if any
		}
		resp, err := lg.ListPaymentLedgers(ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: ids})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLedger, err)
		}
		for _, l := range resp.GetPayments() {
			ledger[l.GetPaymentId()] = l
		}
		for _, p := range chunk {
			rep.Differences = append(rep.Differences, comparePayment(p, ledger[p.ID], outbox[p.ID])...)
		}
	}
	for id, l := range ledger {
		if !seen[id] {
			rep.Differences = append(rep.Differences, Difference{PaymentID: id, MerchantID: l.GetMerchantId(), Kind: KindMissingAtGateway,
				Gateway: "none", Ledger: ledgerSummary(l)})
		}
	}
	sort.SliceStable(rep.Differences, func(i, j int) bool {
		a, b := rep.Differences[i], rep.Differences[j]
		if a.PaymentID != b.PaymentID {
			return a.PaymentID < b.PaymentID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Field < b.Field
	})
	return rep, nil
}

func ledgerSummary(l *ledgerv1.PaymentLedger) string {
	return fmt.Sprintf("hold %s %d %s, captured %d, refunded %d", holdName(l.GetHoldStatus()), l.GetAuthorized(), l.GetCurrency(), l.GetCaptured(), l.GetRefunded())
}

func holdName(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// comparePayment reports p's differences with the journal, marking those
// that its pending outbox entries (or the hold release it still owes)
// resolve as explained.
func comparePayment(p *service.Payment, l *ledgerv1.PaymentLedger, entries []service.OutboxEntry) []Difference {
	raw := compare(p, l)
	if len(raw) == 0 {
		return raw
	}
	var pending []service.OutboxEntry
	var dead []string
	for _, e := range entries {
		if e.State == service.OutboxDead {
			dead = append(dead, e.ID)
		} else {
			pending = append(pending, e)
		}
	}
	release := slices.Contains(strings.Split(p.Compensation, ","), service.CompRelease)
	out := raw
	if len(pending) > 0 || release {
		adjusted, ids := applyOutbox(l, pending)
		if release && adjusted != nil && adjusted.HoldStatus == "pending" {
			adjusted.HoldStatus = "voided"
		}
		out = compare(p, adjusted)
		left := map[string]bool{}
		for _, d := range out {
			left[d.Kind+"\x00"+d.Field] = true
		}
		for _, d := range raw {
			if !left[d.Kind+"\x00"+d.Field] {
				d.Explained, d.Outbox = true, ids
				if len(ids) == 0 {
					d.Compensation = service.CompRelease
				}
				out = append(out, d)
			}
		}
	}
	for i := range out {
		if !out[i].Explained {
			out[i].DeadOutbox = dead
		}
	}
	return out
}

// applyOutbox returns the journal's view as it will be once the pending
// outbox events are delivered (each event is idempotent in the ledger: one
// already applied changes nothing), and the entries' ids.
func applyOutbox(l *ledgerv1.PaymentLedger, pending []service.OutboxEntry) (*ledgerv1.PaymentLedger, []string) {
	var ids []string
	if l == nil {
		// Capture, cancel and refund need the authorization in the ledger:
		// delivering them would fail.
		for _, e := range pending {
			ids = append(ids, e.ID)
		}
		return nil, ids
	}
	adj := &ledgerv1.PaymentLedger{PaymentId: l.GetPaymentId(), MerchantId: l.GetMerchantId(), Currency: l.GetCurrency(), Authorized: l.GetAuthorized(),
		HoldStatus: l.GetHoldStatus(), Captured: l.GetCaptured(), Fee: l.GetFee(), Refunded: l.GetRefunded(), Refunds: append([]*ledgerv1.PaymentLedgerRefund(nil), l.GetRefunds()...)}
	for _, e := range pending {
		ids = append(ids, e.ID)
		req := &ledgerv1.RecordPaymentRequest{}
		if protojson.Unmarshal([]byte(e.Request), req) != nil {
			continue
		}
		switch req.GetEvent() {
		case ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED:
			if adj.HoldStatus == "pending" {
				adj.HoldStatus, adj.Captured = "posted", req.GetAmount()
				adj.Fee = -1 // computed by the ledger on delivery
			}
		case ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED:
			if adj.HoldStatus == "pending" {
				adj.HoldStatus = "voided"
			}
		case ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED:
			known := false
			for _, r := range adj.Refunds {
				known = known || r.GetRefundId() == req.GetRefundId()
			}
			if !known {
				adj.Refunds = append(adj.Refunds, &ledgerv1.PaymentLedgerRefund{RefundId: req.GetRefundId(), Amount: req.GetAmount()})
				adj.Refunded += req.GetAmount()
			}
		}
	}
	return adj, ids
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// compare lists p's differences with the journal's view l (nil: none).
func compare(p *service.Payment, l *ledgerv1.PaymentLedger) []Difference {
	var out []Difference
	add := func(kind, field, gw, lg string) {
		out = append(out, Difference{PaymentID: p.ID, MerchantID: p.MerchantID, Kind: kind, Field: field, GatewayStatus: p.Status, Gateway: gw, Ledger: lg})
	}
	// Which hold states fit the gateway's status, and whether money moved.
	var holds []string
	captured := false
	switch p.Status {
	case service.StatusAuthorized:
		holds = []string{"pending"}
	case service.StatusCaptured, service.StatusPartiallyRefunded, service.StatusRefunded:
		holds, captured = []string{"posted"}, true
	case service.StatusCanceled:
		holds = []string{"voided", "expired"}
	case service.StatusDeclined, service.StatusFailed:
		// Declined by risk before the hold, or by the acquirer (hold voided).
		holds = []string{"", "voided", "expired"}
	default:
		holds = []string{"", "pending", "posted", "voided", "expired"}
	}
	if l == nil {
		for _, h := range holds {
			if h == "" {
				return nil // nothing on either side
			}
		}
		add(KindMissingInLedger, "", p.Status+" "+itoa(p.Amount)+" "+p.Currency, "none")
		return out
	}
	if l.GetCurrency() != "" && l.GetCurrency() != p.Currency {
		add(KindFieldMismatch, "currency", p.Currency, l.GetCurrency())
	}
	if l.GetMerchantId() != "" && l.GetMerchantId() != p.MerchantID {
		add(KindFieldMismatch, "merchant_id", p.MerchantID, l.GetMerchantId())
	}
	fits := false
	for _, h := range holds {
		fits = fits || h == l.GetHoldStatus()
	}
	if !fits {
		add(KindStatusMismatch, "hold_status", p.Status, holdName(l.GetHoldStatus()))
	}
	if l.GetHoldStatus() != "" && l.GetAuthorized() != p.Amount {
		add(KindAmountMismatch, "authorized", itoa(p.Amount), itoa(l.GetAuthorized()))
	}
	gwCaptured := int64(0)
	if captured {
		gwCaptured = p.AmountCaptured
	}
	if gwCaptured != l.GetCaptured() {
		add(KindAmountMismatch, "captured", itoa(gwCaptured), itoa(l.GetCaptured()))
	}
	if captured && l.GetFee() >= 0 && p.Fee != l.GetFee() {
		add(KindAmountMismatch, "fee", itoa(p.Fee), itoa(l.GetFee()))
	}
	// Refunds, one by one (the gateway's refund ids are the ledger's).
	lref := map[string]int64{}
	for _, r := range l.GetRefunds() {
		lref[r.GetRefundId()] += r.GetAmount()
	}
	perRefund := false
	for _, r := range p.Refunds {
		la, ok := lref[r.ID]
		delete(lref, r.ID)
		switch {
		case !ok:
			add(KindMissingInLedger, "refunds["+r.ID+"]", itoa(r.Amount), "none")
		case la != r.Amount:
			add(KindAmountMismatch, "refunds["+r.ID+"]", itoa(r.Amount), itoa(la))
		default:
			continue
		}
		perRefund = true
	}
	extra := make([]string, 0, len(lref))
	for id := range lref {
		extra = append(extra, id)
	}
	sort.Strings(extra)
	for _, id := range extra {
		add(KindMissingAtGateway, "refunds["+id+"]", "none", itoa(lref[id]))
		perRefund = true
	}
	if !perRefund && p.AmountRefunded != l.GetRefunded() {
		add(KindAmountMismatch, "refunded", itoa(p.AmountRefunded), itoa(l.GetRefunded()))
	}
	return out
}
