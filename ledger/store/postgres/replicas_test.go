package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/store/postgres"
)

// TestReplicasShareOneChain: two stores on one database (two ledgerd
// replicas, active-active) post concurrently, to one hot account and to
// others, with some ids sent to both. Their batches take the journal's
// chain heads (each head held by one batch at a time, in either process)
// and meet on the hot account's row (compare-and-set, then a locked
// rerun): no chain forks or has a gap, every transfer is there once, and
// balances are exact.
func TestReplicasShareOneChain(t *testing.T) {
	a, url := open(t)
	b, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	mustAccount(t, a, "hot", "USD", 0)
	for i := 0; i < 10; i++ {
		mustAccount(t, a, fmt.Sprintf("c%d", i), "USD", 0)
	}
	const perReplica, shared = 150, 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*(perReplica+shared))
	for r, s := range []*postgres.Store{a, b} {
		for i := 0; i < perReplica; i++ {
			wg.Go(func() {
				_, err := s.Post(ctx, transfer(fmt.Sprintf("r%d-%d", r, i), "hot", fmt.Sprintf("c%d", i%10), 1))
				errs <- err
			})
		}
		for i := 0; i < shared; i++ { // the same id at both replicas: one posts, one replays
			wg.Go(func() {
				_, err := s.Post(ctx, transfer(fmt.Sprintf("both-%d", i), fmt.Sprintf("c%d", i%10), "hot", 2))
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	hot, err := a.Account(ctx, "hot")
	require.NoError(t, err)
	assert.EqualValues(t, -2*perReplica+2*shared, hot.Balance.Posted, "hot account")
	var sum int64
	for i := 0; i < 10; i++ {
		c, err := b.Account(ctx, fmt.Sprintf("c%d", i))
		require.NoError(t, err)
		sum += c.Balance.Posted
	}
	assert.EqualValues(t, 2*perReplica-2*shared, sum, "the other accounts")
	rep, err := a.Verify(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems, "verify")
	assert.EqualValues(t, 2*perReplica+shared, rep.Transactions, "every transfer once")
}
