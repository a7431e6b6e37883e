package rules

import (
	"strings"
	"testing"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lists map[string]map[string]bool

func (l lists) Contains(list, v string) bool { return l[list][v] }

func mustEnv(t *testing.T, l Lists) *Env {
	t.Helper()
	e, err := NewEnv(l)
	require.NoError(t, err)
	return e
}

func TestDefaultRules(t *testing.T) {
	env := mustEnv(t, lists{"block_ips": {"203.0.113.9": true}, "allow_fingerprints": {"fp_vip": true}})
	set, err := env.Compile(DefaultYAML())
	require.NoError(t, err)
	base := func() *riskv1.RuleInput {
		return &riskv1.RuleInput{Payment: &riskv1.RulePayment{Amount: 2500, Currency: "USD", CardCountry: "US", IpCountry: "US", BillingCountry: "US", Fingerprint: "fp_x", Ip: "192.0.2.1"},
			Card: &riskv1.Velocity{}, Ip: &riskv1.Velocity{}, Device: &riskv1.Velocity{}, CardAgeSeconds: 86400}
	}
	tests := []struct {
		name    string
		mod     func(*riskv1.RuleInput)
		action  string
		matched []string
	}{
		{"clean payment", func(*riskv1.RuleInput) {}, Allow, nil},
		{"blocklisted ip", func(in *riskv1.RuleInput) { in.Payment.Ip = "203.0.113.9" }, Block, []string{"blocklisted"}},
		{"allowlist wins over blocklist", func(in *riskv1.RuleInput) { in.Payment.Ip = "203.0.113.9"; in.Payment.Fingerprint = "fp_vip" }, Allow, []string{"allowlisted-card", "blocklisted"}},
		{"cvc failed", func(in *riskv1.RuleInput) { in.Payment.CvcCheck = "fail" }, Block, []string{"cvc-failed"}},
		{"card testing by ip", func(in *riskv1.RuleInput) { in.Ip.DistinctCards_1H = 6 }, Block, []string{"card-testing-ip"}},
		{"many small from ip", func(in *riskv1.RuleInput) { in.Ip.Count_1H = 21; in.Payment.Amount = 100 }, Block, []string{"card-testing-ip"}},
		{"amount ceiling usd", func(in *riskv1.RuleInput) { in.Payment.Amount = 1000001 }, Review, []string{"amount-ceiling"}},
		{"unknown currency has no ceiling", func(in *riskv1.RuleInput) { in.Payment.Currency = "KWD"; in.Payment.Amount = 99999999 }, Allow, nil},
		{"card burst", func(in *riskv1.RuleInput) { in.Card.Count_1M = 4; in.Card.Count_1H = 4 }, Challenge, []string{"card-velocity-burst"}},
		{"burst and hourly: higher priority wins", func(in *riskv1.RuleInput) { in.Card.Count_1M = 4; in.Card.Count_1H = 11 }, Challenge, []string{"card-velocity-burst", "card-velocity-hour"}},
		{"country mismatch", func(in *riskv1.RuleInput) { in.Payment.IpCountry = "GB"; in.Payment.BillingCountry = "DE" }, Review, []string{"country-mismatch"}},
		{"shadow rule reported, not enforced", func(in *riskv1.RuleInput) { in.CardAgeSeconds = 10; in.Payment.Amount = 60000 }, Allow, []string{"new-card-large-amount"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.mod(in)
			out := set.Evaluate(in)
			var names []string
			for _, m := range out.Matched {
				names = append(names, m.Rule.Name)
			}
			assert.Equal(t, tt.action, out.Action, "action")
			assert.Equal(t, strings.Join(tt.matched, ","), strings.Join(names, ","), "matched rules")
			assert.Zero(t, out.Errors, "errors")
			assert.GreaterOrEqual(t, out.Score, 0, "score")
			assert.LessOrEqual(t, out.Score, 100, "score")
		})
	}
}

// TestCompileRefusesCardNumbers: a rule set is stored and returned, so a
// card number anywhere in it is refused before it is parsed (a parse
// error's message would quote it), in any digit form.
func TestCompileRefusesCardNumbers(t *testing.T) {
	env := mustEnv(t, nil)
	rule := func(name, expr, desc string) string {
		return "rules:\n  - name: " + name + "\n    expression: " + expr + "\n    action: block\n    description: " + desc + "\n"
	}
	tests := []struct{ name, yaml string }{
		{"in a description", rule("a", "true", "card 4111111111111111")},
		{"in an expression", rule("a", `payment.bin == "4111111111111111"`, "x")},
		{"in a name", rule("r4111-1111-1111-1111", "true", "x")},
		{"in a comment", "# 4111 1111 1111 1111\n" + rule("a", "true", "x")},
		{"fullwidth in a description", rule("a", "true", "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11")},
		{"escaped in a quoted expression", rule("a", `payment.bin == "\\u0034111111111111111"`, "x")},
		{"in an unknown key", "rules:\n  - name: a\n    expression: true\n    action: block\n    4111111111111111: x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile([]byte(tt.yaml))
			require.ErrorIs(t, err, ErrCardNumberInText)
			require.NotContains(t, err.Error(), "1111", "the error quotes the text")
		})
	}
	_, err := env.Compile([]byte(rule("a", "payment.amount > 100000", "big ones, order 2026-12-01")))
	require.NoError(t, err, "a clean set")
}

func TestCompileErrorsAreLocated(t *testing.T) {
	env := mustEnv(t, nil)
	tests := []struct {
		name   string
		yaml   string
		line   int
		column int
		msg    string
	}{
		{"undeclared field", "rules:\n  - name: a\n    expression: payment.amout > 5\n    action: block\n", 3, 24, "amout"},
		{"not a bool", "rules:\n  - name: a\n    expression: payment.amount + 1\n    action: block\n", 3, 17, "must be a bool"},
		{"bad action", "rules:\n  - name: a\n    expression: true\n    action: deny\n", 2, 5, "action must be"},
		{"bad mode", "rules:\n  - name: a\n    expression: true\n    action: block\n    mode: maybe\n", 2, 5, "mode must be"},
		{"unknown key", "rules:\n  - name: a\n    expresion: true\n    action: block\n", 3, 5, "unknown key"},
		{"duplicate", "rules:\n  - name: a\n    expression: true\n    action: block\n  - name: a\n    expression: false\n    action: block\n", 5, 5, "duplicate"},
		{"syntax error in block scalar", "rules:\n  - name: a\n    expression: |\n      payment.amount >\n    action: block\n", 5, 0, "mismatched input"},
		{"not yaml", "rules: [\n", 0, 0, "yaml"},
		{"wrong top level", "- a\n", 1, 0, "mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile([]byte(tt.yaml))
			ce, ok := err.(*CompileError)
			require.True(t, ok, "err = %v, want a *CompileError", err)
			require.NotEmpty(t, ce.Problems, "err = %v", err)
			p := ce.Problems[0]
			if tt.line != 0 {
				assert.Equal(t, tt.line, p.Line, "line of %q", p.String())
			}
			if tt.column != 0 {
				assert.Equal(t, tt.column, p.Column, "column of %q", p.String())
			}
			assert.Contains(t, strings.ToLower(p.String()), strings.ToLower(tt.msg))
		})
	}
}

func TestCostLimitBoundsEvaluation(t *testing.T) {
	env := mustEnv(t, nil)
	set, err := env.Compile([]byte("rules:\n  - name: heavy\n    expression: >-\n      [1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))\n    action: block\n"))
	require.NoError(t, err)
	out := set.Evaluate(&riskv1.RuleInput{})
	assert.EqualValues(t, 1, out.Errors, "an over-budget rule must fail (not match): %+v", out)
	assert.Equal(t, Allow, out.Action, "an over-budget rule must fail (not match): %+v", out)
}

func TestVersionIsContentHash(t *testing.T) {
	env := mustEnv(t, nil)
	a, _ := env.Compile(DefaultYAML())
	b, _ := env.Compile(DefaultYAML())
	c, _ := env.Compile(append(DefaultYAML(), '\n'))
	assert.Equal(t, a.Version, b.Version, "the same YAML gets the same version")
	assert.NotEqual(t, a.Version, c.Version, "another YAML gets another version")
	assert.True(t, strings.HasPrefix(a.Version, "rs_"), "version %s", a.Version)
}

func BenchmarkEvaluateDefault(b *testing.B) {
	env, _ := NewEnv(lists{})
	set, _ := env.Compile(DefaultYAML())
	in := &riskv1.RuleInput{Payment: &riskv1.RulePayment{Amount: 2500, Currency: "USD", CardCountry: "US", IpCountry: "US"}, Card: &riskv1.Velocity{Count_1H: 2}, Ip: &riskv1.Velocity{}, Device: &riskv1.Velocity{}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		set.Evaluate(in)
	}
}

// TestStaticCostSkipsTracking: rules whose cost the checker bounds (all the
// default ones) run without runtime cost tracking, unless an input string
// is longer than the bound assumed; then the runtime limit still applies.
func TestStaticCostSkipsTracking(t *testing.T) {
	env := mustEnv(t, nil)
	def, err := env.Compile(DefaultYAML())
	require.NoError(t, err)
	for _, r := range def.Rules {
		assert.NotNil(t, r.fast, "default rule %s has no statically bounded program", r.Name)
	}
	set, err := env.Compile([]byte("rules:\n  - name: scan\n    expression: payment.device_id.contains(\"zz\")\n    action: block\n"))
	require.NoError(t, err)
	require.NotNil(t, set.Rules[0].fast, "a contains() on a bounded string")
	tests := []struct {
		name       string
		device     string
		wantErrors int
		wantAction string
	}{
		{"within the bound: the fast program", "dev_zz", 0, Block},
		{"longer than the bound: the cost-tracked program", strings.Repeat("a", 1<<20) + "zz", 1, Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := set.Evaluate(&riskv1.RuleInput{Payment: &riskv1.RulePayment{DeviceId: tt.device}})
			assert.Equal(t, tt.wantErrors, out.Errors, "%+v", out)
			assert.Equal(t, tt.wantAction, out.Action, "%+v", out)
		})
	}
}
