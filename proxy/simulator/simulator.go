// Package simulator is Obol's acquirer simulator: a small, stateful acquirer
// served over HTTPS whose outcomes are fixed by test card number
// (TESTCARDS.md in this directory), so that demos, docs and gateway tests agree. It
// receives card data as an acquirer would (it is an egress destination of
// the gateway); it keeps only brand and last4, never logs a card number, and
// wipes the request buffer after parsing.
//
// API (JSON; an Idempotency-Key header replays the first answer):
//
//	POST /v1/authorizations                {amount, currency, capture, reference, card:{number, exp_month, exp_year, cvc}}
//	POST /v1/authorizations/{id}/capture   {amount}   (once, at most the authorized amount; 0 = all)
//	POST /v1/authorizations/{id}/cancel
//	POST /v1/authorizations/{id}/refunds   {amount}   (repeatable, at most captured − refunded)
//	GET  /v1/authorizations/{id}
//	GET  /v1/authorizations                every authorization and the request counts (list.go)
//	POST /v1/reversals                     {reference}   (void everything for a reference, even later)
//	GET  /v1/settlements/next              the oldest settlement report not yet acknowledged (CSV)
//	GET  /v1/settlements/{id}              a report again, by id
//	POST /v1/settlements/{id}/ack          acknowledge a report: the next one opens on the next read
//
// Reading a report is idempotent: /v1/settlements/next closes a report (the
// captures, refunds and dispute steps not yet in one) and answers it, with its id in
// the Settlement-Report-Id header, until it is acknowledged. With
// Config.StatePath (obol dev) everything the simulator holds survives a
// restart.
package simulator

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/vault/card"
)

// Decline codes, as in TESTCARDS.md.
const (
	DeclineCardDeclined      = "card_declined"
	DeclineInsufficientFunds = "insufficient_funds"
	DeclineExpiredCard       = "expired_card"
	DeclineIncorrectCVC      = "incorrect_cvc"
	DeclineInvalidNumber     = "invalid_number"
)

// behaviour is what a test card makes the simulator do.
type behaviour struct {
	decline   string
	serverErr bool
	slow      bool
	// dispute, when set, is how the card's dispute ends ("won" or
	// "lost"): a chargeback (with disputeReason) comes in the report that
	// settles the capture, a dispute_review in the next report, and the
	// dispute_won or dispute_lost line in the one after.
	dispute       string
	disputeReason string
}

// The dispute fee the simulator charges (minor units), returned when the
// merchant wins.
const disputeFee = 1500

// Dispute stages of an authorization, one per settlement report.
const (
	stageNone     = 0
	stageOpened   = 1 // chargeback reported
	stageReviewed = 2 // dispute_review reported
	stageClosed   = 3 // dispute_won or dispute_lost reported
)

var testCards = map[string]behaviour{
	"4000000000000002": {decline: DeclineCardDeclined},
	"4000000000009995": {decline: DeclineInsufficientFunds},
	"4000000000000069": {decline: DeclineExpiredCard},
	"4000000000000127": {decline: DeclineIncorrectCVC},
	"4000000000000119": {serverErr: true},
	"4000000000000036": {slow: true},
	"4000000000000259": {dispute: "lost", disputeReason: "fraudulent"},
	"4000000000002685": {dispute: "won", disputeReason: "product_not_received"},
}

// Authorization is the simulator's record of a payment (no card number).
type Authorization struct {
	ID          string `json:"id"`
	Status      string `json:"status"` // approved, declined, canceled, reversed
	DeclineCode string `json:"decline_code,omitempty"`
	Amount      int64  `json:"amount"`
	Currency    string `json:"currency"`
	Captured    int64  `json:"amount_captured"`
	Refunded    int64  `json:"amount_refunded"`
	Brand       string `json:"brand,omitempty"`
	Last4       string `json:"last4,omitempty"`
	Reference   string `json:"reference,omitempty"`
	CreatedAt   string `json:"created_at"`
	// RefundCount is how many refunds were made (idempotent replays excluded).
	RefundCount int `json:"refund_count"`
	// CVCProvided: the authorization request carried a CVC (never the CVC
	// itself), so drills can check that no CVC was lost on the way.
	CVCProvided bool `json:"cvc_provided"`

	dispute       string // "won" or "lost" for a dispute test card
	disputeReason string
	settled       int64 // captured amount already in a settlement report
	refundSettled int64 // refunded amount already in a settlement report
	disputeStage  int   // stage* constants
	disputed      int64 // the chargeback's amount
}

// Config configures a simulator.
type Config struct {
	// SlowDelay is how long the slow card takes (default 30s, as in
	// TESTCARDS.md; tests shorten it).
	SlowDelay time.Duration
	// FeeBasisPoints is the acquirer fee in settlement reports (default 2.9%).
	FeeBasisPoints int64
	// FeeFixed is the fixed fee per capture, minor units (default 30).
	FeeFixed int64
	Now      func() time.Time
	Logger   *slog.Logger
	// StatePath, when set, keeps authorizations, idempotency records,
	// reversals and settlement reports in this JSON file (rewritten
	// atomically after every change) and loads it at start, so that a
	// restart of obol dev loses nothing. It holds no card number.
	StatePath string
}

// Simulator is the acquirer. It is an http.Handler.
type Simulator struct {
	cfg   Config
	mu    sync.Mutex
	auths map[string]*Authorization
	idem  map[string]idemEntry
	// inflight serialises requests that share an idempotency scope.
	inflight map[string]*keyMutex
	// failAfterAuthorize makes the next authorizations answer 500 after
	// they were stored (FailAfterAuthorize).
	failAfterAuthorize atomic.Bool
	// hooks let this package's tests order concurrent requests.
	hooks struct{ arrived, handling func() }
	// reversed references: an authorization for one, even one completing
	// after the reversal arrived, ends reversed.
	reversed map[string]bool
	// reports are the settlement reports closed so far, oldest first;
	// acked ones are kept so that they can be read again by id.
	reports []*report
	mux     *http.ServeMux
	// Requests counts requests per route, for tests that check whether the
	// gateway called the acquirer.
	requests sync.Map // route -> *atomic.Int64
	// stats are the counters by operation and outcome (stats.go).
	stats *stats
}

type idemEntry struct {
	Fingerprint string `json:"fingerprint"`
	Status      int    `json:"status"`
	Body        []byte `json:"body"`
}

// report is a closed settlement report.
type report struct {
	ID    string     `json:"id"`
	Rows  [][]string `json:"rows"`
	Acked bool       `json:"acked"`
}

// New returns a simulator. A StatePath that cannot be read makes it panic:
// use Open to get the error.
func New(cfg Config) *Simulator {
	s, err := Open(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// Open returns a simulator, loading Config.StatePath when it exists.
func Open(cfg Config) (*Simulator, error) {
	if cfg.SlowDelay <= 0 {
		cfg.SlowDelay = 30 * time.Second
	}
	if cfg.FeeBasisPoints == 0 && cfg.FeeFixed == 0 {
		cfg.FeeBasisPoints, cfg.FeeFixed = 290, 30
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Simulator{cfg: cfg, auths: map[string]*Authorization{}, idem: map[string]idemEntry{}, inflight: map[string]*keyMutex{}, reversed: map[string]bool{}, mux: http.NewServeMux(), stats: newStats()}
	s.mux.HandleFunc("POST /v1/authorizations", s.count("authorize", s.idempotent(s.authorize)))
	s.mux.HandleFunc("POST /v1/authorizations/{id}/capture", s.count("capture", s.idempotent(s.capture)))
	s.mux.HandleFunc("POST /v1/authorizations/{id}/cancel", s.count("cancel", s.idempotent(s.cancel)))
	s.mux.HandleFunc("POST /v1/authorizations/{id}/refunds", s.count("refund", s.idempotent(s.refund)))
	s.mux.HandleFunc("GET /v1/authorizations/{id}", s.count("get", s.get))
	s.mux.HandleFunc("GET /v1/authorizations", s.count("list", s.list))
	s.mux.HandleFunc("POST /v1/reversals", s.count("reversal", s.idempotent(s.reverse)))
	s.mux.HandleFunc("GET /v1/settlements/next", s.count("settlement", s.settlement))
	s.mux.HandleFunc("GET /v1/settlements/{id}", s.count("settlement", s.settlementByID))
	s.mux.HandleFunc("POST /v1/settlements/{id}/ack", s.count("settlement_ack", s.ackSettlement))
	s.mux.HandleFunc("GET /v1/stats", s.serveStats)
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// ServeHTTP serves the API.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Requests is how many requests a route received (authorize, capture,
// cancel, refund, get, settlement).
func (s *Simulator) Requests(route string) int64 {
	if v, ok := s.requests.Load(route); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Authorizations counts the distinct authorizations made (idempotent
// replays excluded).
func (s *Simulator) Authorizations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.auths)
}

// Authorization returns the simulator's record of an authorization by its
// id (the gateway's acquirer reference), for tests that count money at the
// acquirer: idempotent replays change nothing in it.
func (s *Simulator) Authorization(id string) (Authorization, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.auths[id]
	if !ok {
		return Authorization{}, false
	}
	return *a, true
}

func (s *Simulator) count(route string, h http.HandlerFunc) http.HandlerFunc {
	v, _ := s.requests.LoadOrStore(route, &atomic.Int64{})
	c := v.(*atomic.Int64)
	op := operations[route]
	return func(w http.ResponseWriter, r *http.Request) {
		c.Add(1)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		// Only small JSON answers are read for their outcome (reports are CSV).
		body := rec.buf.Bytes()
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			body = nil
		}
		s.stats.record(op, r.Method == http.MethodPost && route != "settlement_ack", r.Header.Get("Idempotency-Key"), rec.status, rec.Header().Get("Idempotent-Replayed") == "true", body)
	}
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

// recorder captures a response so idempotent replays return it again.
type recorder struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (r *recorder) WriteHeader(c int)           { r.status = c; r.ResponseWriter.WriteHeader(c) }
func (r *recorder) Write(b []byte) (int, error) { r.buf.Write(b); return r.ResponseWriter.Write(b) }

// idempotent replays the first answer for an Idempotency-Key (scoped to the
// route and id). The request is fingerprinted without its card data.
func (s *Simulator) idempotent(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
		if err != nil {
			fail(w, http.StatusBadRequest, "invalid_request", "unreadable body")
			return
		}
		defer clear(body)
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			h(w, r, body)
			return
		}
		scope := r.Method + " " + r.URL.Path + " " + key
		fp := requestFingerprint(body)
		// Requests sharing a key run one at a time: a second one waits for
		// the first and then replays its answer, as real acquirers promise.
		if s.hooks.arrived != nil {
			s.hooks.arrived()
		}
		defer s.keyLock(scope)()
		s.mu.Lock()
		prev, seen := s.idem[scope]
		s.mu.Unlock()
		if seen {
			if prev.Fingerprint != fp {
				fail(w, http.StatusConflict, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(prev.Status)
			_, _ = w.Write(prev.Body)
			return
		}
		if s.hooks.handling != nil {
			s.hooks.handling()
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r, body)
		if rec.status < 500 {
			s.mu.Lock()
			s.idem[scope] = idemEntry{Fingerprint: fp, Status: rec.status, Body: rec.buf.Bytes()}
			_ = s.saveLocked() // logged; the answer is already sent
			s.mu.Unlock()
		}
	}
}

// keyLock serialises the requests of one idempotency scope; the entry lives
// only while a request holds or waits for it.
func (s *Simulator) keyLock(scope string) func() {
	s.mu.Lock()
	l := s.inflight[scope]
	if l == nil {
		l = &keyMutex{}
		s.inflight[scope] = l
	}
	l.refs++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.inflight, scope)
		}
		s.mu.Unlock()
	}
}

type keyMutex struct {
	sync.Mutex
	refs int
}

// requestFingerprint identifies a request by amount, currency, capture and
// the card's last four digits only.
func requestFingerprint(body []byte) string {
	var req authorizeRequest
	_ = json.Unmarshal(body, &req)
	last4 := ""
	if n := len(req.Card.Number); n >= 4 {
		last4 = req.Card.Number[n-4:]
	}
	req.Card.Number, req.Card.CVC = "", ""
	return fmt.Sprintf("%d|%s|%v|%s|%s", req.Amount, req.Currency, req.Capture, req.Reference, last4)
}

type authorizeRequest struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Capture   bool   `json:"capture"`
	Reference string `json:"reference"`
	Card      struct {
		Number   string `json:"number"`
		ExpMonth int    `json:"exp_month"`
		ExpYear  int    `json:"exp_year"`
		CVC      string `json:"cvc"`
	} `json:"card"`
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Simulator) authorize(w http.ResponseWriter, r *http.Request, body []byte) {
	var req authorizeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", "body must be JSON")
		return
	}
	defer func() { req.Card.Number, req.Card.CVC = "", "" }()
	if req.Amount <= 0 {
		fail(w, http.StatusBadRequest, "invalid_amount", "amount must be a positive integer in minor units")
		return
	}
	if !money.Valid(req.Currency) {
		fail(w, http.StatusBadRequest, "invalid_currency", "currency must be an ISO 4217 code")
		return
	}
	a := &Authorization{ID: newID("sim_auth_"), Amount: req.Amount, Currency: req.Currency, Reference: req.Reference, CreatedAt: s.cfg.Now().UTC().Format(time.RFC3339),
		CVCProvided: req.Card.CVC != ""}
	pan, err := card.ParseNumber(req.Card.Number)
	if err != nil {
		a.Status, a.DeclineCode = "declined", DeclineInvalidNumber
		if err := s.store(a); err != nil {
			failNotSaved(w)
			return
		}
		writeJSON(w, http.StatusPaymentRequired, a)
		return
	}
	a.Brand, a.Last4 = string(pan.Brand()), pan.Last4()
	b := testCards[string(pan.RevealDigits())] // no string copy of the number is kept
	pan.Wipe()
	switch {
	case b.serverErr:
		fail(w, http.StatusInternalServerError, "processing_error", "the simulator failed (the 5xx test card)")
		return
	case b.slow:
		select {
		case <-time.After(s.cfg.SlowDelay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case b.decline != "":
		a.Status, a.DeclineCode = "declined", b.decline
	case card.ValidateExpiry(req.Card.ExpMonth, req.Card.ExpYear, s.cfg.Now()) != nil:
		a.Status, a.DeclineCode = "declined", DeclineExpiredCard
	default:
		a.Status, a.dispute, a.disputeReason = "approved", b.dispute, b.disputeReason
		if req.Capture {
			a.Captured = a.Amount
		}
	}
	if err := s.store(a); err != nil {
		failNotSaved(w)
		return
	}
	if s.failAfterAuthorize.Load() {
		fail(w, http.StatusInternalServerError, "processing_error", "the simulator failed after authorizing (FailAfterAuthorize)")
		return
	}
	status := http.StatusOK
	if a.Status == "declined" {
		status = http.StatusPaymentRequired
	}
	writeJSON(w, status, a)
}

// FailAfterAuthorize makes every authorization, while on, be made (and
// kept) and then answered with a 500: the acquirer charged, the gateway
// cannot know it. For tests of ambiguous outcomes.
func (s *Simulator) FailAfterAuthorize(on bool) { s.failAfterAuthorize.Store(on) }

// ForgetIdempotencyKeys drops every Idempotency-Key the simulator
// remembers (in memory; a StatePath file keeps them until the next write),
// as an acquirer does once its keys expire or after a restart without its
// state: a replay is then a new request (a second capture of an
// authorization is refused as already_captured). For tests of resumptions
// that outlive the acquirer's memory.
func (s *Simulator) ForgetIdempotencyKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.idem)
}

func (s *Simulator) store(a *Authorization) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Reference != "" && s.reversed[a.Reference] && a.Status == "approved" {
		a.Status, a.Captured = "reversed", 0
	}
	s.auths[a.ID] = a
	return s.saveLocked()
}

func failNotSaved(w http.ResponseWriter) {
	fail(w, http.StatusInternalServerError, "state_not_saved", "the simulator could not save its state")
}

// reverse voids every authorization with a reference (the gateway's payment
// id) after a timeout, including one that completes later: a reversed
// authorization is never captured or settled.
func (s *Simulator) reverse(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req struct {
		Reference string `json:"reference"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Reference == "" {
		fail(w, http.StatusBadRequest, "invalid_request", "reference is required")
		return
	}
	s.mu.Lock()
	s.reversed[req.Reference] = true
	n := 0
	for _, a := range s.auths {
		if a.Reference == req.Reference && a.Status == "approved" {
			a.Status, a.Captured = "reversed", 0
			n++
		}
	}
	err := s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		failNotSaved(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reference": req.Reference, "reversed": n})
}

// withAuth runs fn on an authorization under the lock.
func (s *Simulator) withAuth(w http.ResponseWriter, r *http.Request, fn func(a *Authorization) (int, any)) {
	s.mu.Lock()
	a, ok := s.auths[r.PathValue("id")]
	if !ok {
		s.mu.Unlock()
		fail(w, http.StatusNotFound, "authorization_not_found", "no such authorization")
		return
	}
	status, v := fn(a)
	err := s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		failNotSaved(w)
		return
	}
	writeJSON(w, status, v)
}

func errBody(code, msg string) apiError {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	return e
}

type amountRequest struct {
	Amount int64 `json:"amount"`
}

func parseAmount(body []byte) (int64, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return 0, nil
	}
	var req amountRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	if req.Amount < 0 {
		return 0, errors.New("negative")
	}
	return req.Amount, nil
}

func (s *Simulator) capture(w http.ResponseWriter, r *http.Request, body []byte) {
	amount, err := parseAmount(body)
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid_amount", "amount must be a non-negative integer")
		return
	}
	s.withAuth(w, r, func(a *Authorization) (int, any) {
		switch {
		case a.Status != "approved":
			return http.StatusConflict, errBody("not_capturable", "only approved authorizations can be captured")
		case a.Captured > 0:
			return http.StatusConflict, errBody("already_captured", "an authorization is captured once")
		}
		if amount == 0 {
			amount = a.Amount
		}
		if amount > a.Amount {
			return http.StatusConflict, errBody("amount_exceeds_authorization", "capture exceeds the authorized amount")
		}
		a.Captured = amount
		return http.StatusOK, a
	})
}

func (s *Simulator) cancel(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.withAuth(w, r, func(a *Authorization) (int, any) {
		switch {
		case a.Status == "canceled":
			return http.StatusOK, a
		case a.Status != "approved" || a.Captured > 0:
			return http.StatusConflict, errBody("not_cancelable", "only an approved, uncaptured authorization can be canceled")
		}
		a.Status = "canceled"
		return http.StatusOK, a
	})
}

func (s *Simulator) refund(w http.ResponseWriter, r *http.Request, body []byte) {
	amount, err := parseAmount(body)
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid_amount", "amount must be a non-negative integer")
		return
	}
	s.withAuth(w, r, func(a *Authorization) (int, any) {
		left := a.Captured - a.Refunded
		if amount == 0 {
			amount = left
		}
		if a.Captured == 0 || amount <= 0 || amount > left {
			return http.StatusConflict, errBody("amount_exceeds_captured", "refunds cannot exceed the captured amount")
		}
		a.Refunded += amount
		a.RefundCount++
		return http.StatusOK, a
	})
}

func (s *Simulator) get(w http.ResponseWriter, r *http.Request) {
	s.withAuth(w, r, func(a *Authorization) (int, any) { return http.StatusOK, a })
}

// settlement answers the oldest report not yet acknowledged, closing a new
// one when there is none: every capture and refund not yet settled, and
// one step of each dispute test card's dispute (chargeback, then
// dispute_review, then dispute_won or dispute_lost), as CSV:
// acquirer_reference,amount,fee,currency,settled_date,type,reason,report_id.
// Reading it again answers the same report (Settlement-Report-Id) until it
// is acknowledged (POST /v1/settlements/{id}/ack).
func (s *Simulator) settlement(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reports {
		if !r.Acked {
			writeReport(w, r)
			return
		}
	}
	day := s.cfg.Now().UTC().Format("2006-01-02")
	r := &report{ID: fmt.Sprintf("stl_%04d", len(s.reports)+1)}
	fee := money.Fee{BasisPoints: s.cfg.FeeBasisPoints, Fixed: s.cfg.FeeFixed}
	type undo struct {
		a                      *Authorization
		settled, refundSettled int64
		stage                  int
		disputed               int64
	}
	var undos []undo
	row := func(a *Authorization, amount, fee int64, typ, reason string) {
		r.Rows = append(r.Rows, []string{a.ID, strconv.FormatInt(amount, 10), strconv.FormatInt(fee, 10), a.Currency, day, typ, reason})
	}
	for _, a := range s.sortedAuths() {
		undos = append(undos, undo{a, a.settled, a.refundSettled, a.disputeStage, a.disputed})
		if due := a.Captured - a.settled; due > 0 {
			f, _ := fee.Of(due)
			row(a, due, f, "capture", "")
			a.settled = a.Captured
		}
		if due := a.Refunded - a.refundSettled; due > 0 {
			row(a, -due, 0, "refund", "")
			a.refundSettled = a.Refunded
		}
		if a.dispute == "" || a.Captured == 0 {
			continue
		}
		switch a.disputeStage {
		case stageNone:
			if open := a.Captured - a.Refunded; open > 0 {
				row(a, -open, disputeFee, "chargeback", a.disputeReason)
				a.disputed, a.disputeStage = open, stageOpened
			}
		case stageOpened:
			row(a, 0, 0, "dispute_review", "")
			a.disputeStage = stageReviewed
		case stageReviewed:
			if a.dispute == "won" {
				row(a, a.disputed, disputeFee, "dispute_won", "")
			} else {
				row(a, 0, 0, "dispute_lost", "")
			}
			a.disputeStage = stageClosed
		}
	}
	if len(r.Rows) == 0 {
		// Nothing to settle: an empty report, not kept (nothing to ack).
		writeReport(w, r)
		return
	}
	s.reports = append(s.reports, r)
	if err := s.saveLocked(); err != nil {
		s.reports = s.reports[:len(s.reports)-1]
		for _, u := range undos {
			u.a.settled, u.a.refundSettled, u.a.disputeStage, u.a.disputed = u.settled, u.refundSettled, u.stage, u.disputed
		}
		failNotSaved(w)
		return
	}
	writeReport(w, r)
}

// reportHeader is the header of every report. Rows of reports kept by an
// older simulator have no reason; report_id is the report's own.
var reportHeader = []string{"acquirer_reference", "amount", "fee", "currency", "settled_date", "type", "reason", "report_id"}

func writeReport(w http.ResponseWriter, r *report) {
	w.Header().Set("Content-Type", "text/csv")
	if r.ID != "" && len(r.Rows) > 0 {
		w.Header().Set("Settlement-Report-Id", r.ID)
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(reportHeader)
	for _, row := range r.Rows {
		out := append(append([]string{}, row...), "", "")[:len(reportHeader)-1]
		_ = cw.Write(append(out, r.ID))
	}
	cw.Flush()
}

func (s *Simulator) findReport(id string) *report {
	for _, r := range s.reports {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// settlementByID answers a closed report again, acknowledged or not.
func (s *Simulator) settlementByID(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.findReport(r.PathValue("id"))
	if rep == nil {
		fail(w, http.StatusNotFound, "settlement_not_found", "no such settlement report")
		return
	}
	writeReport(w, rep)
}

// ackSettlement acknowledges a report (idempotent): the next read of
// /v1/settlements/next closes a new one.
func (s *Simulator) ackSettlement(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.findReport(r.PathValue("id"))
	if rep == nil {
		fail(w, http.StatusNotFound, "settlement_not_found", "no such settlement report")
		return
	}
	was := rep.Acked
	rep.Acked = true
	if err := s.saveLocked(); err != nil {
		rep.Acked = was
		failNotSaved(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": rep.ID, "acked": true, "lines": len(rep.Rows)})
}

func (s *Simulator) sortedAuths() []*Authorization {
	out := make([]*Authorization, 0, len(s.auths))
	for _, a := range s.auths {
		out = append(out, a)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && strings.Compare(out[j].CreatedAt+out[j].ID, out[j-1].CreatedAt+out[j-1].ID) < 0; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
