// Package service implements obol.vault.v1.VaultService: tokenize, read,
// delete and (for the gateway only) detokenize. It is the PCI core and SEES
// PANs: it parses card input, encrypts it through the envelope package, and
// reveals it only sealed to the gateway's ephemeral key. One file per RPC.
//
// Every method authenticates its caller itself (secret or publishable API key
// for merchant calls, the gateway's mTLS identity for Detokenize), so REST
// through the in-process grpc-gateway and native gRPC take the same path.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/revealbox"
	"github.com/obolpay/obol/vault/store"
)

var _ vaultv1.VaultServiceServer = (*Service)(nil)

// Machine codes specific to the vault.
const (
	CodeTokenNotFound    = "token_not_found"
	CodeOriginNotAllowed = "origin_not_allowed"
)

// Public errors specific to the vault.
var (
	// ErrTokenNotFound is also the answer for another merchant's token.
	ErrTokenNotFound = apierr.New(apierr.KindNotFound, CodeTokenNotFound, "token", "no such token")
	// ErrPublishableKey: publishable keys may only tokenize.
	ErrPublishableKey = apierr.New(apierr.KindPermissionDenied, apierr.CodePermissionDenied, "authorization", "publishable keys may only tokenize; use a secret key")
	// ErrOriginNotAllowed: browser origin not configured for the merchant.
	ErrOriginNotAllowed = apierr.New(apierr.KindPermissionDenied, CodeOriginNotAllowed, "origin", "this checkout origin is not allowed for the merchant's publishable key")
	// ErrNotGateway: Detokenize needs the gateway's mTLS identity.
	ErrNotGateway = apierr.New(apierr.KindPermissionDenied, apierr.CodePermissionDenied, "", "detokenize is restricted to the gateway's mTLS identity")
)

// Config configures the service.
type Config struct {
	// CVCTTL is how long a CVC is held (default 1h, at most 24h).
	CVCTTL time.Duration
	// ClientSecretTTL is how long a CVC client secret may wait for its one
	// use (default 10 minutes, at most 1 hour).
	ClientSecretTTL time.Duration
	// GatewayIdentity is the URI SAN (or, failing that, CN) a client
	// certificate must carry to call Detokenize.
	GatewayIdentity string
	// RequireRequestNonce: Detokenize refuses a request without a
	// request_nonce (a gateway older than request-bound boxes) before it
	// takes the CVC, instead of sealing the card bound to merchant and
	// token only. For once every gateway is upgraded.
	RequireRequestNonce bool
	// AuthCacheTTL caches API key lookups (default 10s; revocation delay).
	AuthCacheTTL time.Duration
	Now          func() time.Time
	Rand         io.Reader
	Logger       *slog.Logger
}

// MaxCVCTTL is the longest a CVC may be held.
const MaxCVCTTL = 24 * time.Hour

// Service implements VaultService.
type Service struct {
	vaultv1.UnimplementedVaultServiceServer

	store store.Store
	cvcs  cvcstore.Store
	env   *envelope.Envelope
	cfg   Config
	log   *slog.Logger

	keysDown   atomic.Bool
	kekVersion atomic.Int64

	authMu    sync.Mutex
	authCache map[string]authEntry

	// sealer seals Detokenize answers, one key agreement per gateway
	// recipient key and lifetime (revealbox.Sealer).
	sealer *revealbox.Sealer

	// TokenizeTimes sums where tokenizations spend their wall time.
	TokenizeTimes TokenizeTimes
}

// TokenizeTimes sums the wall time of Tokenize calls (nanoseconds, from the
// handler's entry to its return; the HTTP server's own time is outside) and
// of two of their stages: the CVC's Put and the token row's CreateToken
// (group commit: the wait for a flusher included). The load tool prints
// them per call.
type TokenizeTimes struct {
	Calls, Total, CVC, Store atomic.Int64
}

// New wires a service.
func New(st store.Store, cvcs cvcstore.Store, env *envelope.Envelope, cfg Config) *Service {
	if cfg.CVCTTL <= 0 {
		cfg.CVCTTL = time.Hour
	}
	if cfg.CVCTTL > MaxCVCTTL {
		cfg.CVCTTL = MaxCVCTTL
	}
	if cfg.ClientSecretTTL <= 0 {
		cfg.ClientSecretTTL = DefaultClientSecretTTL
	}
	if cfg.ClientSecretTTL > MaxClientSecretTTL {
		cfg.ClientSecretTTL = MaxClientSecretTTL
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GatewayIdentity == "" {
		cfg.GatewayIdentity = DefaultGatewayIdentity
	}
	return &Service{store: st, cvcs: cvcs, env: env, cfg: cfg, log: cfg.Logger, authCache: map[string]authEntry{},
		sealer: revealbox.NewSealer(revealbox.DefaultLifetime, cfg.Now)}
}

// DefaultGatewayIdentity is the URI SAN of the gateway's client certificate.
const DefaultGatewayIdentity = "spiffe://obol.local/gatewayd"

// KeyHealth is a key manager that can report whether it is usable.
type KeyHealth interface {
	Health(ctx context.Context) error
}

// WatchKeyService polls the key manager until ctx ends. While it is sealed or
// unreachable, tokenize and detokenize fail closed with
// key_service_unavailable and every cached plaintext DEK is wiped; when it
// comes back, service resumes without a restart.
func (s *Service) WatchKeyService(ctx context.Context, kh KeyHealth, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, every+time.Second)
		err := kh.Health(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.setKeysDown(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) setKeysDown(err error) {
	if err != nil {
		if !s.keysDown.Swap(true) {
			s.log.Error("key service unavailable: failing closed and wiping cached data keys", "err", err)
		}
		s.env.Purge()
		return
	}
	if s.keysDown.Swap(false) {
		s.log.Info("key service available again")
	}
}

// FingerprintVersions reports the fingerprint secret's latest version.
type FingerprintVersions interface {
	FingerprintVersion(ctx context.Context) (int, error)
}

// KeyVersions reports the KEK's latest version.
type KeyVersions interface {
	LatestVersion(ctx context.Context) (int, error)
}

// WatchKEKVersion polls the KEK's latest version until ctx ends. When it
// moves (a rotation by the key admin, or Vault's auto_rotate_period), new
// data is sealed under a fresh DEK wrapped by the new version from then on.
// onPoll runs after every successful poll (vaultd runs the rewrap job, which
// is cheap when nothing is behind), so an interrupted rewrap resumes and a
// data key generated during a rotation is rewrapped too.
func (s *Service) WatchKEKVersion(ctx context.Context, kv KeyVersions, every time.Duration, onPoll func(version int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen, fpSeen := 0, 0
	fpv, watchFP := kv.(FingerprintVersions)
	for {
		if watchFP {
			cctx, cancel := context.WithTimeout(ctx, every+5*time.Second)
			v, err := fpv.FingerprintVersion(cctx)
			cancel()
			if err == nil && v > fpSeen {
				if fpSeen != 0 {
					s.log.Info("fingerprint secret rotated: new fingerprints use the new version; older records are rewritten in the background", "version", v, "previous", fpSeen)
					if err := s.record(ctx, audit.Event{Actor: "vaultd", Action: audit.ActionFingerprintRotated, Detail: fmt.Sprintf("version=%d previous=%d", v, fpSeen)}); err != nil {
						s.log.Error("audit: could not record the fingerprint rotation", "err", err)
					}
				}
				fpSeen = v
				s.env.SetFingerprintVersion(v)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, every+5*time.Second)
		v, err := kv.LatestVersion(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && v > seen {
			if seen != 0 {
				s.log.Info("KEK rotated: new data keys are wrapped under the new version", "kek_version", v, "previous", seen)
				if err := s.record(ctx, audit.Event{Actor: "vaultd", Action: audit.ActionKEKRotated, KEKVersion: v, Detail: fmt.Sprintf("previous=%d", seen)}); err != nil {
					s.log.Error("audit: could not record the KEK rotation", "err", err)
				}
			}
			seen = v
			s.env.RetireBelow(v)
			s.kekVersion.Store(int64(v))
		}
		if err == nil && onPoll != nil {
			onPoll(v)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Record writes an audit event on behalf of a background job or admin tool.
func (s *Service) Record(ctx context.Context, e audit.Event) error { return s.record(ctx, e) }

// KEKVersion is the latest KEK version the watcher has seen.
func (s *Service) KEKVersion() int { return int(s.kekVersion.Load()) }

// KeysUp reports whether the key service is believed usable.
func (s *Service) KeysUp() bool { return !s.keysDown.Load() }

// Ready checks everything a request needs: key service, database, Redis.
func (s *Service) Ready(ctx context.Context) error {
	if s.keysDown.Load() {
		return apierr.ErrKeyServiceUnavailable
	}
	if err := s.store.Ping(ctx); err != nil {
		return apierr.StorageUnavailable(err)
	}
	if err := s.cvcs.Ping(ctx); err != nil {
		return apierr.StorageUnavailable(err)
	}
	return nil
}

// checkKeys fails fast while the key service is known to be down.
func (s *Service) checkKeys() error {
	if s.keysDown.Load() {
		return apierr.ErrKeyServiceUnavailable
	}
	return nil
}

// public turns any error into a public one, logging the internal cause. Key
// manager failures become key_service_unavailable (and mark the key service
// down if Vault says it is sealed or unreachable); anything else unexpected
// from storage becomes storage_unavailable: we fail closed, never open.
func (s *Service) public(ctx context.Context, op string, err error) error {
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		if ae.Cause != nil {
			s.log.WarnContext(ctx, "request failed", "op", op, "code", ae.Code, "cause", ae.Cause)
		}
		return ae
	case errors.Is(err, envelope.ErrKeyManager):
		if errors.Is(err, transit.ErrSealed) || errors.Is(err, transit.ErrUnreachable) {
			s.setKeysDown(err)
		}
		s.log.ErrorContext(ctx, "key service failure", "op", op, "err", err)
		return apierr.KeyServiceUnavailable(err)
	case errors.Is(err, envelope.ErrOpen):
		s.log.ErrorContext(ctx, "stored ciphertext failed authentication", "op", op, "err", err)
		return apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	case errors.Is(err, context.Canceled):
		return apierr.New(apierr.KindUnavailable, apierr.CodeUnavailable, "", "request canceled")
	default:
		s.log.ErrorContext(ctx, "storage failure", "op", op, "err", err)
		return apierr.StorageUnavailable(err)
	}
}
