package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/obolpay/obol/internal/atomicfile"
)

// errNotSaved: the state file could not be written (Config.StatePath).
var errNotSaved = errors.New("simulator state not saved")

// savedAuth is an authorization as the state file keeps it (no card
// number: brand and last four only, as in memory).
type savedAuth struct {
	Authorization
	// Chargeback is an older simulator's dispute card flag (lost).
	Chargeback    bool   `json:"chargeback,omitempty"`
	Dispute       string `json:"dispute,omitempty"`
	DisputeReason string `json:"dispute_reason,omitempty"`
	Settled       int64  `json:"settled,omitempty"`
	RefundSettled int64  `json:"refund_settled,omitempty"`
	// Disputed is an older simulator's "chargeback reported": its dispute
	// is not continued (the ledger of that time opened none).
	Disputed       bool  `json:"disputed,omitempty"`
	DisputeStage   int   `json:"dispute_stage,omitempty"`
	DisputedAmount int64 `json:"disputed_amount,omitempty"`
}

type savedState struct {
	Authorizations []savedAuth          `json:"authorizations"`
	Idempotency    map[string]idemEntry `json:"idempotency"`
	Reversed       []string             `json:"reversed"`
	Reports        []*report            `json:"reports"`
}

// load reads Config.StatePath, if set and present.
func (s *Simulator) load() error {
	if s.cfg.StatePath == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("simulator state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("simulator state %s: %w", s.cfg.StatePath, err)
	}
	for _, sa := range st.Authorizations {
		a := sa.Authorization
		a.dispute, a.disputeReason, a.settled, a.refundSettled = sa.Dispute, sa.DisputeReason, sa.Settled, sa.RefundSettled
		a.disputeStage, a.disputed = sa.DisputeStage, sa.DisputedAmount
		if sa.Chargeback && a.dispute == "" {
			a.dispute, a.disputeReason = "lost", "fraudulent"
		}
		if sa.Disputed && a.disputeStage == stageNone {
			a.disputeStage = stageClosed
		}
		s.auths[a.ID] = &a
	}
	for k, v := range st.Idempotency {
		s.idem[k] = v
	}
	for _, r := range st.Reversed {
		s.reversed[r] = true
	}
	s.reports = st.Reports
	return nil
}

// saveLocked writes the state file (the caller holds s.mu). Without a
// StatePath it does nothing.
func (s *Simulator) saveLocked() error {
	if s.cfg.StatePath == "" {
		return nil
	}
	st := savedState{Idempotency: s.idem, Reports: s.reports}
	for _, a := range s.sortedAuths() {
		st.Authorizations = append(st.Authorizations, savedAuth{Authorization: *a, Dispute: a.dispute, DisputeReason: a.disputeReason,
			Settled: a.settled, RefundSettled: a.refundSettled, DisputeStage: a.disputeStage, DisputedAmount: a.disputed})
	}
	for r := range s.reversed {
		st.Reversed = append(st.Reversed, r)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotSaved, err)
	}
	if err := atomicfile.Write(s.cfg.StatePath, b); err != nil {
		s.cfg.Logger.Error("acquirer simulator: state not saved", "path", s.cfg.StatePath, "err", err)
		return fmt.Errorf("%w: %v", errNotSaved, err)
	}
	return nil
}
