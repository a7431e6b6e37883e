package payments

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/idemkey"
	"github.com/obolpay/obol/internal/money"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/connector"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// Config wires the service to the other Obol services.
type Config struct {
	Store       *Store
	Vault       vaultv1.VaultServiceClient // over mTLS with the gateway identity
	Risk        riskv1.RiskServiceClient
	RiskToken   string
	Ledger      ledgerv1.LedgerServiceClient
	LedgerToken string
	Connectors  map[string]connector.Connector
	// DefaultAcquirer is used when a request names none and the merchant
	// has none in MerchantAcquirers (default simulator).
	DefaultAcquirer   string
	MerchantAcquirers map[string]string
	// CallTimeout bounds each call to vaultd, riskd and ledgerd (default 5 s).
	CallTimeout time.Duration
	// ProcessingTimeout is how long a payment may stay processing before
	// the sweeper reverses it (default 2 minutes: longer than any request).
	ProcessingTimeout time.Duration
	Logger            *slog.Logger
	Now               func() time.Time
}

// Service implements gatewayv1.PaymentServiceServer.
type Service struct {
	gatewayv1.UnimplementedPaymentServiceServer
	cfg    Config
	authMu sync.Mutex
	auth   map[string]authEntry
	// locks serialise changes to one payment in this process (an entry
	// lives only while someone holds or waits for it); the store's version
	// check covers other processes.
	locksMu sync.Mutex
	locks   map[string]*paymentLock
}

type authEntry struct {
	merchant string
	expires  time.Time
}

var _ gatewayv1.PaymentServiceServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.DefaultAcquirer == "" {
		cfg.DefaultAcquirer = "simulator"
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.ProcessingTimeout <= 0 {
		cfg.ProcessingTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, auth: map[string]authEntry{}, locks: map[string]*paymentLock{}}
}

// Typed errors of the gateway.
var (
	errRiskUnavailable   = apierr.New(apierr.KindUnavailable, "risk_unavailable", "", "the risk engine is unavailable; nothing was charged, retry later")
	errLedgerUnavailable = apierr.New(apierr.KindUnavailable, "ledger_unavailable", "", "the ledger is unavailable; nothing was charged, retry later")
	errVaultUnavailable  = apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault is unavailable; nothing was charged, retry later")
	errStoreUnavailable  = apierr.New(apierr.KindUnavailable, apierr.CodeStorageUnavailable, "", "the gateway's database is unavailable; retry later")
	errNotFound          = apierr.New(apierr.KindNotFound, "payment_not_found", "id", "no such payment")
	errConcurrent        = apierr.New(apierr.KindConflict, "payment_busy", "id", "another request is changing this payment; retry")
)

func conflict(code, field, msg string) error {
	return apierr.New(apierr.KindFailedPrecondition, code, field, msg)
}

func firstMD(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// merchant authenticates the caller's secret key through vaultd (cached
// for 10 s, like vaultd's own cache).
func (s *Service) merchant(ctx context.Context) (string, error) {
	return s.Authenticate(ctx, firstMD(ctx, "authorization"))
}

// Authenticate checks a merchant's Authorization header value with vaultd
// (cached for 10 s) and returns the merchant id.
func (s *Service) Authenticate(ctx context.Context, authz string) (string, error) {
	if authz == "" {
		return "", apierr.ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(authz))
	key := string(sum[:])
	now := s.cfg.Now()
	s.authMu.Lock()
	e, ok := s.auth[key]
	s.authMu.Unlock()
	if ok && now.Before(e.expires) {
		return e.merchant, nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.cfg.Vault.AuthenticateMerchant(cctx, &vaultv1.AuthenticateMerchantRequest{Authorization: authz})
	if err != nil {
		if unavailable(err) {
			return "", errVaultUnavailable
		}
		return "", apierr.From(err)
	}
	s.authMu.Lock()
	if len(s.auth) > 10_000 {
		clear(s.auth)
	}
	s.auth[key] = authEntry{merchant: resp.GetMerchantId(), expires: now.Add(10 * time.Second)}
	s.authMu.Unlock()
	return resp.GetMerchantId(), nil
}

func unavailable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func (s *Service) riskCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+s.cfg.RiskToken)), cancel
}

// ledgerCtx is detached from the caller: once the acquirer has acted, the
// ledger must hear of it even if the merchant hangs up.
func (s *Service) ledgerCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+s.cfg.LedgerToken)), cancel
}

// record posts a payment event to the ledger, retrying briefly: every event
// has a deterministic id, so retries are safe.
func (s *Service) record(ctx context.Context, ev ledgerv1.PaymentEvent, p *Payment, amount int64, refundID string) (*ledgerv1.RecordPaymentResponse, error) {
	req := &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: p.ID, MerchantId: p.MerchantID, Currency: p.Currency, Amount: amount,
		Acquirer: p.Acquirer, AcquirerReference: p.AcquirerReference, RefundId: refundID}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		lctx, cancel := s.ledgerCtx(ctx)
		var resp *ledgerv1.RecordPaymentResponse
		resp, err = s.cfg.Ledger.RecordPayment(lctx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !unavailable(err) {
			return nil, err
		}
	}
	return nil, err
}

func recordKey(req *ledgerv1.RecordPaymentRequest) string {
	return req.GetEvent().String() + ":" + req.GetPaymentId() + ":" + req.GetRefundId()
}

// recordAfter records an event the acquirer has already acted on: if the
// ledger cannot take it now, it waits in the outbox for the sweeper, and
// the payment goes on (the acquirer's outcome is the truth).
func (s *Service) recordAfter(ctx context.Context, ev ledgerv1.PaymentEvent, p *Payment, amount int64, refundID string) *ledgerv1.RecordPaymentResponse {
	r, err := s.record(ctx, ev, p, amount, refundID)
	if err == nil {
		return r
	}
	req := &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: p.ID, MerchantId: p.MerchantID, Currency: p.Currency, Amount: amount,
		Acquirer: p.Acquirer, AcquirerReference: p.AcquirerReference, RefundId: refundID}
	b, _ := protojson.Marshal(req)
	if oerr := s.cfg.Store.AddOutbox(context.WithoutCancel(ctx), recordKey(req), p.ID, string(b), s.cfg.Now()); oerr != nil {
		s.cfg.Logger.Error("ledger event lost: neither the ledger nor the outbox took it; reconcile by payment id", "payment", p.ID, "event", ev.String(), "err", apierr.From(err).Code)
		return nil
	}
	s.cfg.Logger.Warn("ledger event queued in the outbox", "payment", p.ID, "event", ev.String(), "err", apierr.From(err).Code)
	return nil
}

func newID(prefix string) string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// idempotent runs a write once per (merchant, Idempotency-Key): a retry
// with the same body gets the first payment back; another body is a 409.
func (s *Service) idempotent(ctx context.Context, merchant, op string, req proto.Message, fn func(key string) (*Payment, error)) (*gatewayv1.Payment, error) {
	k, err := idemkey.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	if k.IsZero() {
		p, err := fn("")
		if err != nil {
			return nil, err
		}
		return toPB(p), nil
	}
	// The record is stored under a hash of the key, never the key itself;
	// fn derives the payment id (itself a hash) from the key as sent, so a
	// retry resumes the same payment at the acquirer.
	key := k.Storage("gateway:secret")
	body, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	sum := sha256.Sum256(append([]byte(op+"\x00"), body...))
	hash := hex.EncodeToString(sum[:])
	prev, err := s.cfg.Store.BeginIdempotent(ctx, merchant, key, hash, s.cfg.Now())
	switch {
	case errors.Is(err, ErrIdemReused):
		return nil, apierr.ErrIdempotencyKeyReused
	case errors.Is(err, ErrIdemInProgress):
		return nil, apierr.ErrIdempotencyInProgress
	case err != nil:
		return nil, errStoreUnavailable
	case prev != "":
		out := &gatewayv1.Payment{}
		if err := protojson.Unmarshal([]byte(prev), out); err != nil {
			return nil, apierr.From(err)
		}
		return out, nil
	}
	p, err := fn(k.Raw())
	if err != nil {
		// The key is free for a retry: either nothing durable happened
		// (typed refusals, outages before the acquirer), or the retry
		// resumes the same payment (its id derives from the key, and every
		// acquirer and ledger call carries a key derived from that id).
		_ = s.cfg.Store.ReleaseIdempotent(context.WithoutCancel(ctx), merchant, key)
		return nil, err
	}
	out := toPB(p)
	b, _ := protojson.Marshal(out)
	if err := s.cfg.Store.FinishIdempotent(context.WithoutCancel(ctx), merchant, key, string(b)); err != nil {
		s.cfg.Logger.Error("idempotency record not finished", "payment", p.ID, "err", err)
	}
	return out, nil
}

func validAmount(field string, a int64) error {
	if a <= 0 {
		return apierr.Invalid("amount_invalid", field, "amount must be a positive integer in minor units")
	}
	return nil
}

// CreatePayment runs the payment flow.
func (s *Service) CreatePayment(ctx context.Context, req *gatewayv1.CreatePaymentRequest) (*gatewayv1.Payment, error) {
	merchant, err := s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	cur := strings.ToUpper(req.GetCurrency())
	acq := req.GetAcquirer()
	if acq == "" {
		acq = s.cfg.MerchantAcquirers[merchant]
	}
	if acq == "" {
		acq = s.cfg.DefaultAcquirer
	}
	conn, ok := s.cfg.Connectors[acq]
	switch {
	case req.GetToken() == "":
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "token", "token is required (tok_…)")
	case validAmount("amount", req.GetAmount()) != nil:
		return nil, validAmount("amount", req.GetAmount())
	case req.GetCurrency() == "":
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "currency", "currency is required (ISO 4217, e.g. USD)")
	case !money.Valid(cur):
		return nil, apierr.Invalid("currency_unknown", "currency", "currency must be an active ISO 4217 code, e.g. USD")
	case !ok:
		return nil, apierr.Invalid("acquirer_unknown", "acquirer", "unknown acquirer connector")
	case len(req.GetMetadata()) > 50:
		return nil, apierr.Invalid("metadata_too_large", "metadata", "at most 50 metadata keys")
	}
	// Free text is stored and returned: it may not carry a card number.
	if err := checkPaymentText(req); err != nil {
		return nil, err
	}
	return s.idempotent(ctx, merchant, "create", req, func(key string) (*Payment, error) {
		return s.create(ctx, merchant, cur, conn, key, req)
	})
}

// paymentID is random, or derived from the merchant's Idempotency-Key so
// that a retry after a failure resumes the same payment: the acquirer and
// the ledger then see the same idempotency keys and replay, never charge
// twice.
func paymentID(merchant, idemKey string) string {
	if idemKey == "" {
		return newID("pay_")
	}
	sum := sha256.Sum256([]byte("obol payment id\x00" + merchant + "\x00" + idemKey))
	return "pay_" + base64.RawURLEncoding.EncodeToString(sum[:15])
}

func (s *Service) create(ctx context.Context, merchant, cur string, conn connector.Connector, idemKey string, req *gatewayv1.CreatePaymentRequest) (*Payment, error) {
	now := s.cfg.Now().UTC()
	p := &Payment{ID: paymentID(merchant, idemKey), MerchantID: merchant, Amount: req.GetAmount(), Currency: cur, Token: req.GetToken(), Acquirer: conn.Name(),
		Description: req.GetDescription(), Metadata: req.GetMetadata(), CreatedAt: now, UpdatedAt: now, Version: 1}
	defer s.lock(p.ID)()
	resume := false
	if idemKey != "" {
		prev, err := s.cfg.Store.Get(ctx, merchant, p.ID)
		switch {
		case err == nil && prev.Status != StatusProcessing:
			return prev, nil // finished, but its idempotency record was not
		case err == nil:
			p, resume = prev, true
		case !errors.Is(err, ErrNotFound):
			return nil, errStoreUnavailable
		}
	}
	if !resume {
		if err := s.prepare(ctx, p, req); err != nil {
			return nil, err
		}
		if p.Status == StatusDeclined {
			return p, nil
		}
	}

	release := func() {
		if _, err := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""); err != nil && status.Code(err) != codes.NotFound {
			s.cfg.Logger.Error("ledger hold not released (it expires on its own)", "payment", p.ID, "err", apierr.From(err).Code)
		}
	}
	// undo leaves nothing behind when the acquirer was never called: the
	// hold is released and the processing row removed (a retry with the
	// same Idempotency-Key starts afresh; the sweeper covers a failed undo).
	undo := func(err error) (*Payment, error) {
		release()
		if derr := s.cfg.Store.DeleteProcessing(context.WithoutCancel(ctx), p.MerchantID, p.ID); derr != nil {
			s.cfg.Logger.Warn("processing payment not removed; the sweeper resolves it", "payment", p.ID, "err", derr)
		}
		return nil, err
	}

	// Hold the amount first: if the payment cannot be recorded, the
	// acquirer is never called.
	if _, err := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, p, p.Amount, ""); err != nil {
		if unavailable(err) {
			return undo(errLedgerUnavailable)
		}
		return undo(apierr.From(err))
	}

	// Reveal, send, wipe.
	res, err := s.authorize(ctx, conn, p, req.GetCapture())
	if err != nil {
		return undo(err)
	}
	switch {
	case res.failure != "":
		release()
		p.Status, p.DeclineCode = StatusFailed, res.failure
	case !res.auth.Approved:
		release()
		p.Status, p.DeclineCode, p.AcquirerReference = StatusDeclined, res.auth.DeclineCode, res.auth.Reference
	default:
		p.Status, p.AcquirerReference = StatusAuthorized, res.auth.Reference
		if req.GetCapture() {
			p.AmountCaptured, p.Status = p.Amount, StatusCaptured
		}
	}
	p.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.Update(ctx, p); err != nil {
		// The acquirer acted. A retry with the same Idempotency-Key resumes
		// (and replays); otherwise the sweeper reverses it and releases the
		// hold (the ledger has nothing else for it yet).
		s.cfg.Logger.Error("payment not stored", "payment", p.ID, "status", p.Status, "err", err)
		return nil, errStoreUnavailable
	}
	// The capture goes to the ledger once the payment is final, so that an
	// abandoned payment never has a capture to undo.
	if p.Status == StatusCaptured {
		if r := s.recordAfter(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, p, p.Amount, ""); r != nil && r.GetFee() != 0 {
			p.Fee = r.GetFee()
			if err := s.cfg.Store.SetFee(ctx, p.ID, p.Fee); err != nil {
				s.cfg.Logger.Warn("fee not stored on the payment (the ledger has it)", "payment", p.ID, "err", err)
			}
		}
	}
	return p, nil
}

// prepare reads the card's metadata, asks riskd, and stores the payment as
// processing (or declined by risk).
func (s *Service) prepare(ctx context.Context, p *Payment, req *gatewayv1.CreatePaymentRequest) error {
	// Card metadata, as the merchant (the token must be theirs).
	vctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	vctx = metadata.NewOutgoingContext(vctx, metadata.Pairs("authorization", firstMD(ctx, "authorization")))
	tok, err := s.cfg.Vault.GetToken(vctx, &vaultv1.GetTokenRequest{Token: req.GetToken()})
	cancel()
	if err != nil {
		if unavailable(err) {
			return errVaultUnavailable
		}
		e := apierr.From(err)
		if e.Field == "token" || e.Kind == apierr.KindNotFound {
			e = apierr.New(e.Kind, e.Code, "token", e.Message)
		}
		return e
	}
	c := tok.GetCard()
	p.Card = Card{Brand: c.GetBrand(), Last4: c.GetLast4(), Fingerprint: c.GetFingerprint()}

	// Risk, PAN-free.
	rctx, rcancel := s.riskCtx(ctx)
	dec, err := s.cfg.Risk.Evaluate(rctx, &riskv1.EvaluateRequest{Payment: &riskv1.Payment{MerchantId: p.MerchantID, Amount: p.Amount, Currency: p.Currency, Token: p.Token,
		Bin: c.GetBin(), Brand: c.GetBrand(), Fingerprint: c.GetFingerprint(), CustomerIp: req.GetCustomerIp(), BillingCountry: req.GetBillingCountry(),
		EmailHash: req.GetEmailHash(), DeviceId: req.GetDeviceId()}})
	rcancel()
	if err != nil {
		if unavailable(err) {
			return errRiskUnavailable
		}
		return apierr.From(err)
	}
	p.Risk = Risk{Decision: dec.GetAction(), Score: dec.GetScore(), RuleSetVersion: dec.GetRulesetVersion(), Fallback: dec.GetFallback()}
	for _, r := range dec.GetRules() {
		p.Risk.Rules = append(p.Risk.Rules, r.GetName())
	}
	p.Status = StatusProcessing
	if dec.GetAction() == "block" {
		p.Status, p.DeclineCode = StatusDeclined, CodeRiskBlocked
	}
	if err := s.cfg.Store.Insert(ctx, p); err != nil {
		return errStoreUnavailable
	}
	return nil
}

type authOutcome struct {
	auth    connector.AuthResult
	failure string
}

// authorize reveals the card from vaultd and sends it to the acquirer. An
// error means nothing reached the acquirer.
func (s *Service) authorize(ctx context.Context, conn connector.Connector, p *Payment, capture bool) (authOutcome, error) {
	rcpt, err := revealbox.NewRecipient()
	if err != nil {
		return authOutcome{}, apierr.From(err)
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	rev, err := s.cfg.Vault.Detokenize(vctx, &vaultv1.DetokenizeRequest{MerchantId: p.MerchantID, Token: p.Token, IncludeCvc: true, Purpose: "payment " + p.ID,
		DestinationHost: conn.Host(), RecipientPublicKey: rcpt.PublicKey()})
	cancel()
	if err != nil {
		if unavailable(err) {
			return authOutcome{}, errVaultUnavailable
		}
		return authOutcome{}, apierr.From(err)
	}
	plain, err := rcpt.Open(rev.GetSealedCard(), revealbox.AAD(p.MerchantID, p.Token))
	if err != nil {
		return authOutcome{}, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	c, err := card.Decode(plain)
	card.WipeBytes(plain)
	if err != nil {
		return authOutcome{}, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	res, err := conn.Authorize(ctx, connector.AuthRequest{PaymentID: p.ID, Amount: p.Amount, Currency: p.Currency, Capture: capture, Card: c, IdempotencyKey: "auth:" + p.ID})
	c.Number.Wipe()
	c.CVC.Wipe()
	switch {
	case errors.Is(err, connector.ErrTimeout):
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
		if rerr := conn.Reverse(rctx, p.ID); rerr != nil {
			s.cfg.Logger.Error("reversal after timeout failed", "payment", p.ID, "acquirer", conn.Name(), "err", rerr)
		}
		cancel()
		return authOutcome{failure: CodeAcquirerTimeout}, nil
	case errors.Is(err, connector.ErrUnavailable):
		return authOutcome{failure: CodeAcquirerUnavailable}, nil
	case err != nil:
		s.cfg.Logger.Error("acquirer refused the authorization", "payment", p.ID, "acquirer", conn.Name(), "err", err)
		return authOutcome{failure: CodeAcquirerUnavailable}, nil
	}
	// Acquirer text is stored and returned: only clean codes and ids.
	res.DeclineCode = connector.Code(res.DeclineCode)
	if err := connector.Reference(res.Reference); err != nil {
		if !res.Approved {
			res.Reference = ""
			return authOutcome{auth: res}, nil
		}
		s.cfg.Logger.Error("acquirer approved with an unusable reference; reversing", "payment", p.ID, "acquirer", conn.Name())
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
		if rerr := conn.Reverse(rctx, p.ID); rerr != nil {
			s.cfg.Logger.Error("reversal failed", "payment", p.ID, "acquirer", conn.Name(), "err", rerr)
		}
		cancel()
		return authOutcome{failure: CodeAcquirerUnavailable}, nil
	}
	return authOutcome{auth: res}, nil
}

type paymentLock struct {
	sync.Mutex
	refs int
}

func (s *Service) lock(id string) func() {
	s.locksMu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &paymentLock{}
		s.locks[id] = l
	}
	l.refs++
	s.locksMu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.locksMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, id)
		}
		s.locksMu.Unlock()
	}
}

// change loads a payment under its lock, applies fn and stores the result.
// Once the acquirer has acted, the ledger event is recorded, or queued in
// the outbox when ledgerd is unreachable (so capture, cancel and refund do
// not wait on a ledger round trip first).
func (s *Service) change(ctx context.Context, op, id string, req proto.Message, fn func(p *Payment, conn connector.Connector) error) (*gatewayv1.Payment, error) {
	merchant, err := s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	return s.idempotent(ctx, merchant, op, req, func(string) (*Payment, error) {
		defer s.lock(id)()
		p, err := s.cfg.Store.Get(ctx, merchant, id)
		if errors.Is(err, ErrNotFound) {
			return nil, errNotFound
		}
		if err != nil {
			return nil, errStoreUnavailable
		}
		conn := s.cfg.Connectors[p.Acquirer]
		if conn == nil {
			return nil, apierr.New(apierr.KindUnavailable, "acquirer_unavailable", "", "the payment's acquirer connector is not configured")
		}
		if err := fn(p, conn); err != nil {
			return nil, err
		}
		p.UpdatedAt = s.cfg.Now().UTC()
		if err := s.cfg.Store.Update(ctx, p); err != nil {
			if errors.Is(err, ErrConcurrentUpdate) {
				return nil, errConcurrent
			}
			s.cfg.Logger.Error("payment update not stored", "payment", p.ID, "status", p.Status, "err", err)
			return nil, errStoreUnavailable
		}
		return p, nil
	})
}

func acquirerError(err error) error {
	switch {
	case errors.Is(err, connector.ErrTimeout):
		return apierr.New(apierr.KindUnavailable, CodeAcquirerTimeout, "", "the acquirer did not answer in time; retry with the same Idempotency-Key")
	case errors.Is(err, connector.ErrUnavailable):
		return apierr.New(apierr.KindUnavailable, CodeAcquirerUnavailable, "", "the acquirer is unavailable; retry with the same Idempotency-Key")
	}
	return conflict("acquirer_refused", "", "the acquirer refused the operation")
}

// CapturePayment captures an authorization once.
func (s *Service) CapturePayment(ctx context.Context, req *gatewayv1.CapturePaymentRequest) (*gatewayv1.Payment, error) {
	if req.GetAmount() < 0 {
		return nil, validAmount("amount", req.GetAmount())
	}
	return s.change(ctx, "capture", req.GetId(), req, func(p *Payment, conn connector.Connector) error {
		amount := req.GetAmount()
		if amount == 0 {
			amount = p.Amount
		}
		switch {
		case p.Status != StatusAuthorized:
			return conflict("payment_not_capturable", "id", "only an authorized payment can be captured, once; this one is "+p.Status)
		case amount > p.Amount:
			return conflict("capture_exceeds_authorization", "amount", "the capture exceeds the authorized amount ("+strconv.FormatInt(p.Amount, 10)+")")
		}
		if err := conn.Capture(ctx, p.AcquirerReference, amount, "capture:"+p.ID); err != nil {
			return acquirerError(err)
		}
		p.Status, p.AmountCaptured = StatusCaptured, amount
		if r := s.recordAfter(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, p, amount, ""); r != nil {
			p.Fee = r.GetFee()
		}
		return nil
	})
}

// CancelPayment voids an authorization.
func (s *Service) CancelPayment(ctx context.Context, req *gatewayv1.CancelPaymentRequest) (*gatewayv1.Payment, error) {
	return s.change(ctx, "cancel", req.GetId(), req, func(p *Payment, conn connector.Connector) error {
		if p.Status != StatusAuthorized {
			return conflict("payment_not_cancelable", "id", "only an authorized, uncaptured payment can be canceled; this one is "+p.Status)
		}
		if err := conn.Cancel(ctx, p.AcquirerReference, "cancel:"+p.ID); err != nil {
			return acquirerError(err)
		}
		p.Status = StatusCanceled
		s.recordAfter(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, "")
		return nil
	})
}

// RefundPayment refunds part of a capture.
func (s *Service) RefundPayment(ctx context.Context, req *gatewayv1.RefundPaymentRequest) (*gatewayv1.Payment, error) {
	if req.GetAmount() < 0 {
		return nil, validAmount("amount", req.GetAmount())
	}
	if err := checkRefundText(req); err != nil {
		return nil, err
	}
	return s.change(ctx, "refund", req.GetId(), req, func(p *Payment, conn connector.Connector) error {
		left := p.AmountCaptured - p.AmountRefunded
		amount := req.GetAmount()
		if amount == 0 {
			amount = left
		}
		switch {
		case p.Status != StatusCaptured && p.Status != StatusPartiallyRefunded:
			return conflict("payment_not_refundable", "id", "only a captured payment can be refunded; this one is "+p.Status)
		case amount > left:
			return conflict("refund_exceeds_captured", "amount", "refunds cannot exceed the captured amount ("+strconv.FormatInt(left, 10)+" left)")
		}
		refundID := "re_" + strconv.Itoa(len(p.Refunds)+1)
		if err := conn.Refund(ctx, p.AcquirerReference, amount, "refund:"+p.ID+":"+refundID); err != nil {
			return acquirerError(err)
		}
		p.Refunds = append(p.Refunds, Refund{ID: refundID, Amount: amount, Reason: req.GetReason(), CreatedAt: s.cfg.Now().UTC()})
		p.AmountRefunded += amount
		p.Status = StatusPartiallyRefunded
		if p.AmountRefunded == p.AmountCaptured {
			p.Status = StatusRefunded
		}
		s.recordAfter(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, p, amount, refundID)
		return nil
	})
}

// GetPayment reads a payment.
func (s *Service) GetPayment(ctx context.Context, req *gatewayv1.GetPaymentRequest) (*gatewayv1.Payment, error) {
	merchant, err := s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Store.Get(ctx, merchant, req.GetId())
	if errors.Is(err, ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, errStoreUnavailable
	}
	return toPB(p), nil
}

var validStatus = map[string]bool{StatusProcessing: true, StatusAuthorized: true, StatusCaptured: true, StatusPartiallyRefunded: true, StatusRefunded: true, StatusCanceled: true, StatusDeclined: true, StatusFailed: true}

// ListPayments lists payments, newest first, with a cursor.
func (s *Service) ListPayments(ctx context.Context, req *gatewayv1.ListPaymentsRequest) (*gatewayv1.ListPaymentsResponse, error) {
	merchant, err := s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	f := ListFilter{Status: req.GetStatus(), Limit: int(req.GetPageSize())}
	if f.Status != "" && !validStatus[f.Status] {
		return nil, apierr.Invalid("status_invalid", "status", "unknown payment status")
	}
	if f.Limit <= 0 || f.Limit > 100 {
		f.Limit = 20
	}
	if req.GetCreatedAfter() != nil {
		f.After = req.GetCreatedAfter().AsTime()
	}
	if req.GetCreatedBefore() != nil {
		f.Before = req.GetCreatedBefore().AsTime()
	}
	if tok := req.GetPageToken(); tok != "" {
		at, id, ok := strings.Cut(tok, ".")
		n, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || !strings.HasPrefix(id, "pay_") {
			return nil, apierr.Invalid("page_token_invalid", "page_token", "page_token must be a next_page_token returned by this call")
		}
		f.CursorAt, f.CursorID = n, id
	}
	lim := f.Limit
	f.Limit++
	ps, err := s.cfg.Store.List(ctx, merchant, f)
	if err != nil {
		return nil, errStoreUnavailable
	}
	out := &gatewayv1.ListPaymentsResponse{}
	if len(ps) > lim {
		ps = ps[:lim]
		last := ps[len(ps)-1]
		out.NextPageToken = strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + last.ID
	}
	for _, p := range ps {
		out.Payments = append(out.Payments, toPB(p))
	}
	return out, nil
}

func toPB(p *Payment) *gatewayv1.Payment {
	out := &gatewayv1.Payment{Id: p.ID, Status: p.Status, Amount: p.Amount, AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, Currency: p.Currency,
		Card:        &gatewayv1.Card{Brand: p.Card.Brand, Last4: p.Card.Last4, Fingerprint: p.Card.Fingerprint},
		Risk:        &gatewayv1.Risk{Decision: p.Risk.Decision, Score: p.Risk.Score, Rules: p.Risk.Rules, RuleSetVersion: p.Risk.RuleSetVersion, Fallback: p.Risk.Fallback},
		Acquirer:    &gatewayv1.Acquirer{Name: p.Acquirer, Reference: p.AcquirerReference},
		DeclineCode: p.DeclineCode, Description: p.Description, Metadata: p.Metadata, Fee: p.Fee,
		CreatedAt: timestamppb.New(p.CreatedAt), UpdatedAt: timestamppb.New(p.UpdatedAt)}
	for _, r := range p.Refunds {
		out.Refunds = append(out.Refunds, &gatewayv1.Refund{Id: r.ID, Amount: r.Amount, Reason: r.Reason, CreatedAt: timestamppb.New(r.CreatedAt)})
	}
	return out
}
