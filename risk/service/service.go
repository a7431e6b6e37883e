// Package service exposes the risk engine (risk/engine) as
// obol.risk.v1.RiskService: typed errors naming the field, the service
// token on every call. Outside PCI scope: requests carry no card number,
// and rule sets that look like they hold one are refused.
package service

import (
	"context"
	"errors"
	"strings"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/internal/servicetoken"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/rules"
)

// Service exposes the engine as obol.risk.v1.RiskService. Every call needs
// the service token (Authorization: Bearer …): the gateway holds it for
// Evaluate, risk analysts for the rest.
type Service struct {
	riskv1.UnimplementedRiskServiceServer
	e     *engine.Engine
	token string
}

var _ riskv1.RiskServiceServer = (*Service)(nil)

// New wraps an engine; token must not be empty.
func New(e *engine.Engine, token string) *Service { return &Service{e: e, token: token} }

// Lists that rules can use.
var knownLists = map[string]bool{
	"allow_fingerprints": true, "block_fingerprints": true, "block_ips": true, "allow_ips": true,
	"block_email_hashes": true, "block_bins": true,
}

var errUnauthenticated = servicetoken.Required("risk")

func (s *Service) auth(ctx context.Context) error {
	return servicetoken.Check(ctx, s.token, errUnauthenticated)
}

func validatePayment(p *riskv1.Payment) error {
	switch {
	case p == nil:
		return apierr.Invalid(apierr.CodeFieldRequired, "payment", "payment is required")
	case p.GetMerchantId() == "":
		return apierr.Invalid(apierr.CodeFieldRequired, "payment.merchant_id", "merchant_id is required")
	case p.GetAmount() <= 0:
		return apierr.Invalid("amount_invalid", "payment.amount", "amount must be a positive integer in minor units")
	case !money.Valid(strings.ToUpper(p.GetCurrency())):
		return apierr.Invalid("currency_unknown", "payment.currency", "currency must be an active ISO 4217 code, e.g. USD")
	case len(p.GetBin()) > 8 || strings.Trim(p.GetBin(), "0123456789") != "":
		return apierr.Invalid("bin_invalid", "payment.bin", "bin must be at most 8 digits (never a full card number)")
	}
	return nil
}

// Evaluate scores and counts a payment (the gateway's call).
func (s *Service) Evaluate(ctx context.Context, req *riskv1.EvaluateRequest) (*riskv1.Decision, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if err := validatePayment(req.GetPayment()); err != nil {
		return nil, err
	}
	return s.e.Evaluate(ctx, req.GetPayment(), false), nil
}

// DryRun scores without counting.
func (s *Service) DryRun(ctx context.Context, req *riskv1.EvaluateRequest) (*riskv1.Decision, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if err := validatePayment(req.GetPayment()); err != nil {
		return nil, err
	}
	return s.e.Evaluate(ctx, req.GetPayment(), true), nil
}

func toProto(r engine.RuleSetRecord) *riskv1.RuleSet {
	return &riskv1.RuleSet{Version: r.Version, Yaml: r.YAML, Source: r.Source, Rules: int32(r.Rules), CreatedAt: r.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")}
}

func unavailable(err error) error {
	return apierr.StorageUnavailable(err)
}

// GetRuleSet returns the active or a given version.
func (s *Service) GetRuleSet(ctx context.Context, req *riskv1.GetRuleSetRequest) (*riskv1.RuleSet, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	var rec engine.RuleSetRecord
	var err error
	if req.GetVersion() == "" {
		rec, err = s.e.State().ActiveRuleSet(ctx)
	} else {
		rec, err = s.e.State().GetRuleSet(ctx, req.GetVersion())
	}
	if errors.Is(err, engine.ErrNotFound) {
		return nil, apierr.New(apierr.KindNotFound, "ruleset_not_found", "version", "no such rule set version")
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return toProto(rec), nil
}

// PutRuleSet validates and activates a rule set; a bad set is rejected
// whole, with every problem's line and column.
func (s *Service) PutRuleSet(ctx context.Context, req *riskv1.PutRuleSetRequest) (*riskv1.RuleSet, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	set, err := s.e.PutRuleSet(ctx, []byte(req.GetYaml()), "api")
	var ce *rules.CompileError
	if errors.Is(err, rules.ErrCardNumberInText) {
		return nil, errRuleSetCardNumber
	}
	if errors.As(err, &ce) {
		return nil, apierr.Invalid("ruleset_invalid", "yaml", ce.Error())
	}
	if err != nil {
		return nil, unavailable(err)
	}
	rec, err := s.e.State().GetRuleSet(ctx, set.Version)
	if err != nil {
		return nil, unavailable(err)
	}
	return toProto(rec), nil
}

// ListRuleSets lists the history.
func (s *Service) ListRuleSets(ctx context.Context, req *riskv1.ListRuleSetsRequest) (*riskv1.ListRuleSetsResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	recs, err := s.e.State().ListRuleSets(ctx, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	resp := &riskv1.ListRuleSetsResponse{Active: s.e.Active().Version}
	for _, r := range recs {
		r.YAML = ""
		resp.RuleSets = append(resp.RuleSets, toProto(r))
	}
	return resp, nil
}

// Backtest replays recorded decisions through a candidate set.
func (s *Service) Backtest(ctx context.Context, req *riskv1.BacktestRequest) (*riskv1.BacktestResponse, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	resp, err := s.e.Backtest(ctx, []byte(req.GetYaml()), int(req.GetLimit()))
	var ce *rules.CompileError
	if errors.Is(err, rules.ErrCardNumberInText) {
		return nil, errRuleSetCardNumber
	}
	if errors.As(err, &ce) {
		return nil, apierr.Invalid("ruleset_invalid", "yaml", ce.Error())
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return resp, nil
}

// errRuleSetCardNumber: a rule set whose text looks like it carries a
// card number is refused whole (riskd stores and returns it).
var errRuleSetCardNumber = apierr.Invalid("card_number_in_text", "yaml", "the rule set looks like it contains a card number (in a name, description, expression or comment); riskd never holds card data")

func (s *Service) checkList(ctx context.Context, list string, values []string, needValues bool) error {
	if err := s.auth(ctx); err != nil {
		return err
	}
	if !knownLists[list] {
		return apierr.Invalid("list_unknown", "list", "list must be one of allow_fingerprints, block_fingerprints, block_ips, allow_ips, block_email_hashes, block_bins")
	}
	if needValues && len(values) == 0 {
		return apierr.Invalid(apierr.CodeFieldRequired, "values", "at least one value is required")
	}
	for _, v := range values {
		if v == "" || len(v) > 128 {
			return apierr.Invalid("value_invalid", "values", "values must be 1 to 128 characters")
		}
		if list == "block_bins" && (len(v) < 6 || len(v) > 8 || strings.Trim(v, "0123456789") != "") {
			return apierr.Invalid("value_invalid", "values", "BINs are 6 to 8 digits (never a full card number)")
		}
		if cardtext.Contains(v) {
			return apierr.Invalid("card_number_in_text", "values", "a value looks like it contains a card number; riskd never holds card data")
		}
	}
	return nil
}

func (s *Service) list(ctx context.Context, name string) (*riskv1.List, error) {
	if err := s.e.RefreshLists(ctx); err != nil {
		return nil, unavailable(err)
	}
	all, err := s.e.State().Lists(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	return &riskv1.List{List: name, Values: all[name]}, nil
}

// AddListEntries adds values to a list (effective at once on this replica,
// within the refresh interval on others).
func (s *Service) AddListEntries(ctx context.Context, req *riskv1.ListEntriesRequest) (*riskv1.List, error) {
	return s.changeList(ctx, req, engine.State.AddToList)
}

// RemoveListEntries removes values from a list.
func (s *Service) RemoveListEntries(ctx context.Context, req *riskv1.ListEntriesRequest) (*riskv1.List, error) {
	return s.changeList(ctx, req, engine.State.RemoveFromList)
}

// changeList checks req, applies change to its list's values in the
// engine's state and returns the list.
func (s *Service) changeList(ctx context.Context, req *riskv1.ListEntriesRequest, change func(engine.State, context.Context, string, []string) error) (*riskv1.List, error) {
	if err := s.checkList(ctx, req.GetList(), req.GetValues(), true); err != nil {
		return nil, err
	}
	if err := change(s.e.State(), ctx, req.GetList(), req.GetValues()); err != nil {
		return nil, unavailable(err)
	}
	return s.list(ctx, req.GetList())
}

// GetList returns a list.
func (s *Service) GetList(ctx context.Context, req *riskv1.GetListRequest) (*riskv1.List, error) {
	if err := s.checkList(ctx, req.GetList(), nil, false); err != nil {
		return nil, err
	}
	return s.list(ctx, req.GetList())
}
