package riskd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/riskd"
	"github.com/obolpay/obol/risk/rules"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "test-risk-token"

type stack struct {
	t      *testing.T
	in     *riskd.Instance
	client riskv1.RiskServiceClient
	base   string
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg riskd.Config) *stack {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Token, cfg.WatchEvery = "127.0.0.1:0", "127.0.0.1:0", token, 50*time.Millisecond
	// Each test its own keyspace on the shared Redis; the hash tag keeps
	// it in one slot of a Redis Cluster.
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "obol:risktest:{" + uniq("") + "}:"
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	in, err := riskd.Start(context.Background(), cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, in: in, base: "http://" + in.Server.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- in.Serve(ctx) }()
	conn, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	s.client = riskv1.NewRiskServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		assert.NoError(t, <-s.done, "Serve")
		in.Close()
	})
	return s
}

func authed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func payment(fp, ip string, amount int64) *riskv1.Payment {
	return &riskv1.Payment{MerchantId: "mer_" + fp[:4], Amount: amount, Currency: "USD", Bin: "424242", Fingerprint: fp, CustomerIp: ip, DeviceId: "dev_" + fp, BillingCountry: "US"}
}

func (s *stack) rest(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func uniq(prefix string) string { return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()) }

func TestEvaluate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	testEvaluate(t, testenv.SharedRedis(t).URL)
}

// TestEvaluateCluster: velocity, rule-set history and lists on a real
// Redis Cluster.
func TestEvaluateCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	testEvaluate(t, testenv.SharedRedisCluster(t).URL())
}

func testEvaluate(t *testing.T, url string) {
	s := start(t, riskd.Config{RedisURL: url})
	fp := uniq("fp_")
	t.Run("auth and validation", func(t *testing.T) {
		_, err := s.client.Evaluate(context.Background(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 100)})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "no token: %v", err)
		tests := []struct {
			name  string
			p     *riskv1.Payment
			field string
		}{
			{"no merchant", &riskv1.Payment{Amount: 1, Currency: "USD"}, "payment.merchant_id"},
			{"zero amount", &riskv1.Payment{MerchantId: "m", Currency: "USD"}, "payment.amount"},
			{"bad currency", &riskv1.Payment{MerchantId: "m", Amount: 1, Currency: "US1"}, "payment.currency"},
			{"unknown currency", &riskv1.Payment{MerchantId: "m", Amount: 1, Currency: "XYZ"}, "payment.currency"},
			{"full card number as bin", &riskv1.Payment{MerchantId: "m", Amount: 1, Currency: "USD", Bin: "4242424242424242"}, "payment.bin"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: tt.p})
				require.Equal(t, codes.InvalidArgument, status.Code(err), "err %v", err)
				require.Equal(t, tt.field, apierr.From(err).Field, "err %v", err)
			})
		}
	})
	t.Run("velocity counts real evaluations only", func(t *testing.T) {
		var d *riskv1.Decision
		var err error
		for i := 0; i < 4; i++ {
			d, err = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 2500)})
			require.NoError(t, err)
		}
		assert.EqualValues(t, 4, d.GetInput().GetCard().GetCount_1M(), "4th evaluation: %v", d)
		assert.Equal(t, rules.Challenge, d.GetAction(), "4th evaluation: %v", d)
		assert.Equal(t, "US", d.GetInput().GetPayment().GetCardCountry(), "4th evaluation: %v", d)
		assert.Equal(t, "US", d.GetInput().GetPayment().GetIpCountry(), "4th evaluation: %v", d)
		for i := 0; i < 3; i++ {
			code, body := s.rest("POST", "/v1/risk/evaluate", map[string]any{"payment": map[string]any{"merchant_id": "mer_" + fp[:4], "amount": 2500, "currency": "USD", "fingerprint": fp, "customer_ip": "192.0.2.1"}})
			require.Equal(t, 200, code, "dry run: %v", body)
			require.Equal(t, true, body["dry_run"], "dry run: %v", body)
		}
		d, _ = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 2500)})
		require.EqualValues(t, 5, d.GetInput().GetCard().GetCount_1M(), "dry runs were counted")
		assert.True(t, strings.HasPrefix(d.GetRuleSetVersion(), "rs_"), "decision: %v", d)
		require.NotEmpty(t, d.GetRules(), "decision: %v", d)
		assert.Equal(t, "card-velocity-burst", d.GetRules()[0].GetName(), "decision: %v", d)
	})
	t.Run("bad rule set rejected whole, good one versioned", func(t *testing.T) {
		before := s.in.Engine.Active().Version
		code, body := s.rest("PUT", "/v1/risk/rules", map[string]any{"yaml": "rules:\n  - name: x\n    expression: payment.amout > 1\n    action: block\n"})
		msg := fmt.Sprint(body["error"])
		require.Equal(t, 400, code, "bad set: %v", body)
		assert.Contains(t, msg, "line 3", "bad set")
		assert.Contains(t, msg, "amout", "bad set")
		require.Equal(t, before, s.in.Engine.Active().Version, "a bad set changed the active version")
		// A card number anywhere in the set (riskd stores and returns it)
		// is refused whole, without being quoted.
		for _, y := range []string{
			"rules:\n  - name: x\n    expression: payment.amount > 4111111111111111\n    action: block\n    description: card 4111111111111111\n",
			"rules:\n  - name: x\n    expression: payment.amount > 1\n    action: block\n    description: \uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\n",
		} {
			code, body := s.rest("PUT", "/v1/risk/rules", map[string]any{"yaml": y})
			e, _ := body["error"].(map[string]any)
			require.Equal(t, 400, code, "%v", body)
			assert.Equal(t, "card_number_in_text", e["code"])
			assert.Equal(t, "yaml", e["field"])
			assert.NotContains(t, fmt.Sprint(body), "1111")
			assert.Equal(t, before, s.in.Engine.Active().Version)
			code, body = s.rest("POST", "/v1/risk/backtest", map[string]any{"yaml": y, "limit": 1})
			assert.Equal(t, 400, code, "%v", body)
		}
		good := "rules:\n  - name: big\n    expression: payment.amount > 100000\n    action: block\n"
		code, body = s.rest("PUT", "/v1/risk/rules", map[string]any{"yaml": good})
		require.Equal(t, 200, code, "good set: %v", body)
		require.NotEqual(t, before, body["version"], "good set: %v", body)
		require.Equal(t, body["version"], s.in.Engine.Active().Version, "good set: %v", body)
		d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), "192.0.2.9", 200000)})
		assert.Equal(t, rules.Block, d.GetAction(), "new set not applied: %v", d)
		assert.Equal(t, body["version"], d.GetRuleSetVersion(), "new set not applied: %v", d)
		code, hist := s.rest("GET", "/v1/risk/rules/versions", nil)
		require.Equal(t, 200, code, "history: %v", hist)
		assert.GreaterOrEqual(t, len(hist["rule_sets"].([]any)), 2, "history: %v", hist)
		assert.Equal(t, body["version"], hist["active"], "history: %v", hist)
		_, err := s.client.PutRuleSet(authed(), &riskv1.PutRuleSetRequest{Yaml: string(rules.DefaultYAML())})
		require.NoError(t, err)
	})
	t.Run("lists", func(t *testing.T) {
		ip := "203.0.113.77"
		code, body := s.rest("POST", "/v1/risk/lists/block_ips/entries", map[string]any{"values": []string{ip}})
		require.Equal(t, 200, code, "add: %v", body)
		d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), ip, 100)})
		require.Equal(t, rules.Block, d.GetAction(), "blocklisted ip: %v", d)
		require.NotEmpty(t, d.GetRules(), "blocklisted ip: %v", d)
		require.Equal(t, "blocklisted", d.GetRules()[0].GetName(), "blocklisted ip: %v", d)
		code, _ = s.rest("POST", "/v1/risk/lists/block_ips/entries:remove", map[string]any{"values": []string{ip}})
		require.Equal(t, 200, code, "remove")
		d, _ = s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), ip, 100)})
		assert.NotEqual(t, rules.Block, d.GetAction(), "removed ip still blocked: %v", d)
		code, body = s.rest("POST", "/v1/risk/lists/favourites/entries", map[string]any{"values": []string{"x"}})
		assert.Equal(t, 400, code, "unknown list: %v", body)
		assert.Contains(t, fmt.Sprint(body), "list_unknown", "unknown list")
		for _, v := range []string{"4242424242424242", "4242.4242.4242.4242", "5555 5555 5555 4444", "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12", "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662"} {
			code, body := s.rest("POST", "/v1/risk/lists/block_ips/entries", map[string]any{"values": []string{v}})
			assert.Equal(t, 400, code, "card number as a list value")
			assert.Contains(t, fmt.Sprint(body), "card_number_in_text", "card number as a list value")
			assert.NotContains(t, fmt.Sprint(body), v, "the answer echoes the card number")
		}
	})
	t.Run("backtest", func(t *testing.T) {
		// An IP of its own, so velocity from other runs cannot change the outcomes.
		ip := fmt.Sprintf("10.%d.%d.%d", time.Now().UnixNano()%250, time.Now().UnixNano()/7%250, time.Now().UnixNano()/13%250)
		for i := 0; i < 5; i++ {
			_, _ = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), ip, 70000)})
		}
		strict := string(rules.DefaultYAML()) + "\n  - name: strict\n    expression: payment.amount > 60000\n    action: block\n    priority: 2\n"
		code, body := s.rest("POST", "/v1/risk/backtest", map[string]any{"yaml": strict, "limit": 5})
		require.Equal(t, 200, code, "backtest: %v", body)
		assert.Equal(t, 5.0, body["replayed"], "backtest: %v", body)
		assert.Equal(t, 5.0, body["changed"], "backtest: %v", body)
		assert.NotEmpty(t, s.in.Engine.Active().Version, "a backtest must not change the active rule set")
		assert.NotContains(t, s.in.Engine.Active().YAML, "strict", "a backtest must not change the active rule set")
	})
}

func TestRulesFileHotReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		t.Helper()
		require.NoError(t, os.WriteFile(file+".tmp", []byte(s), 0o600))
		require.NoError(t, os.Rename(file+".tmp", file))
	}
	write("rules:\n  - name: v1\n    expression: payment.amount > 10\n    action: review\n")
	s := start(t, riskd.Config{RedisURL: testenv.SharedRedis(t).URL, RulesFile: file})
	v1 := s.in.Engine.Active().Version
	waitFor := func(cond func() bool, what string) {
		t.Helper()
		require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
			if !cond() {
				return errors.New(what)
			}
			return nil
		}))
	}
	write("rules:\n  - name: v2\n    expression: payment.amount > 10\n    action: block\n")
	waitFor(func() bool { return s.in.Engine.Active().Version != v1 }, "new file not loaded")
	v2 := s.in.Engine.Active().Version
	write("rules:\n  - name: broken\n    expression: payment.nope\n    action: block\n")
	// The broken file is rejected (the watcher has seen it) and v2 stays.
	waitFor(func() bool { return s.in.Engine.Stats.RejectedReloads.Load() > 0 }, "broken file not tried")
	d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), "192.0.2.1", 100)})
	assert.Equal(t, v2, s.in.Engine.Active().Version, "active version after a broken file")
	assert.Equal(t, rules.Block, d.GetAction(), "action after a broken file")
}

func TestRedisOutageFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	r := testenv.StartRedis(t)
	s := start(t, riskd.Config{RedisURL: r.URL, Fallback: map[string]string{"mer_strict": rules.Block}})
	p := payment(uniq("fp_"), "192.0.2.1", 100)
	d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p})
	require.NoError(t, err, "healthy")
	require.False(t, d.GetFallback(), "healthy: %v", d)
	r.Stop(t)
	// riskd answers from its local counters between syncs: the next sync,
	// at most features.DefaultSyncInterval after the outage began, finds
	// Redis down, and from then on every evaluation falls back.
	require.Error(t, s.in.Velocity.Sync(context.Background()), "sync during the outage")
	d, err = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p})
	require.NoError(t, err, "outage, default fallback")
	assert.True(t, d.GetFallback(), "outage, default fallback: %v", d)
	assert.Equal(t, rules.Review, d.GetAction(), "outage, default fallback: %v", d)
	assert.NotEmpty(t, d.GetFallbackReason(), "outage, default fallback: %v", d)
	strict := payment(uniq("fp_"), "192.0.2.1", 100)
	strict.MerchantId = "mer_strict"
	d, _ = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: strict})
	assert.True(t, d.GetFallback(), "outage, merchant fallback: %v", d)
	assert.Equal(t, rules.Block, d.GetAction(), "outage, merchant fallback: %v", d)
	code, _ := s.rest("GET", "/readyz", nil)
	assert.Equal(t, 503, code, "readyz during outage")
	r.Start(t)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p})
		if err != nil || d.GetFallback() {
			return fmt.Errorf("still falling back: %v", err)
		}
		return nil
	}))
}

func TestStartFailsClearly(t *testing.T) {
	if !testing.Short() {
		// A cluster prefix without a hash tag: riskd's scripts could
		// not run, so it refuses to start, naming the setting.
		_, err := riskd.Start(context.Background(), riskd.Config{RedisURL: testenv.SharedRedisCluster(t).URL(), KeyPrefix: "obol:risk:", Token: "x", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
		require.ErrorContains(t, err, "OBOL_RISK_KEY_PREFIX")
		require.ErrorContains(t, err, "hash tag")
		_, err = riskd.Start(context.Background(), riskd.Config{RedisURL: testenv.SharedRedis(t).URL, StateRedisURL: "http://x", Token: "x"})
		require.ErrorContains(t, err, "OBOL_RISK_STATE_REDIS_URL")
	}
	_, err := riskd.Start(context.Background(), riskd.Config{RedisURL: "redis+cluster://127.0.0.1:1/2", Token: "x"})
	require.ErrorContains(t, err, "OBOL_RISK_REDIS_URL")
	port := testenv.FreePort(t)
	_, err = riskd.Start(context.Background(), riskd.Config{RedisURL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Token: "x", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	require.ErrorContains(t, err, "unreachable")
	_, err = riskd.Start(context.Background(), riskd.Config{RedisURL: "redis://x"})
	require.ErrorContains(t, err, "OBOL_RISK_TOKEN")
}

// TestVelocityMetrics: riskd's scrape counts the velocity store's syncs
// with Redis and the evaluations that waited for one.
func TestVelocityMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	s := start(t, riskd.Config{RedisURL: testenv.SharedRedis(t).URL})
	d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), "192.0.2.1", 100)})
	require.NoError(t, err)
	require.False(t, d.GetFallback(), "%v", d)
	require.NoError(t, s.in.Velocity.Sync(context.Background()))
	resp, err := http.Get(s.base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, name := range []string{"obol_risk_velocity_syncs_total", "obol_risk_velocity_sync_errors_total", "obol_risk_velocity_sync_seconds_total", "obol_risk_velocity_waits_total", "obol_risk_velocity_duplicates_total"} {
		assert.Contains(t, string(body), "\n"+name+" ", "metric %s", name)
	}
	assert.NotContains(t, string(body), "\nobol_risk_velocity_syncs_total 0\n", "syncs were not counted")
}

// TestRedisClusterFailoverFallsBack: riskd on a real Redis Cluster whose
// primary of riskd's slot is SIGKILLed: not ready and falling back (the
// documented Redis-outage behaviour) until the replica is promoted, then
// ready, evaluating normally, and the card's earlier payments still count.
func TestRedisClusterFailoverFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Redis Cluster and kills a primary")
	}
	c := testenv.StartRedisCluster(t)
	prefix := "obol:risktest:{" + uniq("") + "}:"
	s := start(t, riskd.Config{RedisURL: c.URL(), KeyPrefix: prefix})
	fp := uniq("fp_")
	for range 2 {
		d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 100)})
		require.NoError(t, err)
		require.False(t, d.GetFallback(), "healthy: %v", d)
	}
	require.NoError(t, s.in.Velocity.Sync(context.Background()))
	c.Kill(t, c.PrimaryFor(t, prefix+"vstream"))
	require.Error(t, s.in.Velocity.Sync(context.Background()), "sync during the outage")
	d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 100)})
	require.NoError(t, err, "outage")
	assert.True(t, d.GetFallback(), "outage: %v", d)
	assert.Equal(t, rules.Review, d.GetAction(), "outage: default fallback")
	code, _ := s.rest("GET", "/readyz", nil)
	assert.Equal(t, 503, code, "readyz during the outage")
	c.WaitPromoted(t)
	require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
		if code, _ := s.rest("GET", "/readyz", nil); code != 200 {
			return fmt.Errorf("readyz %d", code)
		}
		d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 100)})
		if err != nil || d.GetFallback() {
			return fmt.Errorf("still falling back: %v", err)
		}
		// Two before the outage, this one: the fallback was not counted.
		if n := d.GetInput().GetCard().GetCount_1M(); n != 3 {
			return fmt.Errorf("card count %d, want 3", n)
		}
		return nil
	}))
}
