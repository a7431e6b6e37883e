package service

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/store"
)

// GetToken returns a token's metadata. Another merchant's token is answered
// exactly like a token that does not exist. It needs neither the key service
// nor a decryption: metadata is stored in clear (it is PAN-free).
func (s *Service) GetToken(ctx context.Context, req *vaultv1.GetTokenRequest) (*vaultv1.Token, error) {
	p, err := s.merchant(ctx, false)
	if err != nil {
		return nil, err
	}
	rec, err := s.store.GetToken(ctx, p.merchantID, req.GetToken())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrTokenNotFound
	}
	if err != nil {
		return nil, s.public(ctx, "get_token", err)
	}
	resp := tokenResponse(rec)
	ttl, err := s.cvcs.TTL(ctx, rec.Token)
	switch {
	case err == nil:
		// The store expires the CVC at a whole second (putCVC); now plus
		// what is left is that instant give or take the time between the
		// store's clock reading and ours, so round to the nearest second.
		resp.CvcExpiresAt = timestamppb.New(s.cfg.Now().UTC().Add(ttl).Round(time.Second))
	case !errors.Is(err, cvcstore.ErrNotFound):
		return nil, s.public(ctx, "get_token", err)
	}
	return resp, nil
}
