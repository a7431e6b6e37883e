// Package delivery is eventsd's webhook dispatcher: workers lease due
// deliveries from the database (a lease, not memory: a crashed eventsd's
// deliveries are picked up again when their leases run out), post them
// signed, record every attempt and retry with exponential backoff and
// jitter for up to three days; an endpoint whose delivery gave up without
// any success meanwhile is disabled (and a webhook_endpoint.disabled event
// published). At least once: a receiver dedupes on webhook-id (the event
// id). The clock is injected. Outside PCI scope.
package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/webhook"
)

// Defaults.
const (
	DefaultRetryFor    = 72 * time.Hour
	DefaultBaseDelay   = 5 * time.Second
	DefaultMaxDelay    = 12 * time.Hour
	DefaultConcurrency = 64
	// DefaultPerEndpoint bounds the attempts in flight to one endpoint.
	DefaultPerEndpoint = 4
	DefaultPoll        = time.Second
)

// Config configures a Dispatcher.
type Config struct {
	Store  *store.Store
	Sender *webhook.Sender
	Sealer *webhook.Sealer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Owner names this worker in leases (default a random id).
	Owner string
	// Lease is how long a delivery is held for one attempt (default three
	// times the send timeout plus 30 s).
	Lease time.Duration
	// Concurrency bounds the attempts in flight.
	Concurrency int
	// PerEndpoint and PerMerchant bound the attempts in flight to one
	// endpoint (default 4) and to one merchant's endpoints (default a
	// quarter of Concurrency, at least PerEndpoint), across every worker
	// (the leases in the database count): an endpoint that hangs holds
	// that many workers, not all of them.
	PerEndpoint, PerMerchant int
	// RetryFor is how long a delivery is retried (default 3 days).
	RetryFor time.Duration
	// BaseDelay and MaxDelay shape the backoff: BaseDelay·2^(n-1), at most
	// MaxDelay, with jitter (the delay is drawn from its upper half).
	BaseDelay, MaxDelay time.Duration
	// Jitter returns a number in [0, 1) (default math/rand).
	Jitter func() float64
	// Poll is how often Run looks for due deliveries when not woken.
	Poll   time.Duration
	Logger *slog.Logger
}

// Dispatcher delivers webhooks.
type Dispatcher struct {
	cfg      Config
	wake     chan struct{}
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
}

// New returns a dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owner == "" {
		cfg.Owner = store.NewID("worker_")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3*webhook.DefaultTimeout + 30*time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.PerEndpoint <= 0 {
		cfg.PerEndpoint = DefaultPerEndpoint
	}
	if cfg.PerMerchant <= 0 {
		cfg.PerMerchant = max(cfg.Concurrency/4, cfg.PerEndpoint)
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{
		cfg:  cfg,
		wake: make(chan struct{}, 1),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "obol_events_webhook_attempts_total", Help: "Webhook delivery attempts by result (ok, failed, refused).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "obol_events_webhook_attempt_seconds", Help: "Webhook delivery attempt latency.", Buckets: prometheus.DefBuckets,
		}),
	}
}

// Collectors are the dispatcher's metrics.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.attempts, d.latency}
}

// Notify wakes Run (new deliveries are due).
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Backoff is the delay before attempt n+1 after n failed attempts.
func (d *Dispatcher) Backoff(n int) time.Duration {
	delay := d.cfg.MaxDelay
	if n < 40 {
		if x := d.cfg.BaseDelay << (n - 1); x > 0 && x < delay {
			delay = x
		}
	}
	return delay/2 + time.Duration(d.cfg.Jitter()*float64(delay/2))
}

func (d *Dispatcher) limits() store.LeaseLimits {
	return store.LeaseLimits{PerEndpoint: d.cfg.PerEndpoint, PerMerchant: d.cfg.PerMerchant}
}

// RunOnce leases the due deliveries (up to Concurrency), attempts them
// all and returns how many it attempted.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	now := d.cfg.Now()
	leased, err := d.cfg.Store.Lease(ctx, d.cfg.Owner, now, now.Add(d.cfg.Lease), d.cfg.Concurrency, d.limits())
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, l := range leased {
		wg.Go(func() { d.attempt(ctx, l) })
	}
	wg.Wait()
	return len(leased), nil
}

// Run delivers until ctx ends: it leases as many due deliveries as it has
// free slots, whenever a slot frees, it is woken, or Poll passes.
func (d *Dispatcher) Run(ctx context.Context) {
	slots := make(chan struct{}, d.cfg.Concurrency)
	done := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	// Lease in batches: after a completion, only once a quarter of the
	// slots are free (a wake-up or the poll leases whatever is free).
	batch := max(1, d.cfg.Concurrency/4)
	woken := true
	for {
		if free := cap(slots) - len(slots); free > 0 && (woken || free >= batch) {
			now := d.cfg.Now()
			leased, err := d.cfg.Store.Lease(ctx, d.cfg.Owner, now, now.Add(d.cfg.Lease), free, d.limits())
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("leasing webhook deliveries failed", "err", err)
			}
			for _, l := range leased {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() { <-slots; done <- struct{}{} }()
					d.attempt(ctx, l)
				})
			}
			if len(leased) == free {
				continue // more may be due
			}
		}
		woken = false
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			woken = true
		case <-done:
		case <-tick.C:
			woken = true
		}
		for len(done) > 0 {
			<-done
		}
	}
}

// Payload is the JSON body of a webhook: the event.
type Payload struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	MerchantID    string          `json:"merchant_id"`
	CreatedAt     time.Time       `json:"created_at"`
	ObjectType    string          `json:"object_type"`
	ObjectID      string          `json:"object_id"`
	ObjectVersion int64           `json:"object_version,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// Body is the webhook body of an event.
func Body(e store.Event) ([]byte, error) {
	return json.Marshal(Payload{ID: e.ID, Type: e.Type, MerchantID: e.MerchantID, CreatedAt: e.CreatedAt.UTC(), ObjectType: e.ObjectType,
		ObjectID: e.ObjectID, ObjectVersion: e.ObjectVersion, Data: e.Data})
}

// Keys returns the signing keys of an endpoint at now: its secret's, and
// the previous secret's while the rotation overlap lasts.
func Keys(s *webhook.Sealer, e store.Endpoint, now time.Time) ([][]byte, error) {
	sec, err := s.Open(e.ID, e.Secret)
	if err != nil {
		return nil, err
	}
	k, err := webhook.SecretKey(sec)
	if err != nil {
		return nil, err
	}
	keys := [][]byte{k}
	if e.PrevSecret != "" && now.Before(e.PrevSecretExpiresAt) {
		prev, err := s.Open(e.ID, e.PrevSecret)
		if err != nil {
			return nil, err
		}
		pk, err := webhook.SecretKey(prev)
		if err != nil {
			return nil, err
		}
		keys = append(keys, pk)
	}
	return keys, nil
}

func (d *Dispatcher) attempt(ctx context.Context, l store.Leased) {
	now := d.cfg.Now()
	n := l.Delivery.Attempts + 1
	a := store.Attempt{ID: store.NewID("att_"), DeliveryID: l.Delivery.ID, EventID: l.Event.ID, EndpointID: l.Endpoint.ID, Attempt: n, StartedAt: now}
	body, err := Body(l.Event)
	var keys [][]byte
	if err == nil {
		keys, err = Keys(d.cfg.Sealer, l.Endpoint, now)
	}
	if err != nil {
		a.Error = "signing secret unavailable"
		d.cfg.Logger.Error("webhook secret does not open", "endpoint", l.Endpoint.ID, "err", err)
	} else {
		r := d.cfg.Sender.Send(ctx, webhook.Message{URL: l.Endpoint.URL, ID: l.Event.ID, Timestamp: now, Body: body, Keys: keys})
		a.ResponseStatus, a.Latency, a.Error, a.Succeeded = r.Status, r.Latency, r.Err, r.OK()
		result := "ok"
		switch {
		case r.Refused:
			result = "refused"
		case !r.OK():
			result = "failed"
		}
		d.attempts.WithLabelValues(result).Inc()
		d.latency.Observe(r.Latency.Seconds())
	}
	if ctx.Err() != nil && !a.Succeeded {
		return // shutting down: the lease runs out and the delivery is retried
	}
	end := d.cfg.Now()
	o := store.Outcome{Status: store.DeliverySucceeded}
	switch {
	case a.Succeeded:
	case end.Sub(l.Delivery.CreatedAt) >= d.cfg.RetryFor:
		o.Status = store.DeliveryFailed
	default:
		o.Status, o.NextAttemptAt = store.DeliveryPending, end.Add(d.Backoff(n))
	}
	// Recording must not be cut short by shutdown: the POST happened.
	rctx := context.WithoutCancel(ctx)
	held, err := d.cfg.Store.Finish(rctx, d.cfg.Owner, a, o, end)
	if err != nil {
		d.cfg.Logger.Warn("recording a webhook attempt failed (it will be retried)", "delivery", l.Delivery.ID, "err", err)
		return
	}
	if !held || o.Status != store.DeliveryFailed {
		return
	}
	ok, err := d.cfg.Store.SucceededSince(rctx, l.Endpoint.ID, l.Delivery.CreatedAt)
	if err != nil || ok {
		return
	}
	reason := fmt.Sprintf("deliveries failed for %s (last: %s)", d.cfg.RetryFor, a.Error)
	if _, err := d.cfg.Store.DisableEndpoint(rctx, l.Endpoint.ID, reason, func(e store.Endpoint) store.Event { return DisabledEvent(e, end) }, end); err != nil {
		d.cfg.Logger.Warn("disabling a failing webhook endpoint failed", "endpoint", l.Endpoint.ID, "err", err)
		return
	}
	d.cfg.Logger.Warn("webhook endpoint disabled after persistent failure", "endpoint", l.Endpoint.ID)
}

// EndpointData is an endpoint's PAN-free, secret-free representation (the
// data of its events), as the API returns it.
type EndpointData struct {
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Description    string    `json:"description,omitempty"`
	Status         string    `json:"status"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// DisabledEvent is the webhook_endpoint.disabled event of an endpoint at
// its (new) version; its id derives from the endpoint id and version, so
// a repeat is the same event.
func DisabledEvent(e store.Endpoint, now time.Time) store.Event {
	data, _ := json.Marshal(EndpointData{ID: e.ID, URL: e.URL, Events: e.Types, Description: e.Description, Status: e.Status,
		DisabledReason: e.DisabledReason, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt})
	return store.Event{ID: DerivedID(e.ID, e.Version, "webhook_endpoint.disabled"), MerchantID: e.MerchantID, Type: "webhook_endpoint.disabled", CreatedAt: now,
		ObjectType: "webhook_endpoint", ObjectID: e.ID, ObjectVersion: e.Version, Data: data}
}

// DerivedID is a deterministic event id: evt_ and 24 hex digits of the
// SHA-256 of the object id, version and type.
func DerivedID(objectID string, version int64, typ string) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s", objectID, version, typ)))
	return "evt_" + hex.EncodeToString(h[:12])
}
