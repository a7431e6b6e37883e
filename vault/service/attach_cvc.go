package service

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/store"
)

const (
	opAttachCVC    = "attach_cvc"
	opClientSecret = "create_cvc_client_secret"
)

// Machine codes of the CVC attach operations.
const (
	CodeDedupeRequiresSecretKey = "dedupe_requires_secret_key"
	CodeClientSecretRequired    = "client_secret_required"
	CodeClientSecretInvalid     = "client_secret_invalid"
	CodeIdempotencyNotSupported = "idempotency_key_not_supported"
)

// Public errors of the CVC attach operations.
var (
	// ErrDedupePublishable: dedupe would tell a publishable key whether the
	// merchant already holds a card, and attach its CVC to the stored token.
	ErrDedupePublishable = apierr.New(apierr.KindPermissionDenied, CodeDedupeRequiresSecretKey, "dedupe", "dedupe needs the secret key; a publishable key only creates fresh tokens (dedupe by the fingerprint on your backend)")
	// ErrClientSecretRequired: a publishable key may attach a CVC only with
	// a client secret minted for the token.
	ErrClientSecretRequired = apierr.New(apierr.KindPermissionDenied, CodeClientSecretRequired, "client_secret", "attaching a CVC with a publishable key needs a client secret minted for this token with the secret key")
	// ErrClientSecretInvalid: unknown, expired, already used, or minted for
	// another token (one answer for all, so nothing is learned from it).
	ErrClientSecretInvalid = apierr.New(apierr.KindPermissionDenied, CodeClientSecretInvalid, "client_secret", "the client secret is unknown, expired, already used or not for this token")
	// ErrClientSecretIdempotency: minting is not replayable (the secret is
	// never stored, so a replay could not return it); minting twice is
	// harmless, an unused secret expires.
	// ErrIdempotencyPublishable: a publishable key's Idempotency-Key
	// records would be an oracle (a replay with a guessed card answers the
	// first token, a wrong guess a conflict); its tokens are fresh and
	// unreferenced, so a plain retry is harmless.
	ErrIdempotencyPublishable  = apierr.Invalid(CodeIdempotencyNotSupported, "Idempotency-Key", "Idempotency-Key is not accepted with a publishable key: every tokenize makes a fresh token, so retry without it")
	ErrClientSecretIdempotency = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, "Idempotency-Key", "Idempotency-Key is not accepted when minting a client secret: the secret is shown once and never stored; mint again instead")
)

// DefaultClientSecretTTL and MaxClientSecretTTL bound a CVC client secret.
const (
	DefaultClientSecretTTL = 10 * time.Minute
	MaxClientSecretTTL     = time.Hour
)

// clientSecretPrefix starts every CVC client secret.
const clientSecretPrefix = "cvcs_"

// clientSecretSlot is where a client secret's binding lives in the
// ephemeral store: under the hash of the secret (never the secret), next to
// the CVCs (tokens start with tok_, so the two never meet).
func clientSecretSlot(secret string) string {
	sum := sha256.Sum256([]byte("obol cvc client secret v1\x00" + secret))
	return "cvcsecret:" + hex.EncodeToString(sum[:])
}

// AttachCVC holds a CVC for an existing token, replacing any held one.
// With the secret key the token must be the merchant's (else 404); with a
// publishable key the client secret is taken (single use) first and must
// be bound to this merchant and token, so a publishable key alone learns
// nothing about stored tokens and changes nothing. The answer to a
// publishable key carries only the token and the CVC's expiry.
func (s *Service) AttachCVC(ctx context.Context, req *vaultv1.AttachCVCRequest) (*vaultv1.Token, error) {
	defer func() { req.Cvc, req.ClientSecret = "", "" }()
	p, err := s.merchant(ctx, true)
	if err != nil {
		return nil, err
	}
	idemKey, err := idempotencyKey(ctx, p)
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetToken() == "":
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "token", "token is required (tok_…)")
	case req.GetCvc() == "":
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "cvc", "cvc is required")
	case p.publishable && req.GetClientSecret() == "":
		return nil, ErrClientSecretRequired
	}
	if err := s.checkKeys(); err != nil {
		return nil, err
	}
	first := &vaultv1.Token{}
	macs, replayed, err := s.beginIdempotent(ctx, p.merchantID, idemKey, opAttachCVC, req, first)
	if err != nil {
		return nil, err
	}
	if replayed {
		return first, nil
	}
	if req.GetClientSecret() != "" {
		if err := s.takeClientSecret(ctx, p.merchantID, req.GetToken(), req.GetClientSecret()); err != nil {
			return nil, s.public(ctx, opAttachCVC, err)
		}
	}
	rec, err := s.store.GetToken(ctx, p.merchantID, req.GetToken())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrTokenNotFound
	}
	if err != nil {
		return nil, s.public(ctx, opAttachCVC, err)
	}
	cvc, err := card.ParseCVC(req.GetCvc(), card.Brand(rec.Brand))
	if err != nil {
		return nil, apierr.Invalid(card.CodeCVCInvalid, "cvc", apierr.From(err).Message)
	}
	defer cvc.Wipe()
	exp, err := s.putCVC(ctx, p.merchantID, rec.Token, cvc)
	if err != nil {
		return nil, s.public(ctx, opAttachCVC, err)
	}
	if err := s.record(ctx, audit.Event{Actor: p.actor(), Action: audit.ActionAttachCVC, MerchantID: p.merchantID, Token: rec.Token}); err != nil {
		s.log.ErrorContext(ctx, "audit: could not record a CVC attach", "err", err)
	}
	resp := tokenResponse(rec)
	if p.publishable {
		resp = &vaultv1.Token{Token: rec.Token}
	}
	resp.CvcExpiresAt = timestamppb.New(exp)
	if idemKey != "" {
		if err := s.remember(ctx, p.merchantID, idemKey, opAttachCVC, macs, resp); err != nil {
			return nil, s.public(ctx, opAttachCVC, err)
		}
	}
	return resp, nil
}

// takeClientSecret consumes a client secret and checks its binding. A
// secret presented for another token is consumed too: a misuse burns it.
func (s *Service) takeClientSecret(ctx context.Context, merchantID, token, secret string) error {
	if !strings.HasPrefix(secret, clientSecretPrefix) || len(secret) > 128 {
		return ErrClientSecretInvalid
	}
	v, err := s.cvcs.Take(ctx, clientSecretSlot(secret))
	if errors.Is(err, cvcstore.ErrNotFound) {
		return ErrClientSecretInvalid
	}
	if err != nil {
		return err
	}
	if string(v) != merchantID+"\x00"+token {
		return ErrClientSecretInvalid
	}
	return nil
}

// CreateCVCClientSecret mints a single-use client secret bound to one of
// the merchant's tokens (secret key only). Only its hash is kept, in the
// ephemeral store, for ClientSecretTTL.
func (s *Service) CreateCVCClientSecret(ctx context.Context, req *vaultv1.CreateCVCClientSecretRequest) (*vaultv1.CVCClientSecret, error) {
	p, err := s.merchant(ctx, false)
	if err != nil {
		return nil, err
	}
	if idemKey, err := idempotencyKey(ctx, p); err != nil {
		return nil, err
	} else if idemKey != "" {
		return nil, ErrClientSecretIdempotency
	}
	if req.GetToken() == "" {
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "token", "token is required (tok_…)")
	}
	rec, err := s.store.GetToken(ctx, p.merchantID, req.GetToken())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrTokenNotFound
	}
	if err != nil {
		return nil, s.public(ctx, opClientSecret, err)
	}
	var b [32]byte
	if _, err := io.ReadFull(s.cfg.Rand, b[:]); err != nil {
		return nil, s.public(ctx, opClientSecret, err)
	}
	secret := clientSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	if err := s.cvcs.Put(ctx, clientSecretSlot(secret), []byte(p.merchantID+"\x00"+rec.Token), s.cfg.ClientSecretTTL); err != nil {
		return nil, s.public(ctx, opClientSecret, err)
	}
	return &vaultv1.CVCClientSecret{ClientSecret: secret, Token: rec.Token,
		ExpiresAt: timestamppb.New(s.cfg.Now().UTC().Add(s.cfg.ClientSecretTTL).Truncate(time.Second))}, nil
}
