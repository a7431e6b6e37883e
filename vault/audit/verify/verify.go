// Package verify is `obol audit verify`: it recomputes the vault's audit
// hash chain from the store and checks it against the anchor vaultd keeps
// in Vault (vault/audit/anchor). PAN-free: audit events hold none. PCI zone.
package verify

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store"
)

// Report is the outcome of Chain.
type Report struct {
	Checked  int64
	HeadSeq  int64
	HeadHash string
	Problems []audit.Problem
	// AnchorChecked is true when an anchor was given and compared.
	AnchorChecked bool
}

// Chain recomputes the whole hash chain from the store and, when an
// anchor (from Vault) is given, checks that the anchored event is present
// with the anchored hash: a history rewritten with recomputed hashes fails
// there.
func Chain(ctx context.Context, st interface {
	ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error)
}, anchor *transit.AuditAnchor) (Report, error) {
	var v audit.Verifier
	var anchored []byte
	for cursor := int64(0); ; {
		evs, err := st.ListAudit(ctx, store.AuditFilter{AfterSeq: cursor, Limit: 1000})
		if err != nil {
			return Report{}, err
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			v.Add(e)
			if anchor != nil && e.Seq == anchor.Seq {
				anchored = e.Hash
			}
		}
		cursor = evs[len(evs)-1].Seq
	}
	seq, hash := v.Head()
	r := Report{Checked: v.Checked, HeadSeq: seq, HeadHash: hex.EncodeToString(hash), Problems: v.Problems}
	if anchor != nil {
		r.AnchorChecked = true
		switch {
		case anchored == nil:
			r.Problems = append(r.Problems, audit.Problem{Seq: anchor.Seq, Reason: "the event anchored in Vault is missing"})
		case hex.EncodeToString(anchored) != anchor.Hash:
			r.Problems = append(r.Problems, audit.Problem{Seq: anchor.Seq, Reason: fmt.Sprintf("does not match the hash anchored in Vault at %s: history was rewritten", anchor.At)})
		}
	}
	return r, nil
}
