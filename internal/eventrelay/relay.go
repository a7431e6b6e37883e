// Package eventrelay delivers a producer's outbox of events to eventsd's
// internal PublishEvents, in batches: at least once (an entry is marked
// delivered only after eventsd answered), with no duplicate stored
// downstream (eventsd is idempotent by the event id the producer
// assigned), with exponential backoff and jitter while eventsd is
// unavailable, and a dead letter for an event eventsd refuses for good.
// ledgerd runs it over the ledger's outbox. PAN-free: events carry no card
// data.
package eventrelay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// Event is an event as its producer assigned it (the id eventsd is
// idempotent by, the object it reports, its JSON data).
type Event struct {
	ID            string
	Type          string
	MerchantID    string
	ObjectType    string
	ObjectID      string
	ObjectVersion int64
	Data          []byte
	CreatedAt     time.Time
}

// Entry is one outbox entry the relay delivers.
type Entry struct {
	Event
	// Attempts is how many deliveries failed so far.
	Attempts int
}

// Outbox is the producer's side: its due entries and how they went.
type Outbox interface {
	Due(ctx context.Context, now time.Time, limit int) ([]Entry, error)
	MarkDelivered(ctx context.Context, ids []string) error
	MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error
}

// Publisher is eventsd's PublishEvents (an eventsv1.EventLogServiceClient).
type Publisher interface {
	PublishEvents(ctx context.Context, in *eventsv1.PublishEventsRequest, opts ...grpc.CallOption) (*eventsv1.PublishEventsResponse, error)
}

var _ Publisher = eventsv1.EventLogServiceClient(nil)

// Config configures a relay.
type Config struct {
	Outbox    Outbox
	Publisher Publisher
	// Token is eventsd's service token (Authorization: Bearer …).
	Token string
	// Name labels the metrics: obol_<Name>_events_relayed_total.
	Name string
	// Batch is the most events per PublishEvents (default 100, at most 500).
	Batch int
	// Backoff is the first retry delay (default 1 s), doubled per failed
	// attempt up to MaxBackoff (default 5 min), with ±20 % jitter.
	Backoff, MaxBackoff time.Duration
	// CallTimeout bounds one PublishEvents (default 10 s).
	CallTimeout time.Duration
	Now         func() time.Time
	// Jitter returns a number in [0, 1) (default math/rand/v2).
	Jitter func() float64
	Logger *slog.Logger
}

// Relay delivers an outbox.
type Relay struct {
	cfg     Config
	relayed *prometheus.CounterVec
	// kick asks Run for a pass before the next tick (buffered: one
	// pending kick stands for any number).
	kick chan struct{}
}

// New returns a relay; Config.Outbox and Config.Publisher are required.
func New(cfg Config) *Relay {
	if cfg.Batch <= 0 || cfg.Batch > 500 {
		cfg.Batch = 100
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "producer"
	}
	return &Relay{cfg: cfg, kick: make(chan struct{}, 1), relayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_" + cfg.Name + "_events_relayed_total",
		Help: "Outbox events sent to eventsd, by outcome: delivered, retried (eventsd unavailable: backing off) or dead (refused for good)."}, []string{"outcome"})}
}

// Collectors are the relay's metrics.
func (r *Relay) Collectors() []prometheus.Collector { return []prometheus.Collector{r.relayed} }

// Result counts what one pass did.
type Result struct{ Delivered, Retried, Dead int }

// Run relays every interval, and at once after a Kick, until ctx ends.
func (r *Relay) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		r.drain(ctx)
	}
}

// Kick asks Run for a pass now: a producer calls it after committing
// events, so they reach eventsd in milliseconds rather than at the next
// tick. It never blocks, and the tick still delivers what a lost kick
// (a crash between commit and kick) leaves behind.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// drain relays passes until the outbox is drained or a pass fails.
func (r *Relay) drain(ctx context.Context) {
	for {
		res, err := r.Once(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("event relay pass incomplete", "err", err)
			}
			return
		}
		if res.Delivered < r.cfg.Batch { // drained (or backing off)
			return
		}
	}
}

// permanent reports whether eventsd's refusal will not change on retry.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}

// backoff is the wait after the n-th failed attempt (n ≥ 1).
func (r *Relay) backoff(n int) time.Duration {
	d := r.cfg.Backoff
	for i := 1; i < n && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*r.cfg.Jitter()))
}

func toPB(e Entry) *eventsv1.PublishedEvent {
	return &eventsv1.PublishedEvent{Id: e.ID, Type: e.Type, MerchantId: e.MerchantID, CreatedAt: timestamppb.New(e.CreatedAt),
		ObjectType: e.ObjectType, ObjectId: e.ObjectID, ObjectVersion: e.ObjectVersion, Data: e.Data}
}

// publish sends one batch.
func (r *Relay) publish(ctx context.Context, es []Entry) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.cfg.Token)
	req := &eventsv1.PublishEventsRequest{}
	for _, e := range es {
		req.Events = append(req.Events, toPB(e))
	}
	_, err := r.cfg.Publisher.PublishEvents(ctx, req)
	return err
}

// Once delivers the due entries, one batch: delivered ones are marked
// delivered; if eventsd refuses the batch for good, each entry is tried
// alone so that only the bad one goes dead; any other failure retries the
// whole batch later. A pass cut short (a crash, ctx ended) leaves its
// entries pending: they are sent again, and eventsd dedupes them by id.
func (r *Relay) Once(ctx context.Context) (Result, error) {
	var res Result
	now := r.cfg.Now()
	es, err := r.cfg.Outbox.Due(ctx, now, r.cfg.Batch)
	if err != nil || len(es) == 0 {
		return res, err
	}
	err = r.publish(ctx, es)
	switch {
	case err == nil:
		return r.delivered(ctx, res, es)
	case ctx.Err() != nil:
		return res, ctx.Err()
	case !permanent(err):
		return r.retry(ctx, res, es, err)
	}
	for _, e := range es { // isolate the refused event(s)
		err := r.publish(ctx, []Entry{e})
		switch {
		case err == nil:
			if res, err = r.delivered(ctx, res, []Entry{e}); err != nil {
				return res, err
			}
		case ctx.Err() != nil:
			return res, ctx.Err()
		case permanent(err):
			r.cfg.Logger.Error("eventsd refused an event for good: dead in the outbox", "event", e.ID, "type", e.Type, "code", status.Code(err).String())
			if err := r.cfg.Outbox.MarkFailed(ctx, e.ID, now, "refused: "+status.Code(err).String(), true); err != nil {
				return res, err
			}
			res.Dead++
			r.relayed.WithLabelValues("dead").Inc()
		default:
			if res, err = r.retry(ctx, res, []Entry{e}, err); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func (r *Relay) delivered(ctx context.Context, res Result, es []Entry) (Result, error) {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	if err := r.cfg.Outbox.MarkDelivered(ctx, ids); err != nil {
		return res, fmt.Errorf("mark delivered: %w", err)
	}
	res.Delivered += len(es)
	r.relayed.WithLabelValues("delivered").Add(float64(len(es)))
	return res, nil
}

func (r *Relay) retry(ctx context.Context, res Result, es []Entry, cause error) (Result, error) {
	now := r.cfg.Now()
	for _, e := range es {
		if err := r.cfg.Outbox.MarkFailed(ctx, e.ID, now.Add(r.backoff(e.Attempts+1)), "unavailable: "+status.Code(cause).String(), false); err != nil {
			return res, err
		}
		res.Retried++
		r.relayed.WithLabelValues("retried").Inc()
	}
	return res, nil
}

// EventID derives an event's id from its object, the object's version and
// the event type: producers assign it, so that an event written again (a
// retried state change, a re-import) or delivered again (after a crash)
// is the same event, and eventsd dedupes it.
func EventID(objectType, objectID string, version int64, eventType string) string {
	h := sha256.Sum256([]byte(objectType + "\x00" + objectID + "\x00" + strconv.FormatInt(version, 10) + "\x00" + eventType))
	return "evt_" + hex.EncodeToString(h[:12])
}
