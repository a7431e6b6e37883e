package service

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable clock for tests.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// never is a renewal ticker that never ticks: the tests renew by hand.
func never(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }

func keyed(key string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", key))
}

// TestIdempotencyLease: two gateway instances on one database race for
// one Idempotency-Key. While the first holds a live lease the second gets
// idempotency_request_in_progress; renewals keep the lease; once the first
// stops renewing (it crashed, or lost the database) the second takes the
// key over within the lease (10 s, not 2 minutes), and the first, having
// lost its lease, neither acts nor writes the result.
func TestIdempotencyLease(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			a := New(Config{Store: st, Now: clk.Now, NewTicker: never})
			b := New(Config{Store: st, Now: clk.Now, NewTicker: never})
			req := &gatewayv1.GetPaymentRequest{Id: "pay_x"}

			started, release := make(chan *lease), make(chan struct{})
			var aErr error
			var aOut *gatewayv1.Payment
			var actedAfterLoss atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				aOut, aErr = a.idempotent(keyed("k1"), "mer_1", "create", req, func(ctx context.Context, _, _ string) (*Payment, error) {
					started <- ctx.Value(leaseKey{}).(*lease)
					<-release
					if checkLease(ctx) == nil {
						actedAfterLoss.Store(true)
					}
					return &Payment{ID: "pay_A"}, nil
				})
			}()
			la := <-started
			busy := func(at string) {
				t.Helper()
				_, err := b.idempotent(keyed("k1"), "mer_1", "create", req, func(context.Context, string, string) (*Payment, error) {
					require.FailNowf(t, "the second instance ran while the first held the lease", "at %s", at)
					return nil, nil
				})
				assert.ErrorIs(t, err, apierr.ErrIdempotencyInProgress, at)
			}
			clk.Advance(5 * time.Second)
			busy("t+5s")
			require.True(t, la.renew(context.Background()), "renewal at t+5s")
			clk.Advance(8 * time.Second) // t+13s: the renewed lease runs to t+15s
			busy("t+13s")
			clk.Advance(3 * time.Second) // t+16s: not renewed since t+5s
			out, err := b.idempotent(keyed("k1"), "mer_1", "create", req, func(ctx context.Context, _, _ string) (*Payment, error) {
				require.NoError(t, checkLease(ctx))
				return &Payment{ID: "pay_B"}, nil
			})
			require.NoError(t, err, "takeover after the lease expired")
			assert.Equal(t, "pay_B", out.GetId())

			assert.False(t, la.renew(context.Background()), "the first instance's renewal after the takeover")
			close(release)
			wg.Wait()
			require.NoError(t, aErr)
			assert.Equal(t, "pay_A", aOut.GetId())
			assert.False(t, actedAfterLoss.Load(), "the first instance may not act once its lease is lost")

			// The stored result is the new owner's.
			c := New(Config{Store: st, Now: clk.Now, NewTicker: never})
			again, err := c.idempotent(keyed("k1"), "mer_1", "create", req, func(context.Context, string, string) (*Payment, error) {
				require.FailNow(t, "a finished key ran again")
				return nil, nil
			})
			require.NoError(t, err)
			assert.Equal(t, "pay_B", again.GetId())
		})
	}
}
