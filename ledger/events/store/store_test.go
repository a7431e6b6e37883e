package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func event(id, merchant, typ string, at time.Time) store.Event {
	return store.Event{ID: id, MerchantID: merchant, Type: typ, CreatedAt: at, ObjectType: "payment", ObjectID: "pay_" + id, ObjectVersion: 1,
		Data: json.RawMessage(`{"id":"pay_` + id + `","amount":1000}`)}
}

func endpoint(t *testing.T, s *store.Store, merchant string, types ...string) store.Endpoint {
	t.Helper()
	e, err := s.CreateEndpoint(context.Background(), store.Endpoint{ID: store.NewID("we_"), MerchantID: merchant, URL: "https://example.com/hook",
		Types: types, Status: store.StatusEnabled, Secret: "sealed", CreatedAt: t0}, 0)
	require.NoError(t, err)
	return e
}

func TestConformance(t *testing.T) {
	for name, open := range storetest.Backends() {
		t.Run(name, func(t *testing.T) {
			t.Run("publish is idempotent by id and fans out once", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				all := endpoint(t, s, "m1", "*")
				caps := endpoint(t, s, "m1", "payment.captured")
				endpoint(t, s, "m2", "*")
				batch := []store.Event{event("evt_1", "m1", "payment.authorized", t0), event("evt_2", "m1", "payment.captured", t0)}
				n, dup, err := s.Publish(ctx, batch, "", t0)
				require.NoError(t, err)
				assert.Equal(t, [2]int{2, 0}, [2]int{n, dup})
				n, dup, err = s.Publish(ctx, batch, "", t0.Add(time.Minute))
				require.NoError(t, err)
				assert.Equal(t, [2]int{0, 2}, [2]int{n, dup})
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Equal(t, 3, counts[store.DeliveryPending], "evt_1 to the * endpoint, evt_2 to both")
				leased, err := s.Lease(ctx, "w", t0, t0.Add(time.Minute), 10, store.LeaseLimits{})
				require.NoError(t, err)
				got := map[string][]string{}
				for _, l := range leased {
					got[l.Endpoint.ID] = append(got[l.Endpoint.ID], l.Event.ID)
				}
				assert.ElementsMatch(t, []string{"evt_1", "evt_2"}, got[all.ID])
				assert.Equal(t, []string{"evt_2"}, got[caps.ID])
			})
			t.Run("concurrent creations cannot pass the endpoint bound", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				const bound, tries = 4, 24
				var wg sync.WaitGroup
				errs := make(chan error, tries)
				for range tries {
					wg.Go(func() {
						_, err := s.CreateEndpoint(ctx, store.Endpoint{ID: store.NewID("we_"), MerchantID: "m1", URL: "https://example.com/hook",
							Types: []string{"*"}, Status: store.StatusEnabled, Secret: "sealed", CreatedAt: t0}, bound)
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				created := 0
				for err := range errs {
					if err == nil {
						created++
						continue
					}
					require.ErrorIs(t, err, store.ErrTooManyEndpoints)
				}
				eps, err := s.Endpoints(ctx, "m1", "", 100)
				require.NoError(t, err)
				assert.Len(t, eps, bound)
				assert.Equal(t, bound, created)
				_, err = s.CreateEndpoint(ctx, store.Endpoint{ID: store.NewID("we_"), MerchantID: "m2", URL: "https://example.com/hook",
					Types: []string{"*"}, Status: store.StatusEnabled, Secret: "sealed", CreatedAt: t0}, bound)
				require.NoError(t, err, "the bound is per merchant")
			})
			t.Run("same id with other content is refused", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				other := event("evt_1", "m1", "payment.captured", t0)
				_, _, err = s.Publish(ctx, []store.Event{event("evt_3", "m1", "payment.authorized", t0), other}, "", t0)
				require.ErrorIs(t, err, store.ErrEventConflict)
				_, err = s.Event(ctx, "m1", "evt_3")
				require.ErrorIs(t, err, store.ErrNotFound, "the batch is atomic")
			})
			t.Run("concurrent publishes of one id store it once", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				endpoint(t, s, "m1", "*")
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range errs {
					wg.Go(func() {
						for {
							_, _, errs[i] = s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
							if errs[i] == nil || !isBusy(errs[i]) {
								return
							}
						}
					})
				}
				wg.Wait()
				for _, err := range errs {
					require.NoError(t, err)
				}
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Equal(t, 1, counts[store.DeliveryPending])
			})
			t.Run("list filters and pages newest first", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				var batch []store.Event
				for i := range 7 {
					typ := "payment.authorized"
					if i%2 == 1 {
						typ = "refund.created"
					}
					batch = append(batch, event(fmt.Sprintf("evt_%d", i), "m1", typ, t0.Add(time.Duration(i/2)*time.Second)))
				}
				batch = append(batch, event("evt_other", "m2", "payment.authorized", t0))
				_, _, err := s.Publish(ctx, batch, "", t0)
				require.NoError(t, err)
				var ids []string
				var cur *store.Cursor
				for {
					page, err := s.Events(ctx, "m1", store.EventFilter{After: cur, Limit: 3})
					require.NoError(t, err)
					for _, e := range page {
						ids = append(ids, e.ID)
					}
					if len(page) < 3 {
						break
					}
					last := page[len(page)-1]
					cur = &store.Cursor{At: last.CreatedAt, ID: last.ID}
				}
				assert.Equal(t, []string{"evt_6", "evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"}, ids)
				refunds, err := s.Events(ctx, "m1", store.EventFilter{Types: []string{"refund.created"}, Limit: 10})
				require.NoError(t, err)
				assert.Len(t, refunds, 3)
				window, err := s.Events(ctx, "m1", store.EventFilter{CreatedAfter: t0.Add(time.Second), CreatedBefore: t0.Add(3 * time.Second), Limit: 10})
				require.NoError(t, err)
				assert.Len(t, window, 4)
				byObject, err := s.Events(ctx, "m1", store.EventFilter{ObjectID: "pay_evt_2", Limit: 10})
				require.NoError(t, err)
				require.Len(t, byObject, 1)
				assert.JSONEq(t, `{"id":"pay_evt_2","amount":1000}`, string(byObject[0].Data))
				_, err = s.Event(ctx, "m1", "evt_other")
				assert.ErrorIs(t, err, store.ErrNotFound, "another merchant's event")
			})
			t.Run("a lease excludes other workers until it runs out", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				a, err := s.Lease(ctx, "a", t0, t0.Add(30*time.Second), 10, store.LeaseLimits{})
				require.NoError(t, err)
				require.Len(t, a, 1)
				b, err := s.Lease(ctx, "b", t0.Add(10*time.Second), t0.Add(40*time.Second), 10, store.LeaseLimits{})
				require.NoError(t, err)
				assert.Empty(t, b)
				b, err = s.Lease(ctx, "b", t0.Add(31*time.Second), t0.Add(60*time.Second), 10, store.LeaseLimits{})
				require.NoError(t, err)
				require.Len(t, b, 1, "a's lease ran out: b takes over")
				att := store.Attempt{ID: store.NewID("att_"), DeliveryID: a[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, ResponseStatus: 200, Succeeded: true}
				held, err := s.Finish(ctx, "a", att, store.Outcome{Status: store.DeliverySucceeded}, t0.Add(32*time.Second))
				require.NoError(t, err)
				assert.False(t, held, "a lost the lease")
				att.ID = store.NewID("att_")
				held, err = s.Finish(ctx, "b", att, store.Outcome{Status: store.DeliverySucceeded}, t0.Add(33*time.Second))
				require.NoError(t, err)
				assert.True(t, held)
				d, err := s.Delivery(ctx, a[0].Delivery.ID)
				require.NoError(t, err)
				assert.Equal(t, store.DeliverySucceeded, d.Status)
				assert.Equal(t, 1, d.Attempts)
				atts, err := s.Attempts(ctx, "m1", ep.ID, store.AttemptFilter{Limit: 10})
				require.NoError(t, err)
				assert.Len(t, atts, 2, "both attempts are recorded")
				ok, err := s.SucceededSince(ctx, ep.ID, t0)
				require.NoError(t, err)
				assert.True(t, ok)
			})
			t.Run("retry is due at its time; disabled endpoints are not leased", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				watcher := endpoint(t, s, "m1", "webhook_endpoint.disabled")
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				l, err := s.Lease(ctx, "a", t0, t0.Add(time.Minute), 10, store.LeaseLimits{})
				require.NoError(t, err)
				require.Len(t, l, 1)
				held, err := s.Finish(ctx, "a", store.Attempt{ID: store.NewID("att_"), DeliveryID: l[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, Error: "HTTP 500"},
					store.Outcome{Status: store.DeliveryPending, NextAttemptAt: t0.Add(time.Hour)}, t0)
				require.NoError(t, err)
				require.True(t, held)
				l, err = s.Lease(ctx, "a", t0.Add(59*time.Minute), t0.Add(61*time.Minute), 10, store.LeaseLimits{})
				require.NoError(t, err)
				assert.Empty(t, l)
				disabledEvent := func(e store.Endpoint) store.Event {
					return store.Event{ID: "evt_disabled_" + e.ID, MerchantID: e.MerchantID, Type: "webhook_endpoint.disabled", CreatedAt: t0, ObjectType: "webhook_endpoint", ObjectID: e.ID, ObjectVersion: e.Version, Data: json.RawMessage(`{}`)}
				}
				done, err := s.DisableEndpoint(ctx, ep.ID, "failing", disabledEvent, t0)
				require.NoError(t, err)
				assert.True(t, done)
				done, err = s.DisableEndpoint(ctx, ep.ID, "failing", disabledEvent, t0)
				require.NoError(t, err)
				assert.False(t, done, "already disabled")
				l, err = s.Lease(ctx, "a", t0.Add(2*time.Hour), t0.Add(3*time.Hour), 10, store.LeaseLimits{})
				require.NoError(t, err)
				require.Len(t, l, 1, "only the watcher's delivery of the disabled event")
				assert.Equal(t, watcher.ID, l[0].Endpoint.ID)
				assert.Equal(t, "webhook_endpoint.disabled", l[0].Event.Type)
				got, err := s.Endpoint(ctx, "m1", ep.ID)
				require.NoError(t, err)
				assert.Equal(t, store.StatusDisabled, got.Status)
				assert.Equal(t, "failing", got.DisabledReason)
			})
			t.Run("leasing is fair and bounded per endpoint and merchant, across workers", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				// Merchant B's endpoint hangs with 300 due deliveries (the
				// oldest); merchant B's second endpoint has 10; merchant A's
				// one delivery is the newest.
				hung := endpoint(t, s, "mB", "payment.authorized")
				other := endpoint(t, s, "mB", "payment.captured")
				a := endpoint(t, s, "mA", "*")
				for i := range 3 { // the oldest three
					_, _, err := s.Publish(ctx, []store.Event{event(fmt.Sprintf("evt_b%03d", i), "mB", "payment.authorized", t0)}, "", t0.Add(-2*time.Hour).Add(time.Duration(i)*time.Second))
					require.NoError(t, err)
				}
				var batch []store.Event
				for i := 3; i < 300; i++ {
					batch = append(batch, event(fmt.Sprintf("evt_b%03d", i), "mB", "payment.authorized", t0))
				}
				_, _, err := s.Publish(ctx, batch, "", t0.Add(-time.Hour))
				require.NoError(t, err)
				batch = batch[:0]
				for i := range 10 {
					batch = append(batch, event(fmt.Sprintf("evt_o%d", i), "mB", "payment.captured", t0))
				}
				_, _, err = s.Publish(ctx, batch, "", t0.Add(-time.Minute))
				require.NoError(t, err)
				_, _, err = s.Publish(ctx, []store.Event{event("evt_a", "mA", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				lim := store.LeaseLimits{PerEndpoint: 4, PerMerchant: 6}
				byEndpoint := func(ls []store.Leased) map[string]int {
					out := map[string]int{}
					for _, l := range ls {
						out[l.Endpoint.ID]++
					}
					return out
				}
				first, err := s.Lease(ctx, "w1", t0, t0.Add(time.Minute), 64, lim)
				require.NoError(t, err)
				assert.Equal(t, map[string]int{hung.ID: 3, other.ID: 3, a.ID: 1}, byEndpoint(first), "round-robin within 6 per merchant: A not starved")
				var hungIDs []string
				for _, l := range first {
					if l.Endpoint.ID == hung.ID {
						hungIDs = append(hungIDs, l.Event.ID)
					}
				}
				assert.ElementsMatch(t, []string{"evt_b000", "evt_b001", "evt_b002"}, hungIDs, "oldest first within an endpoint")
				// Another worker: the leases in the database count.
				second, err := s.Lease(ctx, "w2", t0.Add(time.Second), t0.Add(time.Minute), 64, lim)
				require.NoError(t, err)
				assert.Empty(t, second, "merchant B is at its bound, A has nothing due")
				_, _, err = s.Publish(ctx, []store.Event{event("evt_a2", "mA", "payment.authorized", t0)}, "", t0.Add(time.Second))
				require.NoError(t, err)
				second, err = s.Lease(ctx, "w2", t0.Add(time.Second), t0.Add(time.Minute), 64, lim)
				require.NoError(t, err)
				require.Len(t, second, 1)
				assert.Equal(t, "evt_a2", second[0].Event.ID)
				// Finished deliveries free their slots.
				for _, l := range first {
					if l.Endpoint.ID == other.ID {
						held, err := s.Finish(ctx, "w1", store.Attempt{ID: store.NewID("att_"), DeliveryID: l.Delivery.ID, EventID: l.Event.ID, EndpointID: l.Endpoint.ID, Attempt: 1, StartedAt: t0, ResponseStatus: 200, Succeeded: true},
							store.Outcome{Status: store.DeliverySucceeded}, t0.Add(2*time.Second))
						require.NoError(t, err)
						require.True(t, held)
					}
				}
				third, err := s.Lease(ctx, "w2", t0.Add(3*time.Second), t0.Add(time.Minute), 64, lim)
				require.NoError(t, err)
				assert.Equal(t, map[string]int{hung.ID: 1, other.ID: 2}, byEndpoint(third), "the hung endpoint reaches its bound of 4")
				// A crashed worker's slots free when its leases run out.
				later, err := s.Lease(ctx, "w3", t0.Add(2*time.Minute), t0.Add(3*time.Minute), 64, lim)
				require.NoError(t, err)
				assert.Equal(t, map[string]int{hung.ID: 3, other.ID: 3, a.ID: 2}, byEndpoint(later))
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Equal(t, 309, counts[store.DeliveryPending])
				assert.Equal(t, 3, counts[store.DeliverySucceeded])
			})
			t.Run("test events and redeliveries are rate limited per endpoint", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				ep2 := endpoint(t, s, "m1", "*")
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				for i := range store.ManualBurst {
					if i%2 == 0 {
						_, err = s.Redeliver(ctx, "m1", "evt_1", ep.ID, t0.Add(time.Duration(i)*time.Second))
					} else {
						_, _, err = s.Publish(ctx, []store.Event{event(fmt.Sprintf("evt_t%d", i), "m1", "webhook_endpoint.test", t0)}, ep.ID, t0.Add(time.Duration(i)*time.Second))
					}
					require.NoError(t, err, i)
				}
				at := t0.Add(30 * time.Second)
				_, err = s.Redeliver(ctx, "m1", "evt_1", ep.ID, at)
				var rl *store.RateLimitedError
				require.ErrorAs(t, err, &rl)
				assert.ErrorIs(t, err, store.ErrRateLimited)
				assert.Equal(t, 30*time.Second, rl.RetryAfter, "the oldest leaves the window at t0+1m")
				_, _, err = s.Publish(ctx, []store.Event{event("evt_t99", "m1", "webhook_endpoint.test", t0)}, ep.ID, at)
				require.ErrorIs(t, err, store.ErrRateLimited)
				_, err = s.Event(ctx, "m1", "evt_t99")
				require.ErrorIs(t, err, store.ErrNotFound, "a refused test event is not stored")
				_, err = s.Redeliver(ctx, "m1", "evt_1", ep2.ID, at)
				require.NoError(t, err, "the limit is per endpoint")
				_, _, err = s.Publish(ctx, []store.Event{event("evt_2", "m1", "payment.authorized", t0)}, "", at)
				require.NoError(t, err, "events are not limited")
				_, err = s.Redeliver(ctx, "m1", "evt_1", ep.ID, t0.Add(time.Minute))
				require.NoError(t, err, "the oldest left the window")
			})
			t.Run("endpoint update is versioned; delete cascades; redeliver", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				upd := ep
				upd.URL = "https://example.org/new"
				upd, err := s.UpdateEndpoint(ctx, upd, t0.Add(time.Second))
				require.NoError(t, err)
				assert.Equal(t, int64(2), upd.Version)
				_, err = s.UpdateEndpoint(ctx, ep, t0.Add(2*time.Second))
				require.ErrorIs(t, err, store.ErrConcurrentUpdate)
				_, _, err = s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				d, err := s.Redeliver(ctx, "m1", "evt_1", ep.ID, t0)
				require.NoError(t, err)
				assert.Equal(t, "evt_1", d.EventID)
				_, err = s.Redeliver(ctx, "m2", "evt_1", ep.ID, t0)
				require.ErrorIs(t, err, store.ErrNotFound)
				list, err := s.Endpoints(ctx, "m1", "", 10)
				require.NoError(t, err)
				require.Len(t, list, 1)
				assert.Equal(t, "https://example.org/new", list[0].URL)
				require.ErrorIs(t, s.DeleteEndpoint(ctx, "m2", ep.ID), store.ErrNotFound)
				leased, err := s.Lease(ctx, "w", t0, t0.Add(time.Minute), 10, store.LeaseLimits{})
				require.NoError(t, err)
				require.NotEmpty(t, leased)
				require.NoError(t, s.DeleteEndpoint(ctx, "m1", ep.ID))
				held, err := s.Finish(ctx, "w", store.Attempt{ID: store.NewID("att_"), DeliveryID: leased[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, ResponseStatus: 200, Succeeded: true},
					store.Outcome{Status: store.DeliverySucceeded}, t0)
				require.NoError(t, err, "an attempt of a delivery deleted meanwhile is dropped, not an error")
				assert.False(t, held)
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Empty(t, counts)
			})
		})
	}
}

func isBusy(err error) bool {
	var e interface{ Code() int }
	return errors.As(err, &e) && e.Code()&0xff == 5 // SQLITE_BUSY
}
