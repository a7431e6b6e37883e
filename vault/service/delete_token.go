package service

import (
	"context"
	"errors"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/store"
)

const opDelete = "delete_token"

// DeleteToken crypto-erases a token: the CVC (if any) is removed first, so an
// ephemeral-store outage changes nothing, then the row and its ciphertext.
// Later reads answer 404. With an Idempotency-Key, a retry gets the first
// answer.
func (s *Service) DeleteToken(ctx context.Context, req *vaultv1.DeleteTokenRequest) (*vaultv1.DeleteTokenResponse, error) {
	p, err := s.merchant(ctx, false)
	if err != nil {
		return nil, err
	}
	idemKey, err := idempotencyKey(ctx, p)
	if err != nil {
		return nil, err
	}
	first := &vaultv1.DeleteTokenResponse{}
	macs, replayed, err := s.beginIdempotent(ctx, p.merchantID, idemKey, opDelete, req, first)
	if err != nil {
		return nil, err
	}
	if replayed {
		return first, nil
	}
	// Ownership first, so that another merchant's token is a 404 and its CVC
	// is untouched.
	if _, err := s.store.GetToken(ctx, p.merchantID, req.GetToken()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrTokenNotFound
		}
		return nil, s.public(ctx, opDelete, err)
	}
	if err := s.record(ctx, audit.Event{Actor: p.actor(), Action: audit.ActionDeleteToken, MerchantID: p.merchantID, Token: req.GetToken()}); err != nil {
		return nil, s.public(ctx, opDelete, err)
	}
	if err := s.cvcs.Delete(ctx, req.GetToken()); err != nil {
		return nil, s.public(ctx, opDelete, err)
	}
	if err := s.store.DeleteToken(ctx, p.merchantID, req.GetToken()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrTokenNotFound
		}
		return nil, s.public(ctx, opDelete, err)
	}
	resp := &vaultv1.DeleteTokenResponse{Token: req.GetToken(), Deleted: true}
	if idemKey != "" {
		if err := s.remember(ctx, p.merchantID, idemKey, opDelete, macs, resp); err != nil {
			return nil, s.public(ctx, opDelete, err)
		}
	}
	return resp, nil
}
