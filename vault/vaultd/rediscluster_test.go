package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
)

// TestRedisClusterFailover: vaultd keeps CVCs on a real Redis Cluster (3
// primaries, a replica each). A primary is SIGKILLed: CVCs on its slots
// answer 503 storage_unavailable (gRPC Unavailable) until its replica is
// promoted, the others keep working; after the promotion every CVC is
// returned exactly once, none twice. The cluster's dump, the logs, the
// metrics and PostgreSQL hold no test card or CVC in clear (scanForLeaks).
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Vault, PostgreSQL and a Redis Cluster")
	}
	c := testenv.StartRedisCluster(t)
	s := newStack(t, stackOpts{cluster: c})
	ctx := context.Background()
	cards := []string{"4242424242424242", "5555555555554444", "2223003122003222", "6011111111111117", "3566002020360505", "6200000000000005", "4000056655665556", "5200828282828210", "4000002500003155", "4000000000003220", "5105105105105100", "4012888888881881"}
	type held struct {
		tok, cvc, owner string
		returned        int
	}
	var hs []*held
	for i, n := range cards {
		cvc := fmt.Sprintf("%03d", 100+i*7)
		r := s.tokenize(s.a.SecretKey, cardIn(n, 12, expYear, cvc))
		require.EqualValuesf(t, 200, r.status, "tokenize: %d %s", r.status, r.raw)
		tok := r.str("token")
		hs = append(hs, &held{tok: tok, cvc: cvc, owner: c.PrimaryFor(t, "obol:cvc:"+tok)})
	}
	owners := map[string]int{}
	for _, h := range hs {
		owners[h.owner]++
	}
	require.GreaterOrEqual(t, len(owners), 2, "the CVCs spread over the primaries: %v", owners)
	// The CVCs are on the replicas too before the kill (a Put is
	// acknowledged by the primary alone).
	require.NoError(t, c.Client(t).ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.Do(ctx, "WAIT", 1, 5000).Err()
	}))
	victim := hs[0].owner
	take := func(h *held) error {
		got, resp, err := s.detokenize(s.gw, s.a.MerchantID, h.tok, true)
		if err != nil {
			return err
		}
		if resp.GetCvcIncluded() {
			h.returned++
			assert.Equal(t, h.cvc, string(got.CVC.RevealDigits()))
		}
		got.Wipe()
		return nil
	}
	c.Kill(t, victim)
	start := time.Now()
	// During the outage: the victim's CVCs fail closed, the others work.
	var onVictim, elsewhere *held
	for _, h := range hs {
		if h.owner == victim && onVictim == nil {
			onVictim = h
		}
		if h.owner != victim && elsewhere == nil {
			elsewhere = h
		}
	}
	err := take(onVictim)
	require.Equal(t, codes.Unavailable, status.Code(err), "detokenize with a CVC on the killed primary: %v", err)
	assert.Equal(t, "storage_unavailable", apierr.From(err).Code, "detokenize with a CVC on the killed primary: %v", err)
	if elsewhere != nil {
		require.NoError(t, take(elsewhere), "a CVC on a live primary")
		require.Equal(t, 1, elsewhere.returned)
	}
	// Tokenizing during the outage: 200, or 503 storage_unavailable when
	// the new CVC's slot is the killed primary's; nothing else.
	outage := map[int]int{}
	for i := range 6 {
		r := s.tokenize(s.a.SecretKey, cardIn(cards[i], 11, expYear, "777"))
		outage[r.status]++
		if r.status != 200 {
			require.EqualValuesf(t, 503, r.status, "tokenize during the outage: %d %s", r.status, r.raw)
			require.Equal(t, "storage_unavailable", r.errCode(), "tokenize during the outage: %s", r.raw)
		}
	}
	promoted := c.WaitPromoted(t)
	t.Logf("killed %s; primaries %v after %s; tokenize during the outage by status: %v", victim, promoted, time.Since(start).Round(time.Millisecond), outage)
	// After the promotion every CVC is there, once.
	require.NoError(t, testenv.WaitFor(15*time.Second, func() error { return take(onVictim) }), "detokenize after the promotion")
	for _, h := range hs {
		if h != onVictim && h != elsewhere {
			require.NoError(t, take(h), "detokenize after the promotion")
		}
		require.NoError(t, take(h), "second detokenize")
		assert.Equalf(t, 1, h.returned, "times the CVC of %s was returned", h.tok)
	}
	r := s.rest(http.MethodGet, "/readyz", "", nil)
	assert.EqualValuesf(t, 200, r.status, "readyz after the promotion: %s", r.raw)
}
