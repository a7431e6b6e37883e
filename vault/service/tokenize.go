package service

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
)

const opTokenize = "tokenize"

// Tokenize validates a card, seals it under the current DEK and stores the
// ciphertext; the CVC, if given, is sealed into the ephemeral store with a TTL.
// Order of writes: CVC first (so a Redis outage stores nothing), then token
// and idempotency record in one transaction (so a retry never makes a second
// token); on failure the CVC is removed again.
func (s *Service) Tokenize(ctx context.Context, req *vaultv1.TokenizeRequest) (*vaultv1.Token, error) {
	defer scrub(req)
	defer s.TokenizeTimes.since(&s.TokenizeTimes.Total, time.Now())
	s.TokenizeTimes.Calls.Add(1)
	p, err := s.merchant(ctx, true)
	if err != nil {
		return nil, err
	}
	if p.publishable && req.GetDedupe() {
		// A publishable key only ever creates a fresh token: a dedupe answer
		// would tell it whether the merchant holds the card (and its
		// stored expiry), and attach its CVC to the stored token.
		return nil, ErrDedupePublishable
	}
	idemKey, err := idempotencyKey(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.publishable && idemKey != "" {
		// A replay of a known key answers 200 with the first token when
		// the card matches and 409 when it does not: an oracle for
		// whoever guesses the key. A publishable key's token is always
		// fresh and unreferenced, so a plain retry is harmless.
		return nil, ErrIdempotencyPublishable
	}
	if req.GetCard() == nil {
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "card", "card is required")
	}
	in := req.GetCard()
	c, err := card.Parse(card.Input{Number: in.Number, ExpMonth: int(in.ExpMonth), ExpYear: int(in.ExpYear), CVC: in.Cvc, HolderName: in.HolderName}, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	defer c.Wipe()
	if err := s.checkKeys(); err != nil {
		return nil, err
	}
	first := &vaultv1.Token{}
	macs, replayed, err := s.beginIdempotent(ctx, p.merchantID, idemKey, opTokenize, req, first)
	if err != nil {
		return nil, err
	}
	if replayed {
		return first, nil
	}
	resp, err := s.tokenize(ctx, p.merchantID, c, req.GetDedupe(), idemKey, macs)
	if err != nil {
		return nil, s.public(ctx, opTokenize, err)
	}
	if p.publishable {
		return publishableAnswer(resp), nil
	}
	return resp, nil
}

func (*TokenizeTimes) since(sum *atomic.Int64, t0 time.Time) { sum.Add(int64(time.Since(t0))) }

// publishableAnswer is what a publishable key learns from a tokenize: the
// token and what the user typed (brand, BIN and last4 of the number sent,
// the expiry sent, the CVC's expiry). Never the fingerprint: it is a keyed
// hash of the PAN that also leaves the vault (payments, riskd), so an
// unlimited supply of fingerprints for chosen numbers lets anyone holding
// the public key confirm guesses of a stored card's middle digits. The
// merchant's backend reads it with the secret key (GET /v1/tokens/{token}).
// The BIN stays: it is the first digits of the number the caller sent,
// no oracle without the fingerprint.
func publishableAnswer(t *vaultv1.Token) *vaultv1.Token {
	out := &vaultv1.Token{Token: t.GetToken(), CvcExpiresAt: t.GetCvcExpiresAt(), CreatedAt: t.GetCreatedAt()}
	if c := t.GetCard(); c != nil {
		out.Card = &vaultv1.CardMetadata{Brand: c.GetBrand(), Bin: c.GetBin(), Last4: c.GetLast4(), ExpMonth: c.GetExpMonth(), ExpYear: c.GetExpYear()}
	}
	return out
}

// scrub clears card fields from a request message once parsed, so that a
// later print of the message (a panic, a debugger) shows no card data.
func scrub(req *vaultv1.TokenizeRequest) {
	if c := req.GetCard(); c != nil {
		c.Number, c.Cvc, c.HolderName = "", "", ""
	}
}

func (s *Service) tokenize(ctx context.Context, merchantID string, c card.Card, dedupe bool, idemKey string, macs [][]byte) (*vaultv1.Token, error) {
	now := s.cfg.Now().UTC()
	fp, fpVersion, err := s.env.Fingerprint(ctx, merchantID, c.Number.RevealDigits())
	if err != nil {
		return nil, err
	}
	if dedupe {
		existing, err := s.findByFingerprint(ctx, merchantID, c, fp, fpVersion)
		switch {
		case err == nil:
			return s.dedupeHit(ctx, existing, c, idemKey, macs)
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	token, err := envelope.RandomID(s.cfg.Rand, "tok_")
	if err != nil {
		return nil, err
	}
	plain := card.Encode(card.Card{Number: c.Number, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, HolderName: c.HolderName})
	dekID, ct, err := s.env.Seal(ctx, envelope.AAD{Purpose: "card", Merchant: merchantID, Token: token}, plain)
	clear(plain)
	if err != nil {
		return nil, err
	}
	rec := store.TokenRecord{
		Token: token, MerchantID: merchantID, DEKID: dekID, Ciphertext: ct,
		Brand: string(c.Number.Brand()), BIN: c.Number.BIN(), Last4: c.Number.Last4(),
		ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, Fingerprint: fp, FingerprintVersion: fpVersion, CreatedAt: now,
	}
	resp := tokenResponse(rec)
	if !c.CVC.IsZero() {
		t0 := time.Now()
		exp, err := s.putCVC(ctx, merchantID, token, c.CVC)
		s.TokenizeTimes.since(&s.TokenizeTimes.CVC, t0)
		if err != nil {
			return nil, err
		}
		resp.CvcExpiresAt = timestamppb.New(exp)
	}
	var idem *store.IdempotencyRecord
	if idemKey != "" {
		b, err := proto.Marshal(resp)
		if err != nil {
			return nil, err
		}
		idem = &store.IdempotencyRecord{MerchantID: merchantID, Key: idemKey, Operation: opTokenize, RequestMAC: macs[0], Response: b, CreatedAt: now}
	}
	var err2 error
	if dedupe {
		// Atomic with the lookup: concurrent requests for a new card make
		// one token; the others get it.
		var existing *store.TokenRecord
		if existing, err2 = s.store.CreateTokenDeduped(ctx, rec, idem); err2 == nil && existing != nil {
			if !c.CVC.IsZero() {
				_ = s.cvcs.Delete(context.WithoutCancel(ctx), token)
			}
			return s.dedupeHit(ctx, *existing, c, idemKey, macs)
		}
	} else {
		t0 := time.Now()
		err2 = s.store.CreateToken(ctx, rec, idem)
		s.TokenizeTimes.since(&s.TokenizeTimes.Store, t0)
	}
	if err := err2; err != nil {
		if !c.CVC.IsZero() {
			// Best effort: the CVC is sealed and expires anyway, and no token
			// row refers to it.
			_ = s.cvcs.Delete(context.WithoutCancel(ctx), token)
		}
		if errors.Is(err, store.ErrIdempotencyExists) {
			// A concurrent request with the same key won: answer with its result.
			won := &vaultv1.Token{}
			if _, rerr := s.replay(ctx, merchantID, idemKey, opTokenize, macs, won); rerr != nil {
				return nil, rerr
			}
			return won, nil
		}
		return nil, err
	}
	return resp, nil
}

// dedupeHit answers with the merchant's existing token for the card; a CVC
// given now is held for that token.
// findByFingerprint looks the card up under the latest fingerprint secret
// and, until the records are rewritten after a rotation, under the previous
// one; a hit under the previous version is rewritten on the spot.
func (s *Service) findByFingerprint(ctx context.Context, merchantID string, c card.Card, fp string, version int) (store.TokenRecord, error) {
	rec, err := s.store.FindTokenByFingerprint(ctx, merchantID, fp)
	if err == nil || !errors.Is(err, store.ErrNotFound) || version <= 1 {
		return rec, err
	}
	prev, err := s.env.FingerprintAt(ctx, version-1, merchantID, c.Number.RevealDigits())
	if err != nil {
		return store.TokenRecord{}, err
	}
	rec, err = s.store.FindTokenByFingerprint(ctx, merchantID, prev)
	if err != nil {
		return rec, err
	}
	switch err := s.store.UpdateFingerprint(ctx, rec.Token, prev, fp, version); {
	case err == nil:
		rec.Fingerprint, rec.FingerprintVersion = fp, version
	case !errors.Is(err, store.ErrNotFound): // rewritten concurrently: fine
		return rec, err
	}
	return rec, nil
}

func (s *Service) dedupeHit(ctx context.Context, existing store.TokenRecord, c card.Card, idemKey string, macs [][]byte) (*vaultv1.Token, error) {
	resp := tokenResponse(existing)
	resp.Deduplicated = true
	if !c.CVC.IsZero() {
		exp, err := s.putCVC(ctx, existing.MerchantID, existing.Token, c.CVC)
		if err != nil {
			return nil, err
		}
		resp.CvcExpiresAt = timestamppb.New(exp)
	}
	if idemKey != "" {
		if err := s.remember(ctx, existing.MerchantID, idemKey, opTokenize, macs, resp); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// putCVC seals a CVC (bound to merchant and token) into the ephemeral store.
// Stored value: DEK id, a zero byte, ciphertext.
//
// It returns the CVC's expiry, a whole second: the store expires the CVC at
// exactly that instant (its TTL is counted from now to it), so the
// cvc_expires_at of the answer and of a later GetToken are the same.
func (s *Service) putCVC(ctx context.Context, merchantID, token string, cvc card.CVC) (time.Time, error) {
	dekID, ct, err := s.env.Seal(ctx, envelope.AAD{Purpose: "cvc", Merchant: merchantID, Token: token}, cvc.RevealDigits())
	if err != nil {
		return time.Time{}, err
	}
	v := make([]byte, 0, len(dekID)+1+len(ct))
	v = append(append(append(v, dekID...), 0), ct...)
	now := s.cfg.Now().UTC()
	exp := now.Add(s.cfg.CVCTTL).Truncate(time.Second)
	if err := s.cvcs.Put(ctx, token, v, exp.Sub(now)); err != nil {
		return time.Time{}, err
	}
	return exp, nil
}

func tokenResponse(r store.TokenRecord) *vaultv1.Token {
	return &vaultv1.Token{
		Token: r.Token,
		Card: &vaultv1.CardMetadata{
			Brand: r.Brand, Bin: r.BIN, Last4: r.Last4,
			ExpMonth: int32(r.ExpMonth), ExpYear: int32(r.ExpYear), Fingerprint: r.Fingerprint,
		},
		CreatedAt: timestamppb.New(r.CreatedAt.UTC().Truncate(time.Microsecond)),
	}
}
