// Package server is eventsd's internal gRPC API, obol.events.v1
// EventLogService: producers publish events (idempotent by id); the
// gateway forwards the merchants' EventService calls with the merchant id
// it authenticated. Every call needs eventsd's service token. Errors are
// typed and name the field. Outside PCI scope.
package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/servicetoken"
	"github.com/obolpay/obol/ledger/events/delivery"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// Types are the event types producers may publish.
var Types = []string{
	"payment.authorized", "payment.captured", "payment.declined", "payment.failed", "payment.canceled",
	"refund.created",
	"dispute.created", "dispute.updated", "dispute.closed",
	"payout.paid", "payout.failed",
	"settlement.reconciled",
	"webhook_endpoint.disabled", "webhook_endpoint.test",
}

// Limits.
const (
	MaxBatch       = 500
	MaxData        = 256 << 10
	MaxIDLength    = 128
	MaxDescription = 512
	// MaxEndpoints bounds a merchant's webhook endpoints (each event fans
	// out to every one).
	MaxEndpoints   = 16
	DefaultOverlap = 24 * time.Hour
	MaxOverlap     = 7 * 24 * time.Hour
	defaultPage    = 20
	maxPage        = 100
)

// Service implements eventsv1.EventLogServiceServer.
type Service struct {
	eventsv1.UnimplementedEventLogServiceServer
	st     *store.Store
	policy *webhook.Policy
	sealer *webhook.Sealer
	token  string
	now    func() time.Time
	notify func()
}

var _ eventsv1.EventLogServiceServer = (*Service)(nil)

// Config configures the service.
type Config struct {
	Store  *store.Store
	Policy *webhook.Policy
	Sealer *webhook.Sealer
	// Token (required) authenticates every call.
	Token string
	Now   func() time.Time
	// Notify is called when deliveries became due (the dispatcher wakes).
	Notify func()
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	return &Service{st: cfg.Store, policy: cfg.Policy, sealer: cfg.Sealer, token: cfg.Token, now: cfg.Now, notify: cfg.Notify}
}

var errUnauthenticated = servicetoken.Required("events")

func (s *Service) auth(ctx context.Context) error {
	return servicetoken.Check(ctx, s.token, errUnauthenticated)
}

func invalid(code, field, msg string) error { return apierr.Invalid(code, field, msg) }

func required(field string) error {
	return invalid(apierr.CodeFieldRequired, field, field+" is required")
}

func notFound(code, field, msg string) error {
	return apierr.New(apierr.KindNotFound, code, field, msg)
}

// public maps store errors; anything else is the database failing.
func public(err error) error {
	if err == nil {
		return nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return err
	}
	switch {
	case errors.Is(err, store.ErrConcurrentUpdate):
		return apierr.New(apierr.KindConflict, "concurrent_update", "id", "the endpoint changed concurrently; read it and retry")
	case errors.Is(err, store.ErrNotFound):
		return notFound(apierr.CodeNotFound, "id", "no such object")
	}
	return apierr.StorageUnavailable(err)
}

// CodeRateLimited: an endpoint's test events and redeliveries exceeded
// store.ManualBurst per store.ManualWindow.
const CodeRateLimited = "rate_limited"

// rateLimited is the 429 (with its Retry-After) of a manual delivery
// beyond its endpoint's limit, or nil when err is not one.
func rateLimited(err error, field string) error {
	var rl *store.RateLimitedError
	if !errors.As(err, &rl) {
		return nil
	}
	e := apierr.New(apierr.KindRateLimited, CodeRateLimited, field,
		fmt.Sprintf("at most %d test events and redeliveries per endpoint per %s; retry after the Retry-After seconds", store.ManualBurst, store.ManualWindow))
	e.RetryAfter = rl.RetryAfter
	return e
}

func validID(id, prefix string) bool {
	if !strings.HasPrefix(id, prefix) || len(id) <= len(prefix) || len(id) > MaxIDLength {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// hasNUL: PostgreSQL text cannot hold a NUL character, so one reaching a
// query is a storage error (503) rather than the caller's mistake.
func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// PublishEvents appends a batch of events (atomically, idempotently by id).
func (s *Service) PublishEvents(ctx context.Context, req *eventsv1.PublishEventsRequest) (*eventsv1.PublishEventsResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	evs := req.GetEvents()
	if len(evs) == 0 {
		return nil, required("events")
	}
	if len(evs) > MaxBatch {
		return nil, invalid("too_many_events", "events", fmt.Sprintf("at most %d events per batch", MaxBatch))
	}
	batch := make([]store.Event, len(evs))
	seen := map[string]bool{}
	for i, e := range evs {
		f := func(name string) string { return fmt.Sprintf("events[%d].%s", i, name) }
		switch {
		case !validID(e.GetId(), "evt_"):
			return nil, invalid("event_id_invalid", f("id"), "id must be evt_ followed by letters, digits, _ or - (at most 128 characters)")
		case seen[e.GetId()]:
			return nil, invalid("event_id_duplicate", f("id"), "an id appears twice in the batch")
		case !slices.Contains(Types, e.GetType()) || e.GetType() == "webhook_endpoint.test":
			return nil, invalid("event_type_invalid", f("type"), "type must be one of "+strings.Join(Types[:len(Types)-1], ", "))
		case e.GetMerchantId() == "":
			return nil, required(f("merchant_id"))
		case len(e.GetMerchantId()) > MaxIDLength || hasNUL(e.GetMerchantId()):
			return nil, invalid("merchant_id_invalid", f("merchant_id"), "merchant_id must be at most 128 characters, without NUL")
		case e.GetCreatedAt() == nil:
			return nil, required(f("created_at"))
		case e.GetObjectType() == "" || len(e.GetObjectType()) > 64 || hasNUL(e.GetObjectType()):
			return nil, invalid("object_type_invalid", f("object_type"), "object_type is required (at most 64 characters)")
		case e.GetObjectId() == "" || len(e.GetObjectId()) > MaxIDLength || hasNUL(e.GetObjectId()):
			return nil, invalid("object_id_invalid", f("object_id"), "object_id is required (at most 128 characters)")
		case e.GetObjectVersion() < 0:
			return nil, invalid("object_version_invalid", f("object_version"), "object_version must not be negative")
		case len(e.GetData()) > MaxData:
			return nil, invalid("data_too_large", f("data"), fmt.Sprintf("data must be at most %d bytes", MaxData))
		}
		if err := e.GetCreatedAt().CheckValid(); err != nil {
			return nil, invalid("created_at_invalid", f("created_at"), "created_at is not a valid time")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e.GetData(), &obj); err != nil || obj == nil {
			return nil, invalid("data_invalid", f("data"), "data must be one JSON object")
		}
		if cardtext.Contains(string(e.GetData())) {
			return nil, invalid("data_contains_card_number", f("data"), "data must not contain a card number")
		}
		seen[e.GetId()] = true
		batch[i] = store.Event{ID: e.GetId(), MerchantID: e.GetMerchantId(), Type: e.GetType(), CreatedAt: e.GetCreatedAt().AsTime(),
			ObjectType: e.GetObjectType(), ObjectID: e.GetObjectId(), ObjectVersion: e.GetObjectVersion(), Data: compact(e.GetData())}
	}
	n, dup, err := s.st.Publish(ctx, batch, "", s.now())
	if errors.Is(err, store.ErrEventConflict) {
		field := "events"
		if i := strings.Index(err.Error(), "]"); strings.HasPrefix(err.Error(), "events[") && i > 0 {
			field = err.Error()[:i+1] + ".id"
		}
		return nil, apierr.New(apierr.KindConflict, "event_id_reused", field, "this event id was published before with other content")
	}
	if err != nil {
		return nil, public(err)
	}
	if n > 0 {
		s.notify()
	}
	return &eventsv1.PublishEventsResponse{Published: int32(n), Duplicates: int32(dup)}, nil
}

func compact(b []byte) json.RawMessage {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

// merchant checks the forwarded merchant id and request.
func (s *Service) merchant(ctx context.Context, merchantID string, present bool) error {
	if err := s.auth(ctx); err != nil {
		return err
	}
	if merchantID == "" {
		return required("merchant_id")
	}
	if len(merchantID) > MaxIDLength || hasNUL(merchantID) {
		return invalid("merchant_id_invalid", "merchant_id", "merchant_id must be at most 128 characters, without NUL")
	}
	if !present {
		return required("request")
	}
	return nil
}

// EventProto is the API form of an event.
func EventProto(e store.Event) (*eventsv1.Event, error) {
	data := &structpb.Struct{}
	if err := protojson.Unmarshal(e.Data, data); err != nil {
		return nil, fmt.Errorf("event %s: data: %w", e.ID, err)
	}
	return &eventsv1.Event{Id: e.ID, Type: e.Type, MerchantId: e.MerchantID, CreatedAt: timestamppb.New(e.CreatedAt), ObjectType: e.ObjectType,
		ObjectId: e.ObjectID, ObjectVersion: e.ObjectVersion, Data: data}, nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return defaultPage, nil
	case n < 0 || n > maxPage:
		return 0, invalid("page_size_invalid", "page_size", fmt.Sprintf("page_size must be 1-%d", maxPage))
	}
	return int(n), nil
}

var errPageToken = invalid("page_token_invalid", "page_token", "page_token must be a next_page_token returned by this call")

// EncodeCursor and DecodeCursor are the page tokens of newest-first lists.
func EncodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.At.UnixMicro(), 10) + ":" + c.ID))
}

// DecodeCursor parses a page token ("" is the first page).
func DecodeCursor(tok string) (*store.Cursor, error) {
	if tok == "" {
		return nil, nil
	}
	if len(tok) > 400 {
		return nil, errPageToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, errPageToken
	}
	at, id, ok := strings.Cut(string(raw), ":")
	if !ok || !validID(id, "") {
		return nil, errPageToken
	}
	us, err := strconv.ParseInt(at, 10, 64)
	if err != nil || us < 0 {
		return nil, errPageToken
	}
	return &store.Cursor{At: time.UnixMicro(us).UTC(), ID: id}, nil
}

// ListEvents lists a merchant's events, newest first.
func (s *Service) ListEvents(ctx context.Context, wrap *eventsv1.EventLogListEventsRequest) (*eventsv1.ListEventsResponse, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	cur, err := DecodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if len(req.GetObjectId()) > MaxIDLength || hasNUL(req.GetObjectId()) {
		return nil, invalid("object_id_invalid", "object_id", "object_id must be at most 128 characters, without NUL")
	}
	f := store.EventFilter{After: cur, Limit: size + 1, ObjectID: req.GetObjectId()}
	for _, t := range req.GetTypes() {
		if !slices.Contains(Types, t) {
			return nil, invalid("event_type_invalid", "types", "types must be event types, e.g. payment.captured")
		}
		f.Types = append(f.Types, t)
	}
	if ts := req.GetCreatedAfter(); ts != nil {
		if ts.CheckValid() != nil {
			return nil, invalid("created_after_invalid", "created_after", "created_after is not a valid time")
		}
		f.CreatedAfter = ts.AsTime()
	}
	if ts := req.GetCreatedBefore(); ts != nil {
		if ts.CheckValid() != nil {
			return nil, invalid("created_before_invalid", "created_before", "created_before is not a valid time")
		}
		f.CreatedBefore = ts.AsTime()
	}
	evs, err := s.st.Events(ctx, wrap.GetMerchantId(), f)
	if err != nil {
		return nil, public(err)
	}
	out := &eventsv1.ListEventsResponse{}
	if len(evs) > size {
		evs = evs[:size]
		last := evs[size-1]
		out.NextPageToken = EncodeCursor(store.Cursor{At: last.CreatedAt, ID: last.ID})
	}
	for _, e := range evs {
		p, err := EventProto(e)
		if err != nil {
			return nil, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
		}
		out.Events = append(out.Events, p)
	}
	return out, nil
}

// GetEvent reads a merchant's event.
func (s *Service) GetEvent(ctx context.Context, wrap *eventsv1.EventLogGetEventRequest) (*eventsv1.Event, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	id := wrap.GetRequest().GetId()
	if id == "" {
		return nil, required("id")
	}
	if !validID(id, "evt_") {
		return nil, notFound("event_not_found", "id", "no such event")
	}
	e, err := s.st.Event(ctx, wrap.GetMerchantId(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("event_not_found", "id", "no such event")
	}
	if err != nil {
		return nil, public(err)
	}
	p, err := EventProto(e)
	if err != nil {
		return nil, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	return p, nil
}

// EndpointProto is the API form of an endpoint (never its secret).
func EndpointProto(e store.Endpoint) *eventsv1.WebhookEndpoint {
	p := &eventsv1.WebhookEndpoint{Id: e.ID, Url: e.URL, Events: e.Types, Description: e.Description, Status: e.Status,
		DisabledReason: e.DisabledReason, CreatedAt: timestamppb.New(e.CreatedAt), UpdatedAt: timestamppb.New(e.UpdatedAt)}
	if e.PrevSecret != "" && !e.PrevSecretExpiresAt.IsZero() {
		p.PreviousSecretExpiresAt = timestamppb.New(e.PrevSecretExpiresAt)
	}
	return p
}

func endpointTypes(types []string, field string) ([]string, error) {
	if len(types) == 0 {
		return nil, invalid(apierr.CodeFieldRequired, field, "events must list at least one event type, or \"*\"")
	}
	var out []string
	for i, t := range types {
		if t != "*" && !slices.Contains(Types, t) {
			return nil, invalid("event_type_invalid", fmt.Sprintf("%s[%d]", field, i), "events must be event types (e.g. payment.captured) or \"*\"")
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// CodeCardNumberInText: an endpoint's url or description looks like it
// carries a card number (both are stored, returned, and sent in events).
const CodeCardNumberInText = "card_number_in_text"

func cardInText(field string) error {
	return invalid(CodeCardNumberInText, field, field+" looks like it contains a card number")
}

func (s *Service) checkURL(ctx context.Context, raw string) error {
	// Before anything resolves the host: a card number in it must not
	// reach a DNS server either.
	if cardtext.Contains(raw) {
		return cardInText("url")
	}
	if _, err := s.policy.CheckURL(ctx, raw); err != nil {
		var ue *webhook.URLError
		if errors.As(err, &ue) {
			if ue.Code == "url_address_refused" {
				return apierr.New(apierr.KindPermissionDenied, ue.Code, "url", ue.Message)
			}
			return invalid(ue.Code, "url", ue.Message)
		}
		return invalid("url_invalid", "url", "url is not valid")
	}
	return nil
}

func checkDescription(d string) error {
	switch {
	case len(d) > MaxDescription:
		return invalid("description_too_long", "description", fmt.Sprintf("description must be at most %d bytes", MaxDescription))
	case hasNUL(d):
		return invalid("description_invalid", "description", "description must not contain NUL characters")
	case cardtext.Contains(d):
		return cardInText("description")
	}
	return nil
}

func (s *Service) notFoundEndpoint(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound("webhook_endpoint_not_found", "id", "no such webhook endpoint")
	}
	return public(err)
}

// CreateWebhookEndpoint registers an endpoint; the answer carries its
// secret, the only time it is shown.
func (s *Service) CreateWebhookEndpoint(ctx context.Context, wrap *eventsv1.EventLogCreateWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	if err := s.checkURL(ctx, req.GetUrl()); err != nil {
		return nil, err
	}
	types, err := endpointTypes(req.GetEvents(), "events")
	if err != nil {
		return nil, err
	}
	if err := checkDescription(req.GetDescription()); err != nil {
		return nil, err
	}
	id := store.NewID("we_")
	secret := webhook.NewSecret()
	e, err := s.st.CreateEndpoint(ctx, store.Endpoint{ID: id, MerchantID: wrap.GetMerchantId(), URL: req.GetUrl(), Types: types, Description: req.GetDescription(),
		Status: store.StatusEnabled, Secret: s.sealer.Seal(id, secret), CreatedAt: s.now()}, MaxEndpoints)
	if errors.Is(err, store.ErrTooManyEndpoints) {
		return nil, apierr.New(apierr.KindFailedPrecondition, "too_many_webhook_endpoints", "url", fmt.Sprintf("a merchant has at most %d webhook endpoints: delete one first", MaxEndpoints))
	}
	if err != nil {
		return nil, public(err)
	}
	p := EndpointProto(e)
	p.Secret = secret
	return p, nil
}

// ListWebhookEndpoints lists a merchant's endpoints by id.
func (s *Service) ListWebhookEndpoints(ctx context.Context, wrap *eventsv1.EventLogListWebhookEndpointsRequest) (*eventsv1.ListWebhookEndpointsResponse, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !validID(string(raw), "we_") {
			return nil, errPageToken
		}
		after = string(raw)
	}
	eps, err := s.st.Endpoints(ctx, wrap.GetMerchantId(), after, size+1)
	if err != nil {
		return nil, public(err)
	}
	out := &eventsv1.ListWebhookEndpointsResponse{}
	if len(eps) > size {
		eps = eps[:size]
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(eps[size-1].ID))
	}
	for _, e := range eps {
		out.WebhookEndpoints = append(out.WebhookEndpoints, EndpointProto(e))
	}
	return out, nil
}

func (s *Service) endpoint(ctx context.Context, merchant, id string) (store.Endpoint, error) {
	if id == "" {
		return store.Endpoint{}, required("id")
	}
	if !validID(id, "we_") {
		return store.Endpoint{}, notFound("webhook_endpoint_not_found", "id", "no such webhook endpoint")
	}
	e, err := s.st.Endpoint(ctx, merchant, id)
	if err != nil {
		return e, s.notFoundEndpoint(err)
	}
	return e, nil
}

// merchantEndpoint checks the call (see merchant) and reads the merchant's
// endpoint id.
func (s *Service) merchantEndpoint(ctx context.Context, merchantID string, present bool, id string) (store.Endpoint, error) {
	if err := s.merchant(ctx, merchantID, present); err != nil {
		return store.Endpoint{}, err
	}
	return s.endpoint(ctx, merchantID, id)
}

// GetWebhookEndpoint reads an endpoint.
func (s *Service) GetWebhookEndpoint(ctx context.Context, wrap *eventsv1.EventLogGetWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	e, err := s.merchantEndpoint(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil, wrap.GetRequest().GetId())
	if err != nil {
		return nil, err
	}
	return EndpointProto(e), nil
}

// UpdateWebhookEndpoint changes the fields present.
func (s *Service) UpdateWebhookEndpoint(ctx context.Context, wrap *eventsv1.EventLogUpdateWebhookEndpointRequest) (*eventsv1.WebhookEndpoint, error) {
	req := wrap.GetRequest()
	e, err := s.merchantEndpoint(ctx, wrap.GetMerchantId(), req != nil, req.GetId())
	if err != nil {
		return nil, err
	}
	if req.Url != nil {
		if err := s.checkURL(ctx, req.GetUrl()); err != nil {
			return nil, err
		}
		e.URL = req.GetUrl()
	}
	if len(req.GetEvents()) > 0 {
		if e.Types, err = endpointTypes(req.GetEvents(), "events"); err != nil {
			return nil, err
		}
	}
	if req.Description != nil {
		if err := checkDescription(req.GetDescription()); err != nil {
			return nil, err
		}
		e.Description = req.GetDescription()
	}
	if req.Status != nil {
		switch req.GetStatus() {
		case store.StatusEnabled:
			e.Status, e.DisabledReason = store.StatusEnabled, ""
		case store.StatusDisabled:
			if e.Status != store.StatusDisabled {
				e.Status, e.DisabledReason = store.StatusDisabled, "disabled by the merchant"
			}
		default:
			return nil, invalid("status_invalid", "status", "status must be enabled or disabled")
		}
	}
	e, err = s.st.UpdateEndpoint(ctx, e, s.now())
	if err != nil {
		return nil, s.notFoundEndpoint(err)
	}
	if e.Status == store.StatusEnabled {
		s.notify()
	}
	return EndpointProto(e), nil
}

// DeleteWebhookEndpoint deletes an endpoint and its pending deliveries.
func (s *Service) DeleteWebhookEndpoint(ctx context.Context, wrap *eventsv1.EventLogDeleteWebhookEndpointRequest) (*eventsv1.DeleteWebhookEndpointResponse, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	id := wrap.GetRequest().GetId()
	if id == "" {
		return nil, required("id")
	}
	if !validID(id, "we_") {
		return nil, notFound("webhook_endpoint_not_found", "id", "no such webhook endpoint")
	}
	if err := s.st.DeleteEndpoint(ctx, wrap.GetMerchantId(), id); err != nil {
		return nil, s.notFoundEndpoint(err)
	}
	return &eventsv1.DeleteWebhookEndpointResponse{Id: id, Deleted: true}, nil
}

// RotateWebhookEndpointSecret issues a new secret; the previous one keeps
// signing during the overlap.
func (s *Service) RotateWebhookEndpointSecret(ctx context.Context, wrap *eventsv1.EventLogRotateWebhookEndpointSecretRequest) (*eventsv1.WebhookEndpoint, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	overlap := DefaultOverlap
	if req.OverlapSeconds != nil {
		sec := req.GetOverlapSeconds()
		if sec < 0 || sec > int64(MaxOverlap/time.Second) {
			return nil, invalid("overlap_seconds_invalid", "overlap_seconds", fmt.Sprintf("overlap_seconds must be 0-%d", int64(MaxOverlap/time.Second)))
		}
		overlap = time.Duration(sec) * time.Second
	}
	e, err := s.endpoint(ctx, wrap.GetMerchantId(), req.GetId())
	if err != nil {
		return nil, err
	}
	secret := webhook.NewSecret()
	now := s.now()
	if overlap > 0 {
		e.PrevSecret, e.PrevSecretExpiresAt = e.Secret, now.Add(overlap)
	} else {
		e.PrevSecret, e.PrevSecretExpiresAt = "", time.Time{}
	}
	e.Secret = s.sealer.Seal(e.ID, secret)
	e, err = s.st.UpdateEndpoint(ctx, e, now)
	if err != nil {
		return nil, s.notFoundEndpoint(err)
	}
	p := EndpointProto(e)
	p.Secret = secret
	return p, nil
}

// SendTestEvent delivers a webhook_endpoint.test event to one endpoint,
// within the endpoint's rate limit of manual deliveries (429 rate_limited).
func (s *Service) SendTestEvent(ctx context.Context, wrap *eventsv1.EventLogSendTestEventRequest) (*eventsv1.Event, error) {
	e, err := s.merchantEndpoint(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil, wrap.GetRequest().GetId())
	if err != nil {
		return nil, err
	}
	if e.Status != store.StatusEnabled {
		return nil, apierr.New(apierr.KindFailedPrecondition, "webhook_endpoint_disabled", "id", "the endpoint is disabled: enable it first")
	}
	now := s.now()
	data, _ := json.Marshal(delivery.EndpointData{ID: e.ID, URL: e.URL, Events: e.Types, Description: e.Description, Status: e.Status, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt})
	ev := store.Event{ID: store.NewID("evt_"), MerchantID: e.MerchantID, Type: "webhook_endpoint.test", CreatedAt: now, ObjectType: "webhook_endpoint",
		ObjectID: e.ID, ObjectVersion: e.Version, Data: data}
	if _, _, err := s.st.Publish(ctx, []store.Event{ev}, e.ID, now); err != nil {
		if rl := rateLimited(err, "id"); rl != nil {
			return nil, rl
		}
		return nil, public(err)
	}
	s.notify()
	ev.CreatedAt = ev.CreatedAt.UTC().Truncate(time.Microsecond)
	p, err := EventProto(ev)
	if err != nil {
		return nil, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	return p, nil
}

// ListDeliveryAttempts lists an endpoint's attempts, newest first.
func (s *Service) ListDeliveryAttempts(ctx context.Context, wrap *eventsv1.EventLogListDeliveryAttemptsRequest) (*eventsv1.ListDeliveryAttemptsResponse, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	if req.GetEndpointId() == "" {
		return nil, required("endpoint_id")
	}
	if !validID(req.GetEndpointId(), "we_") {
		return nil, notFound("webhook_endpoint_not_found", "endpoint_id", "no such webhook endpoint")
	}
	if ev := req.GetEventId(); ev != "" && !validID(ev, "evt_") {
		return nil, invalid("event_id_invalid", "event_id", "event_id must be an event id (evt_…)")
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	cur, err := DecodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	atts, err := s.st.Attempts(ctx, wrap.GetMerchantId(), req.GetEndpointId(), store.AttemptFilter{EventID: req.GetEventId(), After: cur, Limit: size + 1})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("webhook_endpoint_not_found", "endpoint_id", "no such webhook endpoint")
	}
	if err != nil {
		return nil, public(err)
	}
	out := &eventsv1.ListDeliveryAttemptsResponse{}
	if len(atts) > size {
		atts = atts[:size]
		last := atts[size-1]
		out.NextPageToken = EncodeCursor(store.Cursor{At: last.StartedAt, ID: last.ID})
	}
	for _, a := range atts {
		out.Attempts = append(out.Attempts, &eventsv1.DeliveryAttempt{Id: a.ID, DeliveryId: a.DeliveryID, EventId: a.EventID, EndpointId: a.EndpointID,
			Attempt: int32(a.Attempt), StartedAt: timestamppb.New(a.StartedAt), ResponseStatus: int32(a.ResponseStatus), LatencyMs: a.Latency.Milliseconds(),
			Error: a.Error, Succeeded: a.Succeeded})
	}
	return out, nil
}

// RedeliverEvent schedules a new delivery of an event to an endpoint,
// within the endpoint's rate limit of manual deliveries (429 rate_limited).
func (s *Service) RedeliverEvent(ctx context.Context, wrap *eventsv1.EventLogRedeliverEventRequest) (*eventsv1.Delivery, error) {
	if err := s.merchant(ctx, wrap.GetMerchantId(), wrap.GetRequest() != nil); err != nil {
		return nil, err
	}
	req := wrap.GetRequest()
	if req.GetId() == "" {
		return nil, required("id")
	}
	if req.GetEndpointId() == "" {
		return nil, required("endpoint_id")
	}
	if !validID(req.GetId(), "evt_") {
		return nil, notFound("event_not_found", "id", "no such event")
	}
	if !validID(req.GetEndpointId(), "we_") {
		return nil, notFound("webhook_endpoint_not_found", "endpoint_id", "no such webhook endpoint")
	}
	d, err := s.st.Redeliver(ctx, wrap.GetMerchantId(), req.GetId(), req.GetEndpointId(), s.now())
	if rl := rateLimited(err, "endpoint_id"); rl != nil {
		return nil, rl
	}
	if errors.Is(err, store.ErrEndpointDisabled) {
		return nil, apierr.New(apierr.KindFailedPrecondition, "webhook_endpoint_disabled", "endpoint_id", "the endpoint is disabled: enable it first")
	}
	if errors.Is(err, store.ErrNotFound) {
		if strings.HasPrefix(err.Error(), "event") {
			return nil, notFound("event_not_found", "id", "no such event")
		}
		return nil, notFound("webhook_endpoint_not_found", "endpoint_id", "no such webhook endpoint")
	}
	if err != nil {
		return nil, public(err)
	}
	s.notify()
	return DeliveryProto(d), nil
}

// DeliveryProto is the API form of a delivery.
func DeliveryProto(d store.Delivery) *eventsv1.Delivery {
	p := &eventsv1.Delivery{Id: d.ID, EventId: d.EventID, EndpointId: d.EndpointID, Status: d.Status, Attempts: int32(d.Attempts), CreatedAt: timestamppb.New(d.CreatedAt)}
	if d.Status == store.DeliveryPending {
		p.NextAttemptAt = timestamppb.New(d.NextAttemptAt)
	}
	return p
}
