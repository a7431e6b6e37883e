package service

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/store"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

var errDisputeNotFound = apierr.New(apierr.KindNotFound, "dispute_not_found", "id", "no such dispute")

func disputePB(d store.Dispute) *ledgerv1.Dispute {
	return &ledgerv1.Dispute{Id: d.ID, PaymentId: d.PaymentID, MerchantId: d.MerchantID, Amount: d.Amount, Currency: d.Currency, Fee: d.Fee,
		Reason: d.Reason, Status: d.Status, Version: d.Version, Acquirer: d.Acquirer, AcquirerReference: d.AcquirerReference,
		CreatedAt: ts(d.CreatedAt), UpdatedAt: ts(d.UpdatedAt)}
}

// validDisputeID: dp_ and 24 lowercase hex digits (book.disputeID).
func validDisputeID(id string) bool {
	rest, ok := strings.CutPrefix(id, "dp_")
	if !ok || len(rest) != 24 {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkMerchant: an optional merchant id, well formed when set.
func checkMerchant(field, m string) error {
	if m == "" || book.ValidID(m) {
		return nil
	}
	return invalid("merchant_id_invalid", field, book.ErrMerchantID.Error())
}

// GetDispute reads a dispute (one merchant's, with merchant_id).
func (s *Service) GetDispute(ctx context.Context, req *ledgerv1.GetDisputeRequest) (*ledgerv1.Dispute, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if err := checkMerchant("merchant_id", req.GetMerchantId()); err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, invalid(apierr.CodeFieldRequired, "id", "id (dp_…) is required")
	}
	if !validDisputeID(req.GetId()) {
		return nil, errDisputeNotFound
	}
	d, err := s.st.Dispute(ctx, req.GetId())
	switch {
	case errors.Is(err, store.ErrNoDispute):
		return nil, errDisputeNotFound
	case err != nil:
		return nil, public(err)
	case req.GetMerchantId() != "" && d.MerchantID != req.GetMerchantId():
		return nil, errDisputeNotFound
	}
	return disputePB(d), nil
}

// ListDisputes lists disputes, newest first, paged.
func (s *Service) ListDisputes(ctx context.Context, req *ledgerv1.ListDisputesRequest) (*ledgerv1.ListDisputesResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	m := req.GetMerchantId()
	if err := checkMerchant("merchant_id", m); err != nil {
		return nil, err
	}
	if p := req.GetPaymentId(); p != "" && !book.ValidID(p) {
		return nil, invalid("payment_id_invalid", "payment_id", book.ErrPaymentID.Error())
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > 100:
		return nil, invalid("page_size_invalid", "page_size", "page_size must be 1-100 (default 10)")
	case size == 0:
		size = 10
	}
	f := store.DisputeFilter{MerchantID: m, PaymentID: req.GetPaymentId(), Limit: size}
	if tok := req.GetPageToken(); tok != "" {
		after, ok := decodeDisputeToken(tok)
		var d store.Dispute
		var err error
		if ok {
			d, err = s.st.Dispute(ctx, after)
		}
		switch {
		case !ok || errors.Is(err, store.ErrNoDispute) || err == nil && m != "" && d.MerchantID != m:
			return nil, invalid("page_token_invalid", "page_token", "page_token must be a next_page_token returned by this call")
		case err != nil:
			return nil, public(err)
		}
		f.After = after
	}
	ds, err := s.book.Disputes(ctx, f)
	if err != nil {
		return nil, public(err)
	}
	out := &ledgerv1.ListDisputesResponse{}
	for _, d := range ds {
		out.Disputes = append(out.Disputes, disputePB(d))
	}
	if len(ds) == size {
		out.NextPageToken = encodeDisputeToken(ds[len(ds)-1].ID)
	}
	return out, nil
}

// GetDisputedAmounts answers the disputed amount of each payment.
func (s *Service) GetDisputedAmounts(ctx context.Context, req *ledgerv1.GetDisputedAmountsRequest) (*ledgerv1.GetDisputedAmountsResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	m := req.GetMerchantId()
	if m == "" {
		return nil, invalid(apierr.CodeFieldRequired, "merchant_id", "merchant_id is required")
	}
	if err := checkMerchant("merchant_id", m); err != nil {
		return nil, err
	}
	ids := req.GetPaymentIds()
	if len(ids) > 100 {
		return nil, invalid("too_many_payment_ids", "payment_ids", "at most 100 payment ids per call")
	}
	out := &ledgerv1.GetDisputedAmountsResponse{Amounts: map[string]int64{}}
	for i, id := range ids {
		if !book.ValidID(id) {
			return nil, invalid("payment_id_invalid", fmt.Sprintf("payment_ids[%d]", i), book.ErrPaymentID.Error())
		}
		n, err := s.book.AmountDisputed(ctx, m, id)
		if err != nil {
			return nil, public(err)
		}
		if n != 0 {
			out.Amounts[id] = n
		}
	}
	return out, nil
}

// Page tokens of ListDisputes: "d" + the last dispute id, base64url.
func encodeDisputeToken(lastID string) string {
	return "d" + base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// decodeDisputeToken parses a page token from the client (untrusted).
func decodeDisputeToken(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, "d")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || !validDisputeID(string(b)) {
		return "", false
	}
	return string(b), true
}
