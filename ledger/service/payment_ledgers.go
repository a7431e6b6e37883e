package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/obolpay/obol/ledger/book"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// ListPaymentLedgers lists the journal's view of payments (the ledger side
// of the reconciliation with the gateway): every payment the journal knows,
// in payment id order and paged, or the given ones.
func (s *Service) ListPaymentLedgers(ctx context.Context, req *ledgerv1.ListPaymentLedgersRequest) (*ledgerv1.ListPaymentLedgersResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	out := &ledgerv1.ListPaymentLedgersResponse{}
	if ids := req.GetPaymentIds(); len(ids) > 0 {
		if len(ids) > 1000 {
			return nil, invalid("too_many_payment_ids", "payment_ids", "at most 1000 payment ids per call")
		}
		if req.GetPageToken() != "" {
			return nil, invalid("page_token_invalid", "page_token", "payment_ids are not paged: omit page_token")
		}
		for i, id := range ids {
			if id == "" || len(id) > 64 {
				return nil, invalid("payment_id_invalid", fmt.Sprintf("payment_ids[%d]", i), book.ErrPaymentID.Error())
			}
		}
		for _, id := range ids {
			p, err := s.book.PaymentLedger(ctx, id)
			if err != nil {
				return nil, public(err)
			}
			if !p.Empty() {
				out.Payments = append(out.Payments, paymentLedgerPB(p))
			}
		}
		return out, nil
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 1000 {
		size = 100
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		var ok bool
		if after, ok = decodePaymentToken(tok); !ok {
			return nil, invalid("page_token_invalid", "page_token", "page_token must be a next_page_token returned by this call")
		}
	}
	ps, err := s.book.PaymentLedgers(ctx, after, size)
	if err != nil {
		return nil, public(err)
	}
	for _, p := range ps {
		out.Payments = append(out.Payments, paymentLedgerPB(p))
	}
	if len(ps) == size {
		out.NextPageToken = encodePaymentToken(ps[len(ps)-1].PaymentID)
	}
	return out, nil
}

// Page tokens of ListPaymentLedgers: "p" + the last payment id, base64url.
func encodePaymentToken(lastID string) string {
	return "p" + base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// decodePaymentToken parses a page token from the client (untrusted).
func decodePaymentToken(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, "p")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

func paymentLedgerPB(p book.PaymentLedger) *ledgerv1.PaymentLedger {
	out := &ledgerv1.PaymentLedger{PaymentId: p.PaymentID, MerchantId: p.MerchantID, Currency: p.Currency, Authorized: p.Authorized, HoldStatus: p.HoldStatus,
		Captured: p.Captured, Fee: p.Fee, Refunded: p.Refunded, ChargedBack: p.ChargedBack, TransactionIds: p.TransactionIDs}
	for _, r := range p.Refunds {
		out.Refunds = append(out.Refunds, &ledgerv1.PaymentLedgerRefund{RefundId: r.RefundID, Amount: r.Amount})
	}
	return out
}
