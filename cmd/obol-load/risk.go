package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/testenv"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/riskd"
)

// runRisk measures riskd's Evaluate over gRPC with the default rule set and
// velocity features on a real redis-server, conc clients.
func runRisk(dur, warmup time.Duration, conc int, cpuprofile string) {
	dir, err := os.MkdirTemp("", "obol-load-")
	if err != nil {
		panic(err)
	}
	t := &tb{dir: dir}
	defer t.cleanup()
	fmt.Println("starting Redis …")
	r := testenv.StartRedis(t)
	var in *riskd.Instance
	as("riskd", func() {
		in, err = riskd.Start(context.Background(), riskd.Config{RedisURL: r.URL, Token: "load", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	})
	if err != nil {
		t.Fatalf("riskd: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	as("riskd", func() { go func() { done <- in.Serve(ctx) }() })
	t.Cleanup(func() { cancel(); <-done; in.Close() })
	const conns = 4
	var clients []riskv1.RiskServiceClient
	// The clients' connections (and their transport goroutines) count as
	// the load client's.
	as("load client", func() {
		for i := 0; i < conns; i++ {
			c, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatalf("%v", err)
			}
			t.Cleanup(func() { c.Close() })
			c.Connect()
			clients = append(clients, riskv1.NewRiskServiceClient(c))
		}
	})
	md := metadata.Pairs("authorization", "Bearer load")
	countries := []string{"US", "GB", "DE", ""}
	var n atomic.Int64
	eval := func() error {
		c := clients[n.Add(1)%conns]
		card := rand.IntN(20000)
		p := &riskv1.Payment{
			MerchantId: fmt.Sprintf("mer_%d", rand.IntN(50)), Amount: int64(100 + rand.IntN(200000)), Currency: "USD", Bin: "424242",
			Fingerprint: fmt.Sprintf("fp_%d", card), CustomerIp: fmt.Sprintf("192.0.2.%d", rand.IntN(250)), DeviceId: fmt.Sprintf("dev_%d", card%5000),
			EmailHash: fmt.Sprintf("em_%d", card%8000), BillingCountry: countries[rand.IntN(len(countries))],
		}
		_, err := c.Evaluate(metadata.NewOutgoingContext(context.Background(), md), &riskv1.EvaluateRequest{Payment: p})
		return err
	}
	fmt.Printf("riskd Evaluate over gRPC, default rule set %s, %d clients, %s measured after %s warm-up\n\n", in.Engine.Active().Version, conc, dur, warmup)
	probe := newCostProbe(t, "", nil, map[string]string{"riskd": in.Server.HTTPAddr()}, r.URL)
	res, s0, s1 := measure(t, "riskd Evaluate (gRPC, real Redis)", eval, conc, warmup, dur, cpuprofile, probe)
	fmt.Printf("\n%-34s %10s %9s %9s %8s %8s\n", "", "evals/s", "p50", "p99", "errors", "missed")
	fmt.Printf("%-34s %10.0f %9s %9s %8d %8d\n", res.name, res.rps, res.p50.Round(10*time.Microsecond), res.p99.Round(10*time.Microsecond), res.errors, res.missed)
	fmt.Printf("fallbacks: %d, rule errors: %d\n", in.Engine.Stats.Fallbacks.Load(), in.Engine.Stats.RuleErrors.Load())
	if v := in.Velocity; v != nil {
		n := max(v.Stats.Syncs.Load(), 1)
		fmt.Printf("velocity store: %d syncs with Redis (%d failed; %.1f ms and %d payments each on average), %d evaluations waited for one (a key not cached yet, or the last sync too old), %d cache reloads\n",
			v.Stats.Syncs.Load(), v.Stats.SyncErrors.Load(), float64(v.Stats.SyncNanos.Load())/1e6/float64(n), v.Stats.Synced.Load()/n, v.Stats.Waits.Load(), v.Stats.Resets.Load())
	}
	printRedisCostModel("riskd Evaluate", res.ops, s0.redis, s1.redis, "obol-load process (riskd and the 32 gRPC clients)")
	if cpuprofile != "" {
		fmt.Printf("CPU profile of the measured phase: %s (go tool pprof -top %s)\n", cpuprofile, cpuprofile)
	}
}
