// Package service exposes the ledger journal and the payments book as
// obol.ledger.v1.LedgerService, with typed errors naming the field. Outside
// PCI scope.
package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/internal/servicetoken"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// Service implements ledgerv1.LedgerServiceServer.
type Service struct {
	ledgerv1.UnimplementedLedgerServiceServer
	book  *book.Book
	st    store.Store
	token string
}

var _ ledgerv1.LedgerServiceServer = (*Service)(nil)

// New returns the service; token (required) authenticates every call.
func New(b *book.Book, token string) *Service {
	return &Service{book: b, st: b.Store(), token: token}
}

var errUnauthenticated = servicetoken.Required("ledger")

func (s *Service) auth(ctx context.Context) error {
	return servicetoken.Check(ctx, s.token, errUnauthenticated)
}

func invalid(code, field, msg string) error { return apierr.Invalid(code, field, msg) }

// public maps journal and book errors to typed API errors; anything else is
// the database failing: unavailable, nothing was written.
func public(err error) error {
	if err == nil {
		return nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return err
	}
	conflict := func(code, field, msg string) error {
		return apierr.New(apierr.KindFailedPrecondition, code, field, msg)
	}
	notFound := func(code, field, msg string) error { return apierr.New(apierr.KindNotFound, code, field, msg) }
	switch {
	case errors.Is(err, journal.ErrIdempotencyReused):
		return apierr.New(apierr.KindConflict, apierr.CodeIdempotencyKeyReused, "id", "this id was already used with a different request")
	case errors.Is(err, journal.ErrDuplicateAccountID):
		return apierr.New(apierr.KindConflict, "account_exists", "id", "an account with this id exists with other settings")
	case errors.Is(err, journal.ErrTooFewPostings):
		return invalid("too_few_postings", "postings", err.Error())
	case errors.Is(err, journal.ErrZeroAmount):
		return invalid("amount_invalid", "postings.amount", err.Error())
	case errors.Is(err, journal.ErrUnbalanced):
		return invalid("unbalanced", "postings", err.Error())
	case errors.Is(err, journal.ErrUnknownCurrency), errors.Is(err, book.ErrCurrency):
		return invalid("currency_unknown", "currency", "currency must be an active ISO 4217 code, e.g. USD")
	case errors.Is(err, journal.ErrCurrencyMismatch), errors.Is(err, book.ErrCurrencyMismatch):
		return invalid("currency_mismatch", "currency", err.Error())
	case errors.Is(err, journal.ErrUnknownAccount):
		return notFound("account_not_found", "account_id", "no such account")
	case errors.Is(err, journal.ErrInsufficientFunds):
		return conflict("insufficient_funds", "postings", err.Error())
	case errors.Is(err, journal.ErrOverflow):
		return invalid("amount_overflow", "amount", err.Error())
	case errors.Is(err, journal.ErrIDRequired):
		return invalid(apierr.CodeFieldRequired, "id", "an id (the client id, at most 128 characters) is required")
	case errors.Is(err, journal.ErrPendingShape):
		return invalid("pending_shape", "postings", err.Error())
	case errors.Is(err, journal.ErrPendingNotFound):
		return notFound("pending_not_found", "pending_id", err.Error())
	case errors.Is(err, journal.ErrPendingClosed):
		return conflict("pending_closed", "pending_id", err.Error())
	case errors.Is(err, journal.ErrPendingExpired):
		return conflict("pending_expired", "pending_id", err.Error())
	case errors.Is(err, journal.ErrPostExceedsPending):
		return conflict("amount_exceeds_pending", "postings", err.Error())
	case errors.Is(err, journal.ErrUnknownKind):
		return invalid("kind_unknown", "kind", "kind must be empty, pending, post_pending or void_pending")
	case errors.Is(err, store.ErrNoTransaction):
		return notFound("transaction_not_found", "id", "no such transaction")
	case errors.Is(err, book.ErrMerchantID):
		return invalid("merchant_id_invalid", "merchant_id", err.Error())
	case errors.Is(err, book.ErrPaymentID):
		return invalid("payment_id_invalid", "payment_id", err.Error())
	case errors.Is(err, book.ErrAmount):
		return invalid("amount_invalid", "amount", err.Error())
	case errors.Is(err, book.ErrNotAuthorized):
		return notFound("payment_not_found", "payment_id", err.Error())
	case errors.Is(err, book.ErrAlreadyCaptured):
		return conflict("payment_not_capturable", "payment_id", err.Error())
	case errors.Is(err, book.ErrNotCaptured):
		return conflict("payment_not_captured", "payment_id", err.Error())
	case errors.Is(err, book.ErrRefundExceeds):
		return conflict("refund_exceeds_captured", "amount", err.Error())
	case errors.Is(err, book.ErrPayoutNotFound):
		return notFound("payout_not_found", "id", err.Error())
	case errors.Is(err, book.ErrPayoutClosed):
		return conflict("payout_closed", "status", err.Error())
	}
	var fe *book.FileError
	if errors.As(err, &fe) {
		field := "csv"
		if len(fe.Lines) > 0 {
			field = fmt.Sprintf("csv.line[%d].%s", fe.Lines[0].Line, fe.Lines[0].Field)
		}
		return apierr.New(apierr.KindInvalidArgument, "settlement_file_invalid", field, fe.Error())
	}
	return apierr.StorageUnavailable(err)
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func accountPB(a journal.Account) *ledgerv1.Account {
	return &ledgerv1.Account{Id: a.ID, Currency: a.Currency, NoNegativeAvailable: a.Flags&journal.FlagNoNegativeAvailable != 0, Name: a.Name,
		Posted: a.Balance.Posted, PendingDebits: a.Balance.PendingDebits, PendingCredits: a.Balance.PendingCredits, Available: a.Balance.Available(), CreatedAt: ts(a.CreatedAt)}
}

func txPB(t journal.Transaction, replayed bool) *ledgerv1.Transaction {
	out := &ledgerv1.Transaction{Id: t.ID, Kind: t.Kind, PendingId: t.PendingID, ExpiresAt: ts(t.ExpiresAt), Description: t.Description, Metadata: t.Metadata,
		Seq: t.Seq, Hash: t.Hash, CreatedAt: ts(t.CreatedAt), Replayed: replayed}
	for _, p := range t.Postings {
		out.Postings = append(out.Postings, &ledgerv1.Posting{AccountId: p.AccountID, Amount: p.Amount, Currency: p.Currency})
	}
	return out
}

// CreateAccount opens an account.
func (s *Service) CreateAccount(ctx context.Context, req *ledgerv1.CreateAccountRequest) (*ledgerv1.Account, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if req.GetId() == "" || len(req.GetId()) > 128 {
		return nil, invalid(apierr.CodeFieldRequired, "id", "an account id of at most 128 characters is required")
	}
	cur := strings.ToUpper(req.GetCurrency())
	if !money.Valid(cur) {
		return nil, public(journal.ErrUnknownCurrency)
	}
	flags := 0
	if req.GetNoNegativeAvailable() {
		flags = journal.FlagNoNegativeAvailable
	}
	if cardtext.Contains(req.GetName()) {
		return nil, cardInText("name")
	}
	a, err := s.st.CreateAccount(ctx, journal.Account{ID: req.GetId(), Currency: cur, Flags: flags, Name: req.GetName()})
	if err != nil {
		return nil, public(err)
	}
	return accountPB(a), nil
}

// GetAccount reads an account.
func (s *Service) GetAccount(ctx context.Context, req *ledgerv1.GetAccountRequest) (*ledgerv1.Account, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	a, err := s.st.Account(ctx, req.GetId())
	if err != nil {
		return nil, public(err)
	}
	return accountPB(a), nil
}

// ListEntries pages through an account's postings.
func (s *Service) ListEntries(ctx context.Context, req *ledgerv1.ListEntriesRequest) (*ledgerv1.ListEntriesResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if _, err := s.st.Account(ctx, req.GetAccountId()); err != nil {
		return nil, public(err)
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 1000 {
		size = 100
	}
	var after int64
	if tok := req.GetPageToken(); tok != "" {
		if _, err := fmt.Sscanf(tok, "s%d", &after); err != nil || after < 0 {
			return nil, invalid("page_token_invalid", "page_token", "page_token must be a next_page_token returned by this call")
		}
	}
	es, err := s.st.History(ctx, req.GetAccountId(), after, size+1)
	if err != nil {
		return nil, public(err)
	}
	out := &ledgerv1.ListEntriesResponse{}
	if len(es) > size {
		es = es[:size]
		out.NextPageToken = fmt.Sprintf("s%d", es[len(es)-1].Seq)
	}
	for _, e := range es {
		out.Entries = append(out.Entries, &ledgerv1.Entry{Seq: e.Seq, TransactionId: e.TransactionID, Amount: e.Amount, Currency: e.Currency, CreatedAt: ts(e.CreatedAt)})
	}
	return out, nil
}

// PostTransaction posts a transaction.
func (s *Service) PostTransaction(ctx context.Context, req *ledgerv1.PostTransactionRequest) (*ledgerv1.Transaction, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if err := checkText(req.GetDescription(), req.GetMetadata()); err != nil {
		return nil, err
	}
	t := journal.Transaction{ID: req.GetId(), Kind: req.GetKind(), PendingID: req.GetPendingId(), Description: req.GetDescription(), Metadata: req.GetMetadata()}
	if req.GetExpiresAt() != nil {
		t.ExpiresAt = req.GetExpiresAt().AsTime()
	}
	for _, p := range req.GetPostings() {
		t.Postings = append(t.Postings, journal.Posting{AccountID: p.GetAccountId(), Amount: p.GetAmount(), Currency: strings.ToUpper(p.GetCurrency())})
	}
	r, err := s.st.Post(ctx, t)
	if err != nil {
		return nil, public(err)
	}
	if r.Replayed {
		if full, err := s.st.Transaction(ctx, t.ID); err == nil {
			r.Transaction = full
		}
	}
	return txPB(r.Transaction, r.Replayed), nil
}

// GetTransaction reads a transaction.
func (s *Service) GetTransaction(ctx context.Context, req *ledgerv1.GetTransactionRequest) (*ledgerv1.Transaction, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	t, err := s.st.Transaction(ctx, req.GetId())
	if err != nil {
		return nil, public(err)
	}
	return txPB(t, false), nil
}

// RecordPayment posts a payment state change.
func (s *Service) RecordPayment(ctx context.Context, req *ledgerv1.RecordPaymentRequest) (*ledgerv1.RecordPaymentResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	p := book.Payment{PaymentID: req.GetPaymentId(), MerchantID: req.GetMerchantId(), Currency: strings.ToUpper(req.GetCurrency()), Amount: req.GetAmount(),
		Acquirer: req.GetAcquirer(), AcquirerReference: req.GetAcquirerReference(), RefundID: req.GetRefundId()}
	var r store.Result
	var fee int64
	var err error
	switch req.GetEvent() {
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED:
		r, err = s.book.Authorize(ctx, p)
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED:
		r, fee, err = s.book.Capture(ctx, p)
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED:
		r, err = s.book.Cancel(ctx, p)
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED:
		if p.RefundID == "" {
			return nil, invalid(apierr.CodeFieldRequired, "refund_id", "refund_id is required for a refund")
		}
		r, err = s.book.Refund(ctx, p)
	default:
		return nil, invalid("event_invalid", "event", "event must be AUTHORIZED, CAPTURED, CANCELED or REFUNDED")
	}
	if err != nil {
		return nil, public(err)
	}
	if fee == 0 && req.GetEvent() == ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED && r.Replayed {
		if tot, err := s.book.Totals(ctx, p.PaymentID); err == nil {
			fee = tot.Fee
		}
	}
	return &ledgerv1.RecordPaymentResponse{Transaction: txPB(r.Transaction, r.Replayed), Fee: fee}, nil
}

// GetMerchantBalances reads a merchant's balances.
func (s *Service) GetMerchantBalances(ctx context.Context, req *ledgerv1.GetMerchantBalancesRequest) (*ledgerv1.MerchantBalances, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	b, err := s.book.Balances(ctx, req.GetMerchantId(), strings.ToUpper(req.GetCurrency()))
	if err != nil {
		return nil, public(err)
	}
	return &ledgerv1.MerchantBalances{MerchantId: b.MerchantID, Currency: b.Currency, Pending: b.Pending, Available: b.Available, Reserve: b.Reserve, InTransit: b.InTransit, Held: b.Held}, nil
}

func payoutPB(p book.Payout) *ledgerv1.Payout {
	return &ledgerv1.Payout{Id: p.ID, MerchantId: p.MerchantID, Currency: p.Currency, Amount: p.Amount, Status: p.Status, Batch: p.Batch, CreatedAt: ts(p.CreatedAt)}
}

func parseBatch(field, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		return d, invalid("date_invalid", field, "must be a date, YYYY-MM-DD")
	}
	return d, nil
}

// RunPayouts runs the payout schedule for a date.
func (s *Service) RunPayouts(ctx context.Context, req *ledgerv1.RunPayoutsRequest) (*ledgerv1.RunPayoutsResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	d, err := parseBatch("date", req.GetDate(), time.Time{})
	if err != nil {
		return nil, err
	}
	if !d.IsZero() {
		// A run for a date sees the end of that day.
		d = d.Add(24*time.Hour - time.Microsecond)
		if now := time.Now(); d.After(now) {
			d = now
		}
	}
	rep, err := s.book.RunPayouts(ctx, book.RunOptions{Date: d, Merchant: req.GetMerchantId()})
	if err != nil {
		return nil, public(err)
	}
	out := &ledgerv1.RunPayoutsResponse{Batch: rep.Batch, Skipped: rep.Skipped}
	for _, r := range rep.Released {
		out.Released = append(out.Released, &ledgerv1.Release{MerchantId: r.MerchantID, Currency: r.Currency, Amount: r.Amount, Reserved: r.Reserved, FromReserve: r.FromReserve})
	}
	for _, p := range rep.Payouts {
		out.Payouts = append(out.Payouts, payoutPB(p))
	}
	return out, nil
}

// ListPayouts lists a batch.
func (s *Service) ListPayouts(ctx context.Context, req *ledgerv1.ListPayoutsRequest) (*ledgerv1.ListPayoutsResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	d, err := parseBatch("batch", req.GetBatch(), time.Now().UTC())
	if err != nil {
		return nil, err
	}
	ps, err := s.book.Payouts(ctx, d.Format("2006-01-02"))
	if err != nil {
		return nil, public(err)
	}
	out := &ledgerv1.ListPayoutsResponse{}
	for _, p := range ps {
		out.Payouts = append(out.Payouts, payoutPB(p))
	}
	if req.GetCsv() {
		var b strings.Builder
		if err := book.WritePayoutsCSV(&b, ps); err != nil {
			return nil, public(err)
		}
		out.Csv = b.String()
	}
	return out, nil
}

// GetPayout reads a payout.
func (s *Service) GetPayout(ctx context.Context, req *ledgerv1.GetPayoutRequest) (*ledgerv1.Payout, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	p, err := s.book.Payout(ctx, req.GetId())
	if err != nil {
		return nil, public(err)
	}
	return payoutPB(p), nil
}

// UpdatePayout marks a payout paid or failed.
func (s *Service) UpdatePayout(ctx context.Context, req *ledgerv1.UpdatePayoutRequest) (*ledgerv1.Payout, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if st := req.GetStatus(); st != book.PayoutPaid && st != book.PayoutFailed {
		return nil, invalid("status_invalid", "status", "status must be paid or failed")
	}
	p, err := s.book.MarkPayout(ctx, req.GetId(), req.GetStatus())
	if err != nil {
		return nil, public(err)
	}
	return payoutPB(p), nil
}

// ImportSettlement reconciles a settlement report.
func (s *Service) ImportSettlement(ctx context.Context, req *ledgerv1.ImportSettlementRequest) (*ledgerv1.SettlementReport, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if req.GetAcquirer() == "" {
		return nil, invalid(apierr.CodeFieldRequired, "acquirer", "acquirer is required (e.g. simulator)")
	}
	cur := strings.ToUpper(req.GetCurrency())
	if cur != "" && !money.Valid(cur) {
		return nil, public(journal.ErrUnknownCurrency)
	}
	lines, err := book.ParseSettlement(strings.NewReader(req.GetCsv()), cur)
	if err != nil {
		return nil, public(err)
	}
	rep, err := s.book.ImportSettlement(ctx, req.GetAcquirer(), lines)
	if err != nil {
		return nil, public(err)
	}
	out := &ledgerv1.SettlementReport{Lines: int32(rep.Lines), Matched: int32(rep.Matched), AlreadyPosted: int32(rep.Replayed), Unmatched: int32(rep.Unmatched),
		Mismatched: int32(rep.Mismatched), SettledGross: rep.SettledGross, SettledFees: rep.SettledFees, ChargebackGross: rep.ChargebackGross}
	for _, r := range rep.Results {
		out.Results = append(out.Results, &ledgerv1.SettlementLine{Line: int32(r.Line), AcquirerReference: r.Reference, Amount: r.Amount, Fee: r.Fee, Currency: r.Currency,
			SettledDate: r.Date, Type: r.Type, Outcome: r.Outcome, PaymentId: r.PaymentID, Reason: r.Reason, DisputeId: r.DisputeID})
	}
	return out, nil
}

// Verify checks the journal.
func (s *Service) Verify(ctx context.Context, _ *ledgerv1.VerifyRequest) (*ledgerv1.VerifyResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	rep, err := s.st.Verify(ctx)
	if err != nil {
		return nil, public(err)
	}
	return &ledgerv1.VerifyResponse{Transactions: rep.Transactions, Accounts: rep.Accounts, Problems: rep.Problems}, nil
}

// cardInText: the ledger stores and returns its free text, and never holds a
// card number.
func cardInText(field string) error {
	return invalid("card_number_in_text", field, field+" looks like it contains a card number; the ledger never holds card data")
}

// checkText reads a description and metadata as a whole (see
// cardtext.ContainsMetadata: values, keys, and both interleaved in key
// order, after the description).
func checkText(description string, md map[string]string) error {
	switch {
	case cardtext.Contains(description):
		return cardInText("description")
	case cardtext.ContainsMetadata(description, md):
		return cardInText("metadata")
	}
	return nil
}
