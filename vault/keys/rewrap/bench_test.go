package rewrap_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// BenchmarkRewrap measures the rewrap rate against real Vault transit and
// real PostgreSQL: each iteration rotates the KEK and rewraps 2,000 stored
// DEKs (real data keys wrapped by Vault). Reported as DEKs/s.
func BenchmarkRewrap(b *testing.B) {
	const deks = 2000
	v, pg := testenv.SharedVault(b), testenv.SharedPostgres(b)
	ks, err := transit.New(transit.Config{Address: v.Addr, Token: v.Token, KeyName: fmt.Sprintf("bench-kek-%d", time.Now().UnixNano()), FingerprintPath: "secret/data/obol/bench-fp"})
	require.NoError(b, err)
	ctx := context.Background()
	_, err = ks.Setup(ctx, transit.SetupOptions{})
	require.NoError(b, err)
	st, err := postgres.Open(ctx, pg.NewDatabase(b, "vault", postgres.MigrateURL), postgres.Options{})
	require.NoError(b, err)
	defer st.Close()
	for i := 0; i < deks; i++ {
		dk, err := ks.GenerateDataKey(ctx)
		require.NoError(b, err)
		require.NoError(b, st.InsertDEK(ctx, envelope.DEKRecord{ID: fmt.Sprintf("dek_%05d", i), Wrapped: dk.Wrapped, KEKVersion: dk.KEKVersion, CreatedAt: time.Now()}))
	}
	b.ResetTimer()
	var total int
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v.Do(b, "POST", "transit/keys/"+ks.KeyName()+"/rotate", nil)
		b.StartTimer()
		res, err := rewrap.Run(ctx, ks, st, 100, nil, nil)
		require.NoError(b, err, "rewrap")
		require.EqualValues(b, deks, res.Rewrapped, "rewrap: %+v", res)
		total += res.Rewrapped
		elapsed += res.Elapsed
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "DEKs/s")
}
