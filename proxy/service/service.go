package service

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
	Store       Store
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
	// LeaseTTL is how long an idempotency claim blocks retries without
	// being renewed (default 10 s); its holder renews it every LeaseRenew
	// (default 2 s) while it works. A retry takes over an expired claim,
	// so a crashed process locks a key for LeaseTTL at most.
	LeaseTTL   time.Duration
	LeaseRenew time.Duration
	// NewTicker makes the renewal ticker (tests inject one; default
	// time.NewTicker).
	NewTicker func(time.Duration) (<-chan time.Time, func())
	Logger    *slog.Logger
	Now       func() time.Time
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
	// owner names this instance in idempotency leases.
	owner string
	// inflight counts write requests and compensations still running
	// (Drain waits for them at shutdown).
	inflight tracker
	metrics  *metrics
	// keys is the recipient key sent with each reveal, renewed every
	// revealbox.DefaultLifetime: vaultd's sealing agreement with it, and
	// ours with vaultd's sealing key, are then made once per lifetime
	// instead of three X25519 operations per authorization. Each reveal's
	// nonce binds its box to it (revealbox.RequestAAD), so a box cannot be
	// handed to another payment while the key serves.
	keys *revealbox.Keyring
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
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.LeaseRenew <= 0 {
		cfg.LeaseRenew = 2 * time.Second
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	return &Service{cfg: cfg, auth: map[string]authEntry{}, locks: map[string]*paymentLock{}, owner: newID("gw_"), metrics: newMetrics(),
		keys: revealbox.NewKeyring(revealbox.DefaultLifetime, cfg.Now)}
}

// Drain waits until the write requests and compensations in flight have
// finished, or ctx ends. Call it after the servers stopped accepting and
// before the clients to vaultd, riskd and ledgerd are closed.
func (s *Service) Drain(ctx context.Context) error {
	return s.inflight.wait(ctx)
}

// tracker counts work in flight.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (t *tracker) Add(int) {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) Done() {
	t.mu.Lock()
	if t.n--; t.n == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Typed errors of the gateway.
var (
	errRiskUnavailable   = apierr.New(apierr.KindUnavailable, "risk_unavailable", "", "the risk engine is unavailable; nothing was charged, retry later")
	errLedgerUnavailable = apierr.New(apierr.KindUnavailable, "ledger_unavailable", "", "the ledger is unavailable; nothing was charged, retry later")
	errVaultUnavailable  = apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault is unavailable; nothing was charged, retry later")
	// errRevealRefused: vaultd answered, but its sealed card was not
	// bound to this request or did not open (revealbox.ErrUnbound,
	// ErrOpen). The same code as errVaultUnavailable; the message says
	// that the reveal happened, so that a CVC it took is used up.
	errRevealRefused    = apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault's answer was refused (the gateway logged why: reveal refused); nothing was charged. A CVC held for the card was used up by the reveal: a retry goes without it")
	errStoreUnavailable = apierr.New(apierr.KindUnavailable, apierr.CodeStorageUnavailable, "", "the gateway's database is unavailable; retry later")
	errNotFound         = apierr.New(apierr.KindNotFound, "payment_not_found", "id", "no such payment")
	// errAcquirerInProgress: the acquirer is still processing a request
	// with the same idempotency key (another gateway process sent it); the
	// operation stays processing and a retry replays its outcome.
	errAcquirerInProgress = apierr.New(apierr.KindUnavailable, "acquirer_in_progress", "", "the acquirer is still processing this request; retry with the same Idempotency-Key")
	errConcurrent         = apierr.New(apierr.KindConflict, "payment_busy", "id", "another request is changing this payment; retry")
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

// event is a ledger event as queued in the outbox (written in the same
// transaction as the state change that owes it).
func event(ev ledgerv1.PaymentEvent, p *Payment, amount int64, refundID string) OutboxEntry {
	req := &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: p.ID, MerchantId: p.MerchantID, Currency: p.Currency, Amount: amount,
		Acquirer: p.Acquirer, AcquirerReference: p.AcquirerReference, RefundId: refundID}
	b, _ := protojson.Marshal(req)
	return OutboxEntry{ID: recordKey(req), PaymentID: p.ID, Request: string(b)}
}

// deliverNow delivers the events just committed with p (the sweeper
// retries what the ledger does not take now) and sets p.Fee from a
// capture.
func (s *Service) deliverNow(ctx context.Context, p *Payment, events []OutboxEntry) {
	for _, e := range events {
		if e.Merchant != nil {
			continue // for eventsd: the event relay delivers it
		}
		if fee, ok := s.deliver(context.WithoutCancel(ctx), e); ok && fee != 0 {
			p.Fee = fee
		}
	}
}

func newID(prefix string) string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// lease is a held idempotency claim, renewed in the background while its
// request works.
type lease struct {
	s       *Service
	claim   Claim
	mu      sync.Mutex
	renewed time.Time // last successful renewal (or the claim)
	lost    bool
	stop    chan struct{}
	done    chan struct{}
}

type leaseKey struct{}

// renew extends the lease once. The lease counts as lost when it was taken
// over, or when it could not be renewed before it expired (the database
// was unreachable: another process may own the key by now).
func (l *lease) renew(ctx context.Context) bool {
	now := l.s.cfg.Now()
	err := l.s.cfg.Store.RenewIdempotent(ctx, l.claim, now, l.s.cfg.LeaseTTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, ErrLeaseLost):
		l.lost = true
	case err == nil && !l.lost:
		l.renewed = now
	case !now.Before(l.renewed.Add(l.s.cfg.LeaseTTL)):
		l.lost = true
	}
	return !l.lost
}

// Lost reports whether the lease was lost (by renewal or by expiry).
func (l *lease) Lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.s.cfg.Now().Before(l.renewed.Add(l.s.cfg.LeaseTTL)) {
		l.lost = true
	}
	return l.lost
}

func (s *Service) hold(c Claim) *lease {
	l := &lease{s: s, claim: c, renewed: s.cfg.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	tick, stop := s.cfg.NewTicker(s.cfg.LeaseRenew)
	go func() {
		defer close(l.done)
		defer stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick:
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaseRenew)
				ok := l.renew(ctx)
				cancel()
				if !ok {
					return
				}
			}
		}
	}()
	return l
}

func (l *lease) end() bool {
	close(l.stop)
	<-l.done
	return l.Lost()
}

// errLeaseLost: this process no longer owns the request's Idempotency-Key
// (it could not renew its lease); the new owner finishes the request.
var errLeaseLost = apierr.New(apierr.KindConflict, apierr.CodeIdempotencyInProgress, "idempotency_key", "a request with this Idempotency-Key is still in progress; retry later")

// checkLease refuses to act (call the acquirer) once the request's lease
// is lost.
func checkLease(ctx context.Context) error {
	if l, _ := ctx.Value(leaseKey{}).(*lease); l != nil && l.Lost() {
		return errLeaseLost
	}
	return nil
}

// idempotent runs a write once per (merchant, Idempotency-Key): a retry
// with the same body gets the first payment back; another body is a 409.
// The key is claimed with a lease (owner, expiry, version) that this
// process renews while it works; a retry takes over an expired lease
// (compare-and-set), and a holder that lost its lease neither calls the
// acquirer nor writes the result. The key is parsed by internal/idemkey
// (a malformed one is a 400, never ignored) and stored hashed.
func (s *Service) idempotent(ctx context.Context, merchant, op string, req proto.Message, fn func(ctx context.Context, key, hash string) (*Payment, error)) (*gatewayv1.Payment, error) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	k, err := idemkey.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	if k.IsZero() {
		p, err := fn(ctx, "", "")
		if err != nil {
			return nil, err
		}
		return toPB(p), nil
	}
	// The record is stored under a hash of the key, never the key itself;
	// fn derives the payment and operation ids (themselves hashes) from the
	// key as sent, so a retry resumes the same operation at the acquirer.
	key := k.Storage("gateway:secret")
	body, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	sum := sha256.Sum256(append([]byte(op+"\x00"), body...))
	hash := hex.EncodeToString(sum[:])
	prev, claim, err := s.cfg.Store.BeginIdempotent(ctx, merchant, key, hash, s.owner, s.cfg.Now(), s.cfg.LeaseTTL)
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
	l := s.hold(claim)
	p, err := fn(context.WithValue(ctx, leaseKey{}, l), k.Raw(), hash)
	lost := l.end()
	if err != nil {
		// The key is free for a retry: either nothing durable happened
		// (typed refusals, outages before the acquirer), or the retry
		// resumes the same operation (its id derives from the key, and
		// every acquirer and ledger call carries a key derived from it).
		if !lost {
			_ = s.cfg.Store.ReleaseIdempotent(context.WithoutCancel(ctx), claim)
		}
		return nil, err
	}
	out := toPB(p)
	if lost {
		s.cfg.Logger.Warn("idempotency lease lost; the result is left to the new owner", "payment", p.ID)
		return out, nil
	}
	b, _ := protojson.Marshal(out)
	if err := s.cfg.Store.FinishIdempotent(context.WithoutCancel(ctx), claim, string(b)); err != nil {
		s.cfg.Logger.Error("idempotency record not finished; a retry resumes the same operation", "payment", p.ID, "err", err)
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
	return s.idempotent(ctx, merchant, "create", req, func(ctx context.Context, key, _ string) (*Payment, error) {
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
			// Claim the resumption (compare-and-set): the sweeper cannot
			// abandon the payment while this request works on it.
			prev.UpdatedAt = now
			if err := s.cfg.Store.Update(ctx, prev); errors.Is(err, ErrConcurrentUpdate) {
				return nil, errConcurrent
			} else if err != nil {
				return nil, errStoreUnavailable
			}
			p, resume = prev, true
		case !errors.Is(err, ErrNotFound):
			return nil, errStoreUnavailable
		}
	}
	if !resume {
		if err := s.prepare(ctx, p, req, idemKey != ""); err != nil {
			return nil, err
		}
		if p.Status == StatusDeclined {
			// A keyed payment's earlier attempt may have placed its hold
			// (the ledger answered too late): it is released, now or by
			// the sweeper.
			if p.Compensation != "" {
				s.compensate(ctx, conn, p)
			}
			return p, nil
		}
	}

	// undo leaves nothing behind when the acquirer was never called and
	// the payment id can never come back (no Idempotency-Key: a random
	// id): the hold is released and the processing row removed (the
	// sweeper covers a failed undo). A payment with a key keeps its row
	// and its hold instead, so that a retry resumes it on a valid hold;
	// the sweeper releases both once it is abandoned. A hold is voided
	// only once its payment is final or its id unreachable: a retry never
	// replays a voided hold.
	undo := func(err error) (*Payment, error) {
		if idemKey != "" {
			return nil, err
		}
		if _, rerr := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""); rerr != nil && status.Code(rerr) != codes.NotFound {
			s.cfg.Logger.Warn("ledger hold not released; the sweeper resolves the payment", "payment", p.ID, "err", apierr.From(rerr).Code)
			return nil, err
		}
		if derr := s.cfg.Store.DeleteProcessing(context.WithoutCancel(ctx), p.MerchantID, p.ID); derr != nil {
			s.cfg.Logger.Warn("processing payment not removed; the sweeper resolves it", "payment", p.ID, "err", derr)
		}
		return nil, err
	}

	// Hold the amount first: if the payment cannot be recorded, the
	// acquirer is never called.
	if _, err := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, p, p.Amount, ""); err != nil {
		if unavailable(err) {
			err = errLedgerUnavailable
		} else {
			err = apierr.From(err)
		}
		if resume {
			return nil, err // the first attempt's hold stays for the next retry
		}
		// A fresh payment whose hold was not taken: nothing to keep. With
		// a key, a retry holds again (or replays a hold that did land,
		// still open); without one, a hold that landed is released if the
		// ledger answers now, and expires on its own otherwise.
		if idemKey == "" {
			if _, rerr := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""); rerr != nil && status.Code(rerr) != codes.NotFound {
				s.cfg.Logger.Warn("ledger hold not released (if it was placed, it expires on its own)", "payment", p.ID, "err", apierr.From(rerr).Code)
			}
		}
		if derr := s.cfg.Store.DeleteProcessing(context.WithoutCancel(ctx), p.MerchantID, p.ID); derr != nil {
			s.cfg.Logger.Warn("processing payment not removed; the sweeper resolves it", "payment", p.ID, "err", derr)
		}
		return nil, err
	}
	if err := checkLease(ctx); err != nil {
		return nil, err
	}

	// Reveal, send, wipe.
	// A payment riskd sends to review is authorized but never captured
	// automatically: a person looks at it, then captures or cancels.
	capture := req.GetCapture() && p.Risk.Action != RiskReview
	res, err := s.authorize(ctx, conn, p, capture)
	if errors.Is(err, errAcquirerInProgress) {
		// The acquirer may act on it: the payment stays processing with
		// its hold, for a retry with the same key or the sweeper.
		return nil, err
	}
	if err != nil {
		return undo(err)
	}
	switch {
	case res.failure != "":
		p.Status, p.DeclineCode, p.Compensation = StatusFailed, res.failure, res.compensation
	case !res.auth.Approved:
		p.Status, p.DeclineCode, p.AcquirerReference, p.Compensation = StatusDeclined, res.auth.DeclineCode, res.auth.Reference, CompRelease
	default:
		p.Status, p.AcquirerReference = StatusAuthorized, res.auth.Reference
		if capture {
			p.AmountCaptured, p.Status = p.Amount, StatusCaptured
		}
	}
	p.UpdatedAt = s.cfg.Now().UTC()
	// The capture goes to the ledger in the outbox, written with the
	// final payment, so that an abandoned payment never has a capture to
	// undo and a captured one never misses its ledger entry.
	var events []OutboxEntry
	if p.Status == StatusCaptured {
		events = append(events, event(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, p, p.Amount, ""))
	}
	events = append(events, merchantEntries(paymentEvents(p, p.Version+1, true)...)...)
	if err := s.cfg.Store.Commit(context.WithoutCancel(ctx), p, events, s.cfg.Now()); err != nil {
		// The acquirer acted. A retry with the same Idempotency-Key resumes
		// (and replays); otherwise the sweeper reverses it and releases the
		// hold (the ledger has nothing else for it yet).
		s.cfg.Logger.Error("payment not stored", "payment", p.ID, "status", p.Status, "err", err)
		return nil, errStoreUnavailable
	}
	s.deliverNow(ctx, p, events)
	s.compensate(ctx, conn, p)
	return p, nil
}

// Compensation steps a final payment may owe (Payment.Compensation).
const (
	CompReverse = "reverse" // reverse the authorization at the acquirer
	CompRelease = "release" // release the ledger hold
)

// compensate runs the undo steps p owes (reverse at the acquirer, release
// the hold), each idempotent, and clears them once done. What cannot run
// now (a dependency down, a shutdown) stays on the payment for the
// sweeper. It reports whether nothing is left.
func (s *Service) compensate(ctx context.Context, conn connector.Connector, p *Payment) bool {
	if p.Compensation == "" {
		return true
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	ctx = context.WithoutCancel(ctx)
	was := p.Compensation
	var left []string
	for _, step := range strings.Split(was, ",") {
		var err error
		switch step {
		case CompReverse:
			if conn == nil {
				err = errors.New("the payment's acquirer connector is not configured")
				break
			}
			rctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
			err = conn.Reverse(rctx, p.ID)
			cancel()
		case CompRelease:
			if _, err = s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""); status.Code(err) == codes.NotFound {
				err = nil
			}
		}
		if err != nil {
			s.cfg.Logger.Warn("compensation not done; the sweeper retries it", "payment", p.ID, "step", step, "err", apierr.From(err).Code)
			left = append(left, step)
		}
	}
	rest := strings.Join(left, ",")
	if err := s.cfg.Store.ClearCompensation(ctx, p, was, rest); err != nil {
		s.cfg.Logger.Warn("compensation state not stored; the sweeper redoes it", "payment", p.ID, "err", err)
		return false
	}
	p.Compensation = rest
	return rest == ""
}

// prepare reads the card's metadata, asks riskd, and stores the payment as
// processing (or declined by risk).
//
// A keyed payment declined by risk owes the release of a hold an earlier
// attempt of the same key may have placed (its hold id derives from the
// payment id).
func (s *Service) prepare(ctx context.Context, p *Payment, req *gatewayv1.CreatePaymentRequest, keyed bool) error {
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
	dec, err := s.cfg.Risk.Evaluate(rctx, &riskv1.EvaluateRequest{Payment: &riskv1.Payment{PaymentId: p.ID, MerchantId: p.MerchantID, Amount: p.Amount, Currency: p.Currency, Token: p.Token,
		Bin: c.GetBin(), Brand: c.GetBrand(), Fingerprint: c.GetFingerprint(), CustomerIp: req.GetCustomerIp(), BillingCountry: req.GetBillingCountry(),
		EmailHash: req.GetEmailHash(), DeviceId: req.GetDeviceId()}})
	rcancel()
	if err != nil {
		if unavailable(err) {
			return errRiskUnavailable
		}
		return apierr.From(err)
	}
	p.Risk = Risk{Action: dec.GetAction(), Score: dec.GetScore(), RuleSetVersion: dec.GetRuleSetVersion(), Fallback: dec.GetFallback()}
	for _, r := range dec.GetRules() {
		p.Risk.Rules = append(p.Risk.Rules, r.GetName())
	}
	p.Status = StatusProcessing
	switch dec.GetAction() {
	case RiskAllow, RiskReview:
	case RiskChallenge:
		// Until 3-D Secure exists there is no way to challenge the
		// cardholder: decline, never approve silently.
		p.Status, p.DeclineCode = StatusDeclined, CodeAuthenticationRequired
	case RiskBlock:
		p.Status, p.DeclineCode = StatusDeclined, CodeRiskBlocked
	default:
		// An action this gateway does not know: fail closed.
		s.cfg.Logger.Warn("unknown risk action; declining", "payment", p.ID, "action", dec.GetAction())
		p.Status, p.DeclineCode = StatusDeclined, CodeRiskBlocked
	}
	if keyed && p.Status == StatusDeclined {
		p.Compensation = CompRelease
	}
	if p.Status == StatusDeclined {
		// Final at once: its payment.declined is written with it.
		if err := s.cfg.Store.InsertCommit(ctx, p, merchantEntries(paymentEvents(p, p.Version, false)...), s.cfg.Now()); err != nil {
			return errStoreUnavailable
		}
		return nil
	}
	if err := s.cfg.Store.Insert(ctx, p); err != nil {
		return errStoreUnavailable
	}
	return nil
}

type authOutcome struct {
	auth    connector.AuthResult
	failure string
	// compensation is what a failure owes (stored with the payment).
	compensation string
}

// authorize reveals the card from vaultd and sends it to the acquirer. An
// error means nothing reached the acquirer.
func (s *Service) authorize(ctx context.Context, conn connector.Connector, p *Payment, capture bool) (authOutcome, error) {
	rcpt, err := s.keys.Current()
	if err != nil {
		return authOutcome{}, apierr.From(err)
	}
	req := &vaultv1.DetokenizeRequest{MerchantId: p.MerchantID, Token: p.Token, IncludeCvc: true, Purpose: "payment " + p.ID, DestinationHost: conn.Host()}
	if err := rcpt.Ask(req); err != nil {
		return authOutcome{}, apierr.From(err)
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	rev, err := s.cfg.Vault.Detokenize(vctx, req)
	cancel()
	if err != nil {
		if unavailable(err) {
			return authOutcome{}, errVaultUnavailable
		}
		return authOutcome{}, apierr.From(err)
	}
	plain, err := rcpt.OpenAnswer(req, rev)
	if errors.Is(err, revealbox.ErrUnbound) || errors.Is(err, revealbox.ErrOpen) {
		// An older vaultd (unbound), or a box that is not this request's
		// (a hop between gateway and vaultd replaying or altering
		// answers): the card, and its CVC now consumed, is not used, and
		// the payment fails as with the vault unavailable.
		s.cfg.Logger.Error("reveal refused", "payment", p.ID, "err", err)
		return authOutcome{}, errRevealRefused
	}
	if err != nil {
		return authOutcome{}, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	c, err := card.Decode(plain)
	clear(plain)
	if err != nil {
		return authOutcome{}, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	// The lease may have been lost while the card was revealed: the new
	// owner calls the acquirer, not this process.
	if err := checkLease(ctx); err != nil {
		c.Number.Wipe()
		c.CVC.Wipe()
		return authOutcome{}, err
	}
	// The call is detached from the merchant's request: a hang-up or a
	// shutdown must not cut an authorization the acquirer may complete
	// (the connector's own timeout bounds it).
	res, err := conn.Authorize(context.WithoutCancel(ctx), connector.AuthRequest{PaymentID: p.ID, Amount: p.Amount, Currency: p.Currency, Capture: capture, Card: c, IdempotencyKey: "auth:" + p.ID})
	c.Number.Wipe()
	c.CVC.Wipe()
	switch {
	case errors.Is(err, connector.ErrInProgress):
		// Another process (after a lease takeover) is sending the same
		// authorization: the payment stays processing; a retry with the
		// same key, or the sweeper, finds out what happened.
		return authOutcome{}, errAcquirerInProgress
	case errors.Is(err, connector.ErrNotSent):
		// Certain that nothing reached the acquirer: only the hold is owed.
		return authOutcome{failure: CodeAcquirerUnavailable, compensation: CompRelease}, nil
	case errors.Is(err, connector.ErrTimeout):
		// The outcome is unknown: reverse, and release the hold.
		return authOutcome{failure: CodeAcquirerTimeout, compensation: CompReverse + "," + CompRelease}, nil
	case err != nil:
		// A 5xx, a connection lost after the request was written, an
		// unreadable or unexpected answer: the acquirer may have
		// authorized. Reversing an authorization that does not exist is
		// harmless; leaving one that does is not.
		s.cfg.Logger.Error("acquirer authorization failed; outcome unknown, reversing", "payment", p.ID, "acquirer", conn.Name(), "err", err)
		return authOutcome{failure: CodeAcquirerUnavailable, compensation: CompReverse + "," + CompRelease}, nil
	}
	// Acquirer text is stored and returned: only clean codes and ids.
	res.DeclineCode = connector.Code(res.DeclineCode)
	if err := connector.Reference(res.Reference); err != nil {
		if !res.Approved {
			res.Reference = ""
			return authOutcome{auth: res}, nil
		}
		s.cfg.Logger.Error("acquirer approved with an unusable reference; reversing", "payment", p.ID, "acquirer", conn.Name())
		return authOutcome{failure: CodeAcquirerUnavailable, compensation: CompReverse + "," + CompRelease}, nil
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

// operationID names a capture, cancel or refund: derived from the
// merchant's Idempotency-Key (so a retry resumes the same operation, with
// the same acquirer idempotency key and the same ledger event id), random
// without one. Refund ids are unique across payments.
func operationID(kind, merchant, payment, idemKey string) string {
	prefix := map[string]string{OpCapture: "cap_", OpCancel: "cnl_", OpRefund: "re_"}[kind]
	if idemKey == "" {
		return newID(prefix)
	}
	sum := sha256.Sum256([]byte("obol operation id\x00" + kind + "\x00" + merchant + "\x00" + payment + "\x00" + idemKey))
	return prefix + base64.RawURLEncoding.EncodeToString(sum[:15])
}

// plan validates an operation against the payment and returns its amount.
type plan func(p *Payment) (amount int64, err error)

// change runs a capture, cancel or refund of payment id under the
// payment's lock. The operation is stored as processing (and marked in
// flight on the payment) before the acquirer is called; a retry with the
// same Idempotency-Key finds it and resumes it, or returns its outcome.
func (s *Service) change(ctx context.Context, kind, id, reason string, req proto.Message, check plan) (*gatewayv1.Payment, error) {
	merchant, err := s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	return s.idempotent(ctx, merchant, kind, req, func(ctx context.Context, key, hash string) (*Payment, error) {
		defer s.lock(id)()
		now := s.cfg.Now().UTC()
		opID := ""
		if key != "" {
			// A retry finds its operation by id (derived from the key)
			// and resumes it or returns its outcome.
			opID = operationID(kind, merchant, id, key)
			op, err := s.cfg.Store.Operation(ctx, opID)
			switch {
			case errors.Is(err, ErrNoOperation):
			case err != nil:
				return nil, errStoreUnavailable
			default:
				return s.resume(ctx, merchant, id, hash, op, now)
			}
		}
		// A new operation: the payment is read, checked and marked in
		// flight in one transaction, shared with concurrent writes.
		var conn connector.Connector
		p, op, err := s.cfg.Store.StartOperationFor(ctx, merchant, id, func(p *Payment) (*Operation, error) {
			conn = s.cfg.Connectors[p.Acquirer]
			if conn == nil {
				return nil, refused{errNoConnector}
			}
			if p.PendingOp != "" {
				return nil, refused{errConcurrent}
			}
			amount, err := check(p)
			if err != nil {
				return nil, refused{err}
			}
			oid := opID
			if oid == "" {
				oid = operationID(kind, merchant, id, "")
			}
			return &Operation{ID: oid, PaymentID: p.ID, MerchantID: merchant, Kind: kind, Amount: amount, Reason: reason,
				RequestHash: hash, State: OpProcessing, CreatedAt: now, UpdatedAt: now}, nil
		})
		var r refused
		switch {
		case errors.As(err, &r):
			return nil, r.err
		case errors.Is(err, ErrNotFound):
			return nil, errNotFound
		case errors.Is(err, ErrConcurrentUpdate):
			return nil, errConcurrent
		case err != nil:
			return nil, errStoreUnavailable
		}
		if err := checkLease(ctx); err != nil {
			return nil, err
		}
		return s.runOperation(ctx, conn, p, op)
	})
}

// refused carries a plan's refusal through the store.
type refused struct{ err error }

func (r refused) Error() string { return r.err.Error() }

// errNoConnector: the payment's acquirer is not configured here.
var errNoConnector = apierr.New(apierr.KindUnavailable, "acquirer_unavailable", "", "the payment's acquirer connector is not configured")

// resume handles a retry whose operation exists: its outcome, or the
// operation resumed (claimed by compare-and-set) when still processing.
func (s *Service) resume(ctx context.Context, merchant, id, hash string, op *Operation, now time.Time) (*Payment, error) {
	p, err := s.cfg.Store.Get(ctx, merchant, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, errStoreUnavailable
	}
	conn := s.cfg.Connectors[p.Acquirer]
	if conn == nil {
		return nil, errNoConnector
	}
	switch {
	case op.RequestHash != hash:
		return nil, apierr.ErrIdempotencyKeyReused
	case op.State == OpSucceeded:
		return p, nil // done; its idempotency record was not finished
	case op.State == OpFailed:
		return nil, opError(op.ErrorCode)
	}
	if err := s.cfg.Store.TouchOperation(ctx, op, now); errors.Is(err, ErrConcurrentUpdate) {
		return nil, errConcurrent
	} else if err != nil {
		return nil, errStoreUnavailable
	}
	if err := checkLease(ctx); err != nil {
		return nil, err
	}
	return s.runOperation(ctx, conn, p, op)
}

// opError is the answer of an operation the acquirer refused.
func opError(code string) error {
	return conflict(code, "", "the acquirer refused the operation")
}

// runOperation calls the acquirer for a processing operation and, once it
// acted, stores the outcome with its ledger event (outbox) in one
// transaction; a capture's event goes to the ledger first and is queued
// only when the ledger does not take it (recordCapture). A timeout or an unavailable acquirer leaves the operation
// processing: a retry with the same Idempotency-Key, or the sweeper,
// resumes it with the same acquirer idempotency key.
func (s *Service) runOperation(ctx context.Context, conn connector.Connector, p *Payment, op *Operation) (*Payment, error) {
	// Re-checked right before the acquirer call: a holder whose lease
	// expired must leave the call to the new owner.
	if err := checkLease(ctx); err != nil {
		return nil, err
	}
	// Detached from the merchant's request (the connector's timeout
	// bounds the call): a hang-up must not cut a call the acquirer may
	// complete.
	actx := context.WithoutCancel(ctx)
	var err error
	switch op.Kind {
	case OpCapture:
		err = conn.Capture(actx, p.AcquirerReference, op.Amount, "capture:"+p.ID)
	case OpCancel:
		err = conn.Cancel(actx, p.AcquirerReference, "cancel:"+p.ID)
	case OpRefund:
		err = conn.Refund(actx, p.AcquirerReference, op.Amount, "refund:"+p.ID+":"+op.ID)
	}
	wctx := context.WithoutCancel(ctx)
	now := s.cfg.Now().UTC()
	var events []OutboxEntry
	// queued: the capture's ledger event goes in the outbox because the
	// ledger did not take it just now; the sweeper delivers it.
	queued := false
	switch {
	case errors.Is(err, connector.ErrTimeout), errors.Is(err, connector.ErrUnavailable), errors.Is(err, connector.ErrInProgress):
		// The outcome is unknown: the operation stays processing, and a
		// retry with the same key (or the sweeper) replays it.
		return nil, acquirerError(err)
	case err != nil && op.Kind == OpCapture:
		// The ledger records a capture only once the acquirer captured
		// (recordCapture): if it holds this payment's capture, an earlier
		// attempt of this operation captured, and this refusal is an
		// acquirer that no longer knows its idempotency key (expired,
		// restarted) answering the replay as already captured.
		recorded, lerr := s.captureRecorded(ctx, p)
		if lerr != nil {
			// Undecidable now: the operation stays processing, for a retry
			// with the same key or the sweeper.
			s.cfg.Logger.Warn("acquirer refused the capture and the ledger cannot be asked whether an earlier attempt captured; left in flight", "payment", p.ID, "err", apierr.From(lerr).Code)
			return nil, errCaptureUndecided
		}
		if recorded == nil {
			s.cfg.Logger.Warn("acquirer refused the operation", "payment", p.ID, "operation", op.Kind, "err", err)
			op.State, op.ErrorCode = OpFailed, "acquirer_refused"
			break
		}
		s.cfg.Logger.Warn("acquirer refused a resumed capture that an earlier attempt made (the ledger recorded it); captured", "payment", p.ID, "err", err)
		op.State = OpSucceeded
		p.Status, p.AmountCaptured, p.Fee = StatusCaptured, op.Amount, recorded.GetFee()
	case err != nil:
		s.cfg.Logger.Warn("acquirer refused the operation", "payment", p.ID, "operation", op.Kind, "err", err)
		op.State, op.ErrorCode = OpFailed, "acquirer_refused"
	default:
		op.State = OpSucceeded
		switch op.Kind {
		case OpCapture:
			p.Status, p.AmountCaptured = StatusCaptured, op.Amount
			if fee, ok := s.recordCapture(ctx, p, op.Amount); ok {
				p.Fee = fee
			} else {
				events = append(events, event(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, p, op.Amount, ""))
				queued = true
			}
		case OpCancel:
			p.Status = StatusCanceled
			events = append(events, event(ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""))
		case OpRefund:
			p.Refunds = append(p.Refunds, Refund{ID: op.ID, Amount: op.Amount, Reason: op.Reason, CreatedAt: op.CreatedAt})
			p.AmountRefunded += op.Amount
			p.Status = StatusPartiallyRefunded
			if p.AmountRefunded == p.AmountCaptured {
				p.Status = StatusRefunded
			}
			events = append(events, event(ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, p, op.Amount, op.ID))
		}
	}
	if op.State == OpSucceeded {
		// The merchant's event, written with the outcome.
		if op.Kind == OpRefund {
			events = append(events, merchantEntries(refundEvent(p, p.Refunds[len(p.Refunds)-1]))...)
		} else {
			events = append(events, merchantEntries(paymentEvents(p, p.Version+1, false)...)...)
		}
	}
	p.PendingOp, p.UpdatedAt = "", now
	if err := s.cfg.Store.FinishOperation(wctx, p, op, events, now); err != nil {
		if errors.Is(err, ErrConcurrentUpdate) {
			// Another resumer finished it first: answer with its outcome.
			if done, gerr := s.cfg.Store.Operation(wctx, op.ID); gerr == nil && done.State != OpProcessing {
				if done.State == OpFailed {
					return nil, opError(done.ErrorCode)
				}
				if fresh, gerr := s.cfg.Store.Get(wctx, p.MerchantID, p.ID); gerr == nil {
					return fresh, nil
				}
			}
			return nil, errConcurrent
		}
		s.cfg.Logger.Error("operation outcome not stored; a retry or the sweeper resumes it", "payment", p.ID, "operation", op.Kind, "err", err)
		return nil, errStoreUnavailable
	}
	if op.State == OpFailed {
		return nil, opError(op.ErrorCode)
	}
	if !queued {
		s.deliverNow(ctx, p, events)
	}
	return p, nil
}

// errCaptureUndecided: the acquirer refused a capture that an earlier
// attempt may have made, and the ledger, which would tell, is unavailable.
var errCaptureUndecided = apierr.New(apierr.KindUnavailable, "ledger_unavailable", "",
	"the acquirer refused the capture and the ledger is unavailable to tell whether an earlier attempt captured; retry with the same Idempotency-Key (without one, the gateway completes the operation itself)")

// captureRecorded answers the ledger's view of p when the ledger holds a
// capture of it, nil when it holds none.
func (s *Service) captureRecorded(ctx context.Context, p *Payment) (*ledgerv1.PaymentLedger, error) {
	lctx, cancel := s.ledgerCtx(ctx)
	defer cancel()
	r, err := s.cfg.Ledger.ListPaymentLedgers(lctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: []string{p.ID}})
	if err != nil {
		return nil, err
	}
	for _, l := range r.GetPayments() {
		if l.GetPaymentId() == p.ID && l.GetCaptured() > 0 {
			return l, nil
		}
	}
	return nil, nil
}

// recordCapture records a capture the acquirer made at the ledger before
// the operation's outcome is committed, so that the event needs no outbox
// row (queued with the outcome, then deleted with the fee set: a write and
// a commit wait per capture). It answers the ledger's fee, or false when
// the ledger did not take the event: the caller then queues it with the
// outcome, as every other event is.
//
// What keeps this exact:
//   - The ledger records a payment's capture once (its journal id is
//     pay:<id>:capture; a second request with the same content is a
//     replay), so a crash between this call and the commit leaves the
//     operation processing; its resumption (a retry with the same
//     Idempotency-Key, or the sweeper) captures again with the same
//     acquirer idempotency key, records again, and the ledger answers the
//     first recording with its fee. An acquirer that refuses the resumed
//     capture (it forgot the key) is checked against the ledger
//     (captureRecorded): a capture the ledger holds stands. A capture the
//     ledger never took (it was down, and the gateway died before the
//     outcome's commit) is not covered by that check: resumed after the
//     acquirer forgot its key, it fails as acquirer_refused, as every
//     operation did before the ledger came first.
//   - A payment's ledger events stay in order: no older event of a payment
//     can be waiting in the outbox when it is captured. Its hold is posted
//     before the acquirer is called (not queued); an authorization queues
//     an event only when it captures, and a captured payment is not
//     captured again; and while the operation runs, pending_op keeps every
//     other change of the payment out.
//   - The fee is written by the outcome's commit only when it is known
//     (Store.FinishOperation), never as a zero over a fee the sweeper
//     stored.
func (s *Service) recordCapture(ctx context.Context, p *Payment, amount int64) (int64, bool) {
	req := &ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, PaymentId: p.ID, MerchantId: p.MerchantID, Currency: p.Currency,
		Amount: amount, Acquirer: p.Acquirer, AcquirerReference: p.AcquirerReference}
	lctx, cancel := s.ledgerCtx(ctx)
	r, err := s.cfg.Ledger.RecordPayment(lctx, req)
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("the ledger did not take the capture; it is queued with the outcome and the sweeper delivers it", "payment", p.ID, "err", apierr.From(err).Code)
		return 0, false
	}
	return r.GetFee(), true
}

func acquirerError(err error) error {
	switch {
	case errors.Is(err, connector.ErrTimeout):
		return apierr.New(apierr.KindUnavailable, CodeAcquirerTimeout, "", "the acquirer did not answer in time; retry with the same Idempotency-Key (without one, the gateway completes the operation itself)")
	case errors.Is(err, connector.ErrUnavailable):
		return apierr.New(apierr.KindUnavailable, CodeAcquirerUnavailable, "", "the acquirer is unavailable; retry with the same Idempotency-Key (without one, the gateway completes the operation itself)")
	case errors.Is(err, connector.ErrInProgress):
		return errAcquirerInProgress
	}
	return conflict("acquirer_refused", "", "the acquirer refused the operation")
}

// CapturePayment captures an authorization once.
func (s *Service) CapturePayment(ctx context.Context, req *gatewayv1.CapturePaymentRequest) (*gatewayv1.Payment, error) {
	if req.GetAmount() < 0 {
		return nil, validAmount("amount", req.GetAmount())
	}
	return s.change(ctx, OpCapture, req.GetId(), "", req, func(p *Payment) (int64, error) {
		amount := req.GetAmount()
		if amount == 0 {
			amount = p.Amount
		}
		switch {
		case p.Status != StatusAuthorized:
			return 0, conflict("payment_not_capturable", "id", "only an authorized payment can be captured, once; this one is "+p.Status)
		case amount > p.Amount:
			return 0, conflict("capture_exceeds_authorization", "amount", "the capture exceeds the authorized amount ("+strconv.FormatInt(p.Amount, 10)+")")
		}
		return amount, nil
	})
}

// CancelPayment voids an authorization.
func (s *Service) CancelPayment(ctx context.Context, req *gatewayv1.CancelPaymentRequest) (*gatewayv1.Payment, error) {
	return s.change(ctx, OpCancel, req.GetId(), "", req, func(p *Payment) (int64, error) {
		if p.Status != StatusAuthorized {
			return 0, conflict("payment_not_cancelable", "id", "only an authorized, uncaptured payment can be canceled; this one is "+p.Status)
		}
		return 0, nil
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
	return s.change(ctx, OpRefund, req.GetId(), req.GetReason(), req, func(p *Payment) (int64, error) {
		left := p.AmountCaptured - p.AmountRefunded
		amount := req.GetAmount()
		if amount == 0 {
			amount = left
		}
		switch {
		case p.Status != StatusCaptured && p.Status != StatusPartiallyRefunded:
			return 0, conflict("payment_not_refundable", "id", "only a captured payment can be refunded; this one is "+p.Status)
		case amount > left:
			return 0, conflict("refund_exceeds_captured", "amount", "refunds cannot exceed the captured amount ("+strconv.FormatInt(left, 10)+" left)")
		}
		return amount, nil
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
	out := toPB(p)
	if err := s.withDisputed(ctx, merchant, out); err != nil {
		return nil, err
	}
	return out, nil
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
	if err := s.withDisputed(ctx, merchant, out.Payments...); err != nil {
		return nil, err
	}
	return out, nil
}

func toPB(p *Payment) *gatewayv1.Payment {
	out := &gatewayv1.Payment{Id: p.ID, Status: p.Status, Amount: p.Amount, AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, Currency: p.Currency,
		Card:        &gatewayv1.Card{Brand: p.Card.Brand, Last4: p.Card.Last4, Fingerprint: p.Card.Fingerprint},
		Risk:        &gatewayv1.Risk{Action: p.Risk.Action, Score: p.Risk.Score, Rules: p.Risk.Rules, RuleSetVersion: p.Risk.RuleSetVersion, Fallback: p.Risk.Fallback},
		Acquirer:    &gatewayv1.Acquirer{Name: p.Acquirer, Reference: p.AcquirerReference},
		DeclineCode: p.DeclineCode, Description: p.Description, Metadata: p.Metadata, Fee: p.Fee,
		CreatedAt: timestamppb.New(p.CreatedAt), UpdatedAt: timestamppb.New(p.UpdatedAt)}
	for _, r := range p.Refunds {
		out.Refunds = append(out.Refunds, &gatewayv1.Refund{Id: r.ID, Amount: r.Amount, Reason: r.Reason, CreatedAt: timestamppb.New(r.CreatedAt)})
	}
	return out
}
