package features_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/risk/features"
)

// loseDupAnswer drops (once, when armed) the answer of a sync script run
// that reported duplicates (flag 2): the script ran, its reply is lost.
type loseDupAnswer struct{ armed, lost atomic.Bool }

func (h *loseDupAnswer) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *loseDupAnswer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *loseDupAnswer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		name := strings.ToLower(cmd.Name())
		if err != nil || !h.armed.Load() || (name != "evalsha" && name != "eval") {
			return err
		}
		c, ok := cmd.(*redis.Cmd)
		if !ok {
			return err
		}
		res, _ := c.Slice()
		if len(res) == 10 {
			if flag, _ := res[1].(int64); flag == 2 && h.armed.CompareAndSwap(true, false) {
				h.lost.Store(true)
				lost := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
				cmd.SetErr(lost)
				return lost
			}
		}
		return err
	}
}

// TestLostDuplicateAnswerKeepsPayments guards this: a sync whose batch
// holds a payment another replica counted is answered "duplicates, nothing
// applied" (flag 2), but the script has already SET vbatch:<id>. When that
// answer is lost, the replica sends the same batch id again: the script
// now takes it as applied by a lost attempt (apply false), and the replica
// acknowledges its batch. The batch's other payments are never counted in
// Redis: every replica undercounts the merchant's (and card's) velocity.
// The script now frees the batch id when it applies nothing.
func TestLostDuplicateAnswerKeepsPayments(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	env := testenv.SharedRedis(t)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	prefix := uniqPrefix()
	hook := &loseDupAnswer{}
	rdbA := env.Client(t)
	rdbA.AddHook(hook)
	a := features.NewAggregated(rdbA, prefix, features.AggregatedOptions{Now: clk.Now})
	b := features.NewAggregated(env.Client(t), prefix, features.AggregatedOptions{Now: clk.Now})
	obs := func(pid, fp string) features.Observation {
		return features.Observation{Merchant: "mer_a", Fingerprint: fp, IP: "192.0.2.1", Device: "dev_1", Amount: 100, Now: clk.Now(), PaymentID: pid}
	}
	require.NoError(t, a.Sync(ctx)) // a has synced (and scanned) before b counts p1
	_, err := b.Observe(ctx, obs("p1", "fp_1"), true)
	require.NoError(t, err)
	require.NoError(t, b.Sync(ctx))

	// a sees p1 again (a retry routed to it) and a new payment p2.
	_, err = a.Observe(ctx, obs("p1", "fp_1"), true)
	require.NoError(t, err)
	_, err = a.Observe(ctx, obs("p2", "fp_2"), true)
	require.NoError(t, err)
	hook.armed.Store(true)
	_ = a.Sync(ctx) // the duplicates answer is lost
	require.True(t, hook.lost.Load(), "the test did not reach the duplicates answer")
	for i := 0; i < 3; i++ {
		if a.Sync(ctx) == nil {
			break
		}
	}

	// A replica started now reads Redis: p1 and p2 are two payments.
	c := features.NewAggregated(env.Client(t), prefix, features.AggregatedOptions{Now: clk.Now})
	r, err := c.Observe(ctx, obs("", "fp_3"), false)
	require.NoError(t, err)
	assert.EqualValues(t, 2, r.Merchant.Count_1M, "the merchant's payments in Redis (p1 by b, p2 by a)")
}
