package rotation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/rotation"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// BenchmarkRewrap measures the rewrap rate against real Vault transit and
// real PostgreSQL: each iteration rotates the KEK and rewraps 2,000 stored
// DEKs (real data keys wrapped by Vault). Reported as DEKs/s.
func BenchmarkRewrap(b *testing.B) {
	const deks = 2000
	v, pg := testenv.SharedVault(b), testenv.SharedPostgres(b)
	ks, err := transit.New(transit.Config{Address: v.Addr, Token: v.Token, KeyName: fmt.Sprintf("bench-kek-%d", time.Now().UnixNano()), FingerprintPath: "secret/data/obol/bench-fp"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ks.Setup(ctx, transit.SetupOptions{}); err != nil {
		b.Fatal(err)
	}
	st, err := postgres.Open(ctx, pg.NewDatabase(b, "vault", postgres.MigrateURL), postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < deks; i++ {
		dk, err := ks.GenerateDataKey(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.InsertDEK(ctx, envelope.DEKRecord{ID: fmt.Sprintf("dek_%05d", i), Wrapped: dk.Wrapped, KEKVersion: dk.KEKVersion, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var total int
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v.Do(b, "POST", "transit/keys/"+ks.KeyName()+"/rotate", nil)
		b.StartTimer()
		res, err := rotation.Rewrap(ctx, ks, st, 100, nil, nil)
		if err != nil || res.Rewrapped != deks {
			b.Fatalf("rewrap: %+v %v", res, err)
		}
		total += res.Rewrapped
		elapsed += res.Elapsed
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "DEKs/s")
}
