// Package rules compiles and evaluates risk rule sets: YAML files of CEL
// expressions over the PAN-free RuleInput (obol.risk.v1), type-checked when
// loaded, with errors that point at the YAML line and column. A set with
// any error is rejected whole. Outside PCI scope: no PAN is ever an input.
package rules

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"gopkg.in/yaml.v3"

	"github.com/obolpay/obol/internal/cardtext"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
)

// Actions, from least to most severe.
const (
	Allow     = "allow"
	Review    = "review"
	Challenge = "challenge"
	Block     = "block"
)

var severity = map[string]int{Allow: 0, Review: 1, Challenge: 2, Block: 3}

// defaultScore is a rule's score when it does not set one.
var defaultScore = map[string]int{Allow: 0, Review: 40, Challenge: 60, Block: 100}

// Modes.
const (
	Enforce = "enforce"
	Shadow  = "shadow"
)

// CostLimit bounds one rule's evaluation (CEL cost units).
const CostLimit = 10_000

// Lists answers list membership for the listed() function.
type Lists interface {
	Contains(list, value string) bool
}

// Rule is one compiled rule.
type Rule struct {
	Name        string
	Expression  string
	Action      string
	Priority    int
	Mode        string
	Score       int
	Description string
	Line        int
	prg         cel.Program
	// fast is the same program without runtime cost tracking, set when the
	// checker proves the cost within CostLimit for inputs whose strings are
	// at most maxStaticString bytes (Evaluate checks that per input).
	fast cel.Program
}

// maxStaticString bounds the input strings the static cost estimate
// assumes; an input with a longer string runs on the cost-tracked program.
const maxStaticString = 1024

// boundedSizes tells the cost estimator that every string or list the
// rules read is at most maxStaticString long.
type boundedSizes struct{}

func (boundedSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: maxStaticString}
}

func (boundedSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// stringsWithin reports whether every string of the payment is at most
// maxStaticString bytes (velocity features are numbers).
func stringsWithin(p *riskv1.RulePayment) bool {
	for _, s := range [...]string{p.GetMerchantId(), p.GetCurrency(), p.GetBin(), p.GetBrand(), p.GetFingerprint(), p.GetIp(),
		p.GetBillingCountry(), p.GetEmailHash(), p.GetDeviceId(), p.GetCvcCheck(), p.GetAvsCheck(), p.GetCardType(), p.GetCardCountry(), p.GetIpCountry()} {
		if len(s) > maxStaticString {
			return false
		}
	}
	return true
}

// Set is a compiled rule set.
type Set struct {
	Version string
	YAML    string
	Rules   []*Rule // by priority, then name
}

// ErrCardNumberInText: the rule set's text (a name, description,
// expression, comment, anywhere) looks like it carries a card number
// (internal/cardtext). riskd stores and returns rule sets and never holds
// card data; the error does not quote the text.
var ErrCardNumberInText = errors.New("rule set looks like it contains a card number")

// Problem is one error in a rule set, located in the YAML source.
type Problem struct {
	Rule    string
	Line    int
	Column  int
	Message string
}

func (p Problem) String() string {
	loc := fmt.Sprintf("line %d", p.Line)
	if p.Column > 0 {
		loc += fmt.Sprintf(", column %d", p.Column)
	}
	if p.Rule != "" {
		return fmt.Sprintf("%s: rule %q: %s", loc, p.Rule, p.Message)
	}
	return loc + ": " + p.Message
}

// CompileError lists every problem found; the set is not usable.
type CompileError struct{ Problems []Problem }

func (e *CompileError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.String()
	}
	return "rule set rejected: " + strings.Join(msgs, "; ")
}

// Env is the CEL environment rules are checked against.
type Env struct {
	env *cel.Env
}

// NewEnv declares the variables rules may read (payment, card, merchant, ip,
// email, device, card_age_seconds) and the function listed(list, value).
func NewEnv(lists Lists) (*Env, error) {
	env, err := cel.NewEnv(
		cel.Types(&riskv1.RuleInput{}),
		cel.Variable("payment", cel.ObjectType("obol.risk.v1.RulePayment")),
		cel.Variable("card", cel.ObjectType("obol.risk.v1.Velocity")),
		cel.Variable("merchant", cel.ObjectType("obol.risk.v1.Velocity")),
		cel.Variable("ip", cel.ObjectType("obol.risk.v1.Velocity")),
		cel.Variable("email", cel.ObjectType("obol.risk.v1.Velocity")),
		cel.Variable("device", cel.ObjectType("obol.risk.v1.Velocity")),
		cel.Variable("card_age_seconds", cel.IntType),
		cel.Function("listed",
			cel.Overload("listed_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(l, v ref.Val) ref.Val {
					ls, ok1 := l.(types.String)
					vs, ok2 := v.(types.String)
					if !ok1 || !ok2 {
						return types.NewErr("listed: arguments must be strings")
					}
					return types.Bool(lists != nil && vs != "" && lists.Contains(string(ls), string(vs)))
				}))),
	)
	if err != nil {
		return nil, err
	}
	return &Env{env: env}, nil
}

type yamlRule struct {
	Name        string `yaml:"name"`
	Expression  string `yaml:"expression"`
	Action      string `yaml:"action"`
	Priority    *int   `yaml:"priority"`
	Mode        string `yaml:"mode"`
	Score       *int   `yaml:"score"`
	Description string `yaml:"description"`
}

// Compile parses and type-checks a YAML rule set:
//
//	rules:
//	  - name: card-velocity
//	    expression: card.count_1h > 10
//	    action: review        # allow | review | challenge | block
//	    priority: 50          # lower runs first and wins (default 100)
//	    mode: enforce         # or shadow
//	    score: 40             # 0-100, default by action
//	    description: ...
func (e *Env) Compile(src []byte) (*Set, error) {
	// Before parsing: a problem's message may quote the source (a rule
	// name, an unknown key), and the source is stored and returned.
	if cardtext.Contains(string(src)) {
		return nil, ErrCardNumberInText
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, &CompileError{Problems: []Problem{{Line: yamlErrLine(err), Message: err.Error()}}}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &CompileError{Problems: []Problem{{Line: 1, Message: "a rule set is a mapping with a \"rules\" list"}}}
	}
	root := doc.Content[0]
	var rulesNode *yaml.Node
	var probs []Problem
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Value == "rules" {
			rulesNode = root.Content[i+1]
		} else {
			probs = append(probs, Problem{Line: k.Line, Column: k.Column, Message: fmt.Sprintf("unknown key %q (only \"rules\")", k.Value)})
		}
	}
	if rulesNode == nil || rulesNode.Kind != yaml.SequenceNode {
		probs = append(probs, Problem{Line: root.Line, Message: "missing \"rules\" list"})
		return nil, &CompileError{Problems: probs}
	}
	set := &Set{YAML: string(src)}
	names := map[string]bool{}
	for _, n := range rulesNode.Content {
		var yr yamlRule
		if err := n.Decode(&yr); err != nil {
			probs = append(probs, Problem{Line: n.Line, Column: n.Column, Message: err.Error()})
			continue
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i]; k.Value {
			case "name", "expression", "action", "priority", "mode", "score", "description":
			default:
				probs = append(probs, Problem{Rule: yr.Name, Line: k.Line, Column: k.Column, Message: fmt.Sprintf("unknown key %q", k.Value)})
			}
		}
		r, rp := e.compileRule(yr, n)
		probs = append(probs, rp...)
		if r == nil {
			continue
		}
		if names[r.Name] {
			probs = append(probs, Problem{Rule: r.Name, Line: n.Line, Column: n.Column, Message: "duplicate rule name"})
			continue
		}
		names[r.Name] = true
		set.Rules = append(set.Rules, r)
	}
	if len(probs) > 0 {
		return nil, &CompileError{Problems: probs}
	}
	sort.SliceStable(set.Rules, func(i, j int) bool {
		if set.Rules[i].Priority != set.Rules[j].Priority {
			return set.Rules[i].Priority < set.Rules[j].Priority
		}
		return set.Rules[i].Name < set.Rules[j].Name
	})
	sum := sha256.Sum256(src)
	set.Version = "rs_" + hex.EncodeToString(sum[:6])
	return set, nil
}

func (e *Env) compileRule(yr yamlRule, n *yaml.Node) (*Rule, []Problem) {
	var probs []Problem
	bad := func(msg string) {
		probs = append(probs, Problem{Rule: yr.Name, Line: n.Line, Column: n.Column, Message: msg})
	}
	if strings.TrimSpace(yr.Name) == "" {
		bad("name is required")
	}
	if _, ok := severity[yr.Action]; !ok {
		bad(fmt.Sprintf("action must be allow, review, challenge or block (got %q)", yr.Action))
	}
	mode := yr.Mode
	if mode == "" {
		mode = Enforce
	}
	if mode != Enforce && mode != Shadow {
		bad(fmt.Sprintf("mode must be enforce or shadow (got %q)", yr.Mode))
	}
	prio := 100
	if yr.Priority != nil {
		prio = *yr.Priority
	}
	score := defaultScore[yr.Action]
	if yr.Score != nil {
		score = *yr.Score
		if score < 0 || score > 100 {
			bad("score must be between 0 and 100")
		}
	}
	exprNode := valueNode(n, "expression")
	if strings.TrimSpace(yr.Expression) == "" {
		bad("expression is required")
		return nil, probs
	}
	ast, iss := e.env.Compile(yr.Expression)
	if iss != nil && iss.Err() != nil {
		for _, ce := range iss.Errors() {
			loc := ce.Location
			line, col := exprNode.Line, exprNode.Column
			if exprNode.Style == yaml.LiteralStyle || exprNode.Style == yaml.FoldedStyle {
				line, col = exprNode.Line+1, exprNode.Column+2
			}
			if loc != nil {
				line += loc.Line() - 1
				if loc.Line() == 1 {
					col += loc.Column()
				} else {
					col = loc.Column() + 1
				}
			}
			probs = append(probs, Problem{Rule: yr.Name, Line: line, Column: col, Message: ce.Message})
		}
		return nil, probs
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		probs = append(probs, Problem{Rule: yr.Name, Line: exprNode.Line, Column: exprNode.Column, Message: fmt.Sprintf("expression must be a bool, not %s", ast.OutputType())})
		return nil, probs
	}
	prg, err := e.env.Program(ast, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		probs = append(probs, Problem{Rule: yr.Name, Line: exprNode.Line, Column: exprNode.Column, Message: err.Error()})
		return nil, probs
	}
	if len(probs) > 0 {
		return nil, probs
	}
	r := &Rule{Name: yr.Name, Expression: yr.Expression, Action: yr.Action, Priority: prio, Mode: mode, Score: score, Description: yr.Description, Line: n.Line, prg: prg}
	if est, err := e.env.EstimateCost(ast, boundedSizes{}); err == nil && est.Max <= CostLimit {
		if fast, err := e.env.Program(ast, cel.EvalOptions(cel.OptOptimize)); err == nil {
			r.fast = fast
		}
	}
	return r, nil
}

func valueNode(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return m
}

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return 0
	}
	var line int
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		return line
	}
	return 0
}

// Outcome is the result of evaluating a set.
type Outcome struct {
	Action  string
	Score   int
	Matched []Match
	// Errors counts rules whose evaluation failed (treated as not matched).
	Errors int
}

// Match is a rule that matched.
type Match struct {
	Rule *Rule
}

// Evaluate runs every rule against in, in priority order. The action is the
// one of the highest-priority matching enforce rule (ties: the more severe);
// the score is the sum of matching enforce rules' scores, at most 100.
// Shadow rules are reported but never change the outcome. No match: allow.
func (s *Set) Evaluate(in *riskv1.RuleInput) Outcome {
	pay := orEmpty(in.GetPayment())
	act, err := interpreter.NewActivation(map[string]any{
		"payment": pay, "card": orEmptyV(in.GetCard()), "merchant": orEmptyV(in.GetMerchant()),
		"ip": orEmptyV(in.GetIp()), "email": orEmptyV(in.GetEmail()), "device": orEmptyV(in.GetDevice()),
		"card_age_seconds": in.GetCardAgeSeconds(),
	})
	if err != nil {
		return Outcome{Action: Allow, Errors: len(s.Rules)}
	}
	bounded := stringsWithin(pay)
	out := Outcome{Action: Allow}
	bestPrio := 0
	decided := false
	for _, r := range s.Rules {
		prg := r.prg
		if bounded && r.fast != nil {
			prg = r.fast
		}
		v, _, err := prg.Eval(act)
		if err != nil {
			out.Errors++
			continue
		}
		if b, ok := v.Value().(bool); !ok || !b {
			continue
		}
		out.Matched = append(out.Matched, Match{Rule: r})
		if r.Mode != Enforce {
			continue
		}
		out.Score += r.Score
		if !decided || (r.Priority == bestPrio && severity[r.Action] > severity[out.Action]) {
			out.Action, bestPrio, decided = r.Action, r.Priority, true
		}
	}
	if out.Score > 100 {
		out.Score = 100
	}
	return out
}

func orEmpty(p *riskv1.RulePayment) *riskv1.RulePayment {
	if p == nil {
		return &riskv1.RulePayment{}
	}
	return p
}

func orEmptyV(v *riskv1.Velocity) *riskv1.Velocity {
	if v == nil {
		return &riskv1.Velocity{}
	}
	return v
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the shipped default rule set.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }
