package service

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/internal/idemkey"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/store"
)

// Metadata keys (REST headers are forwarded under the same lower-case names).
const (
	MDAuthorization  = "authorization"
	MDIdempotencyKey = idemkey.MD
	MDOrigin         = "origin"
)

type principal struct {
	merchantID  string
	keyPrefix   string
	publishable bool
}

// idemScope namespaces the principal's Idempotency-Keys by key type.
func (p principal) idemScope() string {
	if p.publishable {
		return "vault:publishable"
	}
	return "vault:secret"
}

// actor names a principal in the audit trail.
func (p principal) actor() string { return "merchant:" + p.merchantID + "/" + p.keyPrefix }

type authEntry struct {
	p       principal
	origins []string
	expires time.Time
}

func firstMD(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// merchant authenticates a merchant call. allowPublishable is true only for
// Tokenize; a publishable key used from a browser must come from one of the
// merchant's configured origins.
func (s *Service) merchant(ctx context.Context, allowPublishable bool) (principal, error) {
	key, err := apikey.FromBearer(firstMD(ctx, MDAuthorization))
	if err != nil {
		return principal{}, apierr.ErrUnauthenticated
	}
	hash := apikey.Hash(key)
	now := s.cfg.Now()
	s.authMu.Lock()
	e, ok := s.authCache[string(hash)]
	s.authMu.Unlock()
	if !ok || now.After(e.expires) {
		k, err := s.store.LookupAPIKey(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return principal{}, apierr.ErrUnauthenticated
		}
		if err != nil {
			return principal{}, s.public(ctx, "auth", err)
		}
		e = authEntry{p: principal{merchantID: k.MerchantID, keyPrefix: k.Prefix, publishable: k.Kind == store.KeyPublishable}, expires: now.Add(s.cfg.AuthCacheTTL)}
		if e.p.publishable {
			m, err := s.store.GetMerchant(ctx, k.MerchantID)
			if err != nil {
				return principal{}, s.public(ctx, "auth", err)
			}
			e.origins = m.AllowedOrigins
		}
		if s.cfg.AuthCacheTTL > 0 {
			s.authMu.Lock()
			if len(s.authCache) > 10_000 {
				clear(s.authCache)
			}
			s.authCache[string(hash)] = e
			s.authMu.Unlock()
		}
	}
	if e.p.publishable {
		if !allowPublishable {
			return principal{}, ErrPublishableKey
		}
		if origin := firstMD(ctx, MDOrigin); origin != "" && !contains(e.origins, origin) {
			return principal{}, ErrOriginNotAllowed
		}
	}
	return e.p, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// gateway checks that the caller presented a verified client certificate
// carrying the gateway identity (URI SAN, or CN as a fallback), and returns
// the audit actor for it.
func (s *Service) gateway(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", ErrNotGateway
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", ErrNotGateway
	}
	if hasIdentity(ti.State.VerifiedChains[0][0], s.cfg.GatewayIdentity) {
		return "gateway:" + s.cfg.GatewayIdentity, nil
	}
	return "", ErrNotGateway
}

func hasIdentity(c *x509.Certificate, id string) bool {
	for _, u := range c.URIs {
		if u.String() == id {
			return true
		}
	}
	return !strings.Contains(id, "://") && c.Subject.CommonName == id
}

// AuthenticateMerchant resolves a merchant's secret key for the gateway:
// only the gateway's mTLS identity may ask, and publishable keys are
// refused (they may only tokenize).
func (s *Service) AuthenticateMerchant(ctx context.Context, req *vaultv1.AuthenticateMerchantRequest) (*vaultv1.AuthenticateMerchantResponse, error) {
	if _, err := s.gateway(ctx); err != nil {
		return nil, err
	}
	mctx := metadata.NewIncomingContext(ctx, metadata.Pairs(MDAuthorization, req.GetAuthorization()))
	p, err := s.merchant(mctx, false)
	if err != nil {
		return nil, err
	}
	return &vaultv1.AuthenticateMerchantResponse{MerchantId: p.merchantID, Live: strings.HasPrefix(p.keyPrefix, "sk_live_")}, nil
}
