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
	cfg.KeyPrefix = uniq("obol:risktest:") + ":" // each test its own keyspace on the shared Redis
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	in, err := riskd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, in: in, base: "http://" + in.Server.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- in.Serve(ctx) }()
	conn, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.client = riskv1.NewRiskServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
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
	if err != nil {
		s.t.Fatal(err)
	}
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
	s := start(t, riskd.Config{RedisURL: testenv.SharedRedis(t).URL})
	fp := uniq("fp_")
	t.Run("auth and validation", func(t *testing.T) {
		_, err := s.client.Evaluate(context.Background(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 100)})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no token: %v", err)
		}
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
				if status.Code(err) != codes.InvalidArgument || apierr.From(err).Field != tt.field {
					t.Fatalf("err %v; want InvalidArgument on %s", err, tt.field)
				}
			})
		}
	})
	t.Run("velocity counts real evaluations only", func(t *testing.T) {
		var d *riskv1.Decision
		var err error
		for i := 0; i < 4; i++ {
			if d, err = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 2500)}); err != nil {
				t.Fatal(err)
			}
		}
		if d.GetInput().GetCard().GetCount_1M() != 4 || d.GetAction() != rules.Challenge || d.GetInput().GetPayment().GetCardCountry() != "US" || d.GetInput().GetPayment().GetIpCountry() != "US" {
			t.Fatalf("4th evaluation: %v", d)
		}
		for i := 0; i < 3; i++ {
			code, body := s.rest("POST", "/v1/risk/evaluate", map[string]any{"payment": map[string]any{"merchant_id": "mer_" + fp[:4], "amount": 2500, "currency": "USD", "fingerprint": fp, "customer_ip": "192.0.2.1"}})
			if code != 200 || body["dry_run"] != true {
				t.Fatalf("dry run: %d %v", code, body)
			}
		}
		d, _ = s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment(fp, "192.0.2.1", 2500)})
		if d.GetInput().GetCard().GetCount_1M() != 5 {
			t.Fatalf("dry runs were counted: card count %d, want 5", d.GetInput().GetCard().GetCount_1M())
		}
		if !strings.HasPrefix(d.GetRulesetVersion(), "rs_") || len(d.GetRules()) == 0 || d.GetRules()[0].GetName() != "card-velocity-burst" {
			t.Fatalf("decision: %v", d)
		}
	})
	t.Run("bad rule set rejected whole, good one versioned", func(t *testing.T) {
		before := s.in.Engine.Active().Version
		code, body := s.rest("PUT", "/v1/risk/rules", map[string]any{"yaml": "rules:\n  - name: x\n    expression: payment.amout > 1\n    action: block\n"})
		msg := fmt.Sprint(body["error"])
		if code != 400 || !strings.Contains(msg, "line 3") || !strings.Contains(msg, "amout") || s.in.Engine.Active().Version != before {
			t.Fatalf("bad set: %d %v", code, body)
		}
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
		if code != 200 || body["version"] == before || s.in.Engine.Active().Version != body["version"] {
			t.Fatalf("good set: %d %v", code, body)
		}
		d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), "192.0.2.9", 200000)})
		if d.GetAction() != rules.Block || d.GetRulesetVersion() != body["version"] {
			t.Fatalf("new set not applied: %v", d)
		}
		code, hist := s.rest("GET", "/v1/risk/rules/versions", nil)
		if code != 200 || len(hist["rule_sets"].([]any)) < 2 || hist["active"] != body["version"] {
			t.Fatalf("history: %d %v", code, hist)
		}
		if _, err := s.client.PutRuleSet(authed(), &riskv1.PutRuleSetRequest{Yaml: string(rules.DefaultYAML())}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("lists", func(t *testing.T) {
		ip := "203.0.113.77"
		code, body := s.rest("POST", "/v1/risk/lists/block_ips/entries", map[string]any{"values": []string{ip}})
		if code != 200 {
			t.Fatalf("add: %d %v", code, body)
		}
		d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), ip, 100)})
		if d.GetAction() != rules.Block || d.GetRules()[0].GetName() != "blocklisted" {
			t.Fatalf("blocklisted ip: %v", d)
		}
		if code, _ := s.rest("POST", "/v1/risk/lists/block_ips/entries:remove", map[string]any{"values": []string{ip}}); code != 200 {
			t.Fatalf("remove: %d", code)
		}
		d, _ = s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), ip, 100)})
		if d.GetAction() == rules.Block {
			t.Fatalf("removed ip still blocked: %v", d)
		}
		if code, body := s.rest("POST", "/v1/risk/lists/favourites/entries", map[string]any{"values": []string{"x"}}); code != 400 || !strings.Contains(fmt.Sprint(body), "list_unknown") {
			t.Fatalf("unknown list: %d %v", code, body)
		}
		for _, v := range []string{"4242424242424242", "4242.4242.4242.4242", "5555 5555 5555 4444", "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12", "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662"} {
			if code, body := s.rest("POST", "/v1/risk/lists/block_ips/entries", map[string]any{"values": []string{v}}); code != 400 || !strings.Contains(fmt.Sprint(body), "card_number_in_text") || strings.Contains(fmt.Sprint(body), v) {
				t.Fatalf("card number as a list value: %d %v", code, body)
			}
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
		if code != 200 || body["replayed"] != 5.0 || body["changed"] != 5.0 {
			t.Fatalf("backtest: %d %v", code, body)
		}
		if s.in.Engine.Active().Version == "" || strings.Contains(s.in.Engine.Active().YAML, "strict") {
			t.Fatal("a backtest must not change the active rule set")
		}
	})
}

func TestRulesFileHotReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: v1\n    expression: payment.amount > 10\n    action: review\n")
	s := start(t, riskd.Config{RedisURL: testenv.SharedRedis(t).URL, RulesFile: file})
	v1 := s.in.Engine.Active().Version
	waitFor := func(cond func() bool, what string) {
		t.Helper()
		if err := testenv.WaitFor(5*time.Second, func() error {
			if !cond() {
				return errors.New(what)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: v2\n    expression: payment.amount > 10\n    action: block\n")
	waitFor(func() bool { return s.in.Engine.Active().Version != v1 }, "new file not loaded")
	v2 := s.in.Engine.Active().Version
	write("rules:\n  - name: broken\n    expression: payment.nope\n    action: block\n")
	// The broken file is rejected (the watcher has seen it) and v2 stays.
	waitFor(func() bool { return s.in.Engine.Stats.RejectedReloads.Load() > 0 }, "broken file not tried")
	d, _ := s.client.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment(uniq("fp_"), "192.0.2.1", 100)})
	if s.in.Engine.Active().Version != v2 || d.GetAction() != rules.Block {
		t.Fatalf("after a broken file: active %s (want %s), action %s", s.in.Engine.Active().Version, v2, d.GetAction())
	}
}

func TestRedisOutageFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	r := testenv.StartRedis(t)
	s := start(t, riskd.Config{RedisURL: r.URL, Fallback: map[string]string{"mer_strict": rules.Block}})
	p := payment(uniq("fp_"), "192.0.2.1", 100)
	if d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p}); err != nil || d.GetFallback() {
		t.Fatalf("healthy: %v %v", d, err)
	}
	r.Stop(t)
	d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p})
	if err != nil || !d.GetFallback() || d.GetAction() != rules.Review || d.GetFallbackReason() == "" {
		t.Fatalf("outage, default fallback: %v %v", d, err)
	}
	strict := payment(uniq("fp_"), "192.0.2.1", 100)
	strict.MerchantId = "mer_strict"
	if d, _ := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: strict}); !d.GetFallback() || d.GetAction() != rules.Block {
		t.Fatalf("outage, merchant fallback: %v", d)
	}
	if code, _ := s.rest("GET", "/readyz", nil); code != 503 {
		t.Fatalf("readyz during outage: %d", code)
	}
	r.Start(t)
	if err := testenv.WaitFor(10*time.Second, func() error {
		d, err := s.client.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: p})
		if err != nil || d.GetFallback() {
			return fmt.Errorf("still falling back: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailsClearly(t *testing.T) {
	port := testenv.FreePort(t)
	_, err := riskd.Start(context.Background(), riskd.Config{RedisURL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Token: "x", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v", err)
	}
	if _, err := riskd.Start(context.Background(), riskd.Config{RedisURL: "redis://x"}); err == nil || !strings.Contains(err.Error(), "OBOL_RISK_TOKEN") {
		t.Fatalf("err = %v", err)
	}
}
