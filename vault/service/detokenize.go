package service

import (
	"bytes"
	"context"
	"errors"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/revealbox"
	"github.com/obolpay/obol/vault/store"
)

// Detokenize reveals a card to the gateway, sealed to the recipient key the
// gateway sent (its key of the moment: revealbox.Keyring; the agreement with
// it is reused for revealbox.DefaultLifetime) and bound to the request by
// its nonce. Only the gateway's mTLS identity may call it, and only
// for a token of the merchant it names. With include_cvc the CVC is taken
// from the ephemeral store: a second call gets none (single use).
func (s *Service) Detokenize(ctx context.Context, req *vaultv1.DetokenizeRequest) (*vaultv1.DetokenizeResponse, error) {
	actor, err := s.gateway(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetMerchantId() == "":
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "merchant_id", "merchant_id is required")
	case len(req.GetRecipientPublicKey()) != revealbox.KeySize:
		return nil, apierr.Invalid("recipient_key_invalid", "recipient_public_key", "recipient_public_key must be a 32-byte X25519 public key")
	case len(req.GetRequestNonce()) != 0 && len(req.GetRequestNonce()) != revealbox.NonceSize:
		return nil, apierr.Invalid("request_nonce_invalid", "request_nonce", "request_nonce must be 16 random bytes, or empty")
	case len(req.GetRequestNonce()) == 0 && s.cfg.RequireRequestNonce:
		return nil, apierr.Invalid("request_nonce_required", "request_nonce", "request_nonce is required: this vaultd seals only request-bound boxes (OBOL_VAULTD_REQUIRE_REQUEST_NONCE); upgrade the gateway")
	}
	if err := s.checkKeys(); err != nil {
		return nil, err
	}
	// No reveal without a record of it: the audit event is written first,
	// and if it cannot be, nothing is revealed.
	event := func(rec store.TokenRecord, kekVersion int) audit.Event {
		ev := audit.Event{Actor: actor, Action: audit.ActionDetokenize, MerchantID: rec.MerchantID, Token: rec.Token,
			Purpose: req.GetPurpose(), DestinationHost: req.GetDestinationHost(), KEKVersion: kekVersion}
		if req.GetIncludeCvc() {
			ev.Detail = "cvc_requested"
		}
		return ev
	}
	var (
		rec      store.TokenRecord
		recorded bool
	)
	if rv, ok := s.store.(store.Revealer); ok {
		// The token read and the audit append in one transaction. The
		// event needs the KEK version of the token's DEK: when that DEK is
		// not in memory yet, nothing is recorded here, and the event is
		// appended below once Open has fetched it, as without a Revealer.
		rec, recorded, err = rv.RevealToken(ctx, req.GetMerchantId(), req.GetToken(), func(rec store.TokenRecord) (audit.Event, bool) {
			v, ok := s.env.CachedKEKVersion(rec.DEKID)
			if !ok {
				return audit.Event{}, false
			}
			ev := event(rec, v)
			ev.At = s.cfg.Now()
			return ev, true
		})
	} else {
		rec, err = s.store.GetToken(ctx, req.GetMerchantId(), req.GetToken())
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrTokenNotFound
	}
	if err != nil {
		return nil, s.public(ctx, "detokenize", err)
	}
	plain, err := s.env.Open(ctx, rec.DEKID, envelope.AAD{Purpose: "card", Merchant: rec.MerchantID, Token: rec.Token}, rec.Ciphertext)
	if err != nil {
		return nil, s.public(ctx, "detokenize", err)
	}
	if !recorded {
		if err := s.record(ctx, event(rec, s.env.KEKVersionOf(rec.DEKID))); err != nil {
			clear(plain)
			return nil, s.public(ctx, "detokenize", err)
		}
	}
	c, err := card.Decode(plain)
	clear(plain)
	if err != nil {
		return nil, s.public(ctx, "detokenize", err)
	}
	defer c.Wipe()
	resp := &vaultv1.DetokenizeResponse{
		Token: rec.Token, Brand: rec.Brand, Bin: rec.BIN, Last4: rec.Last4,
		ExpMonth: int32(rec.ExpMonth), ExpYear: int32(rec.ExpYear), Fingerprint: rec.Fingerprint,
	}
	if req.GetIncludeCvc() {
		cvc, err := s.takeCVC(ctx, rec)
		if err != nil {
			return nil, s.public(ctx, "detokenize", err)
		}
		c.CVC = cvc
		resp.CvcIncluded = !cvc.IsZero()
	}
	// The box is bound to this request when the gateway sent a nonce
	// (revealbox.RequestAAD), else to merchant and token, for gateways
	// older than the nonce.
	aad := revealbox.AAD(rec.MerchantID, rec.Token)
	if len(req.GetRequestNonce()) != 0 {
		aad, resp.RequestBound = revealbox.DetokenizeAAD(req), true
	}
	enc := card.Encode(c)
	box, err := s.sealer.Seal(req.GetRecipientPublicKey(), enc, aad)
	clear(enc)
	if err != nil {
		return nil, s.public(ctx, "detokenize", err)
	}
	resp.SealedCard = box
	s.log.InfoContext(ctx, "card revealed", "merchant_id", rec.MerchantID, "token", rec.Token,
		"purpose", req.GetPurpose(), "destination_host", req.GetDestinationHost(), "cvc", resp.CvcIncluded)
	return resp, nil
}

// takeCVC consumes the token's CVC; a zero CVC when none is held.
func (s *Service) takeCVC(ctx context.Context, rec store.TokenRecord) (card.CVC, error) {
	v, err := s.cvcs.Take(ctx, rec.Token)
	if errors.Is(err, cvcstore.ErrNotFound) {
		return card.CVC{}, nil
	}
	if err != nil {
		return card.CVC{}, err
	}
	i := bytes.IndexByte(v, 0)
	if i < 0 {
		return card.CVC{}, envelope.ErrOpen
	}
	pt, err := s.env.Open(ctx, string(v[:i]), envelope.AAD{Purpose: "cvc", Merchant: rec.MerchantID, Token: rec.Token}, v[i+1:])
	if err != nil {
		return card.CVC{}, err
	}
	return card.NewCVCFromDigits(pt), nil
}
