package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/vaultd"
)

// waitReady polls /readyz until it answers want (200 or 503). The service
// notices a real outage within its key-check interval; polling here waits on
// an external process, not on our own code.
func (s *stack) waitReady(t *testing.T, want int) {
	t.Helper()
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		if r := s.rest(http.MethodGet, "/readyz", "", nil); r.status != want {
			return fmt.Errorf("readyz = %d %s", r.status, r.raw)
		}
		return nil
	}))
}

// countRows counts tokens directly in PostgreSQL (nil error when reachable).
func (s *stack) countRows(t *testing.T) int64 {
	t.Helper()
	n, err := s.in.Store.CountTokens(context.Background())
	require.NoErrorf(t, err, "count tokens: %v", err)
	return n
}

// TestOutages seals Vault, pauses it, stops Redis and stops PostgreSQL for
// real. During each outage tokenize and detokenize fail closed with a 503 /
// UNAVAILABLE and the right code and store nothing; afterwards they work
// again without a restart.
func TestOutages(t *testing.T) {
	s := newStack(t, stackOpts{dedicated: true})
	before := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "123"))
	require.EqualValuesf(t, 200, before.status, "tokenize: %s", before.raw)
	oldTok := before.str("token")

	// keyOutage checks the Vault-outage answers (PostgreSQL is up, so the
	// token count can be read).
	keyOutage := func(t *testing.T) {
		t.Helper()
		const code, grpcCode = "key_service_unavailable", codes.Unavailable
		n := s.countRows(t)
		r := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "321"))
		require.EqualValuesf(t, http.StatusServiceUnavailable, r.status, "tokenize during outage: %d %s; want 503 %s", r.status, r.raw, code)
		require.EqualValuesf(t, code, r.errCode(), "tokenize during outage: %d %s; want 503 %s", r.status, r.raw, code)
		_, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, false)
		require.EqualValuesf(t, grpcCode, status.Code(err), "detokenize during outage: %v; want %v %s", err, grpcCode, code)
		require.EqualValuesf(t, code, apierr.From(err).Code, "detokenize during outage: %v; want %v %s", err, grpcCode, code)
		after := s.countRows(t)
		require.EqualValuesf(t, n, after, "a token was stored during the outage (%d → %d)", n, after)
	}
	recovered := func(t *testing.T) {
		t.Helper()
		r := s.tokenize(s.a.SecretKey, cardIn("2223003122003222", 12, expYear, "222"))
		require.EqualValuesf(t, 200, r.status, "tokenize after recovery: %d %s", r.status, r.raw)
		c, resp, err := s.detokenize(s.gw, s.a.MerchantID, r.str("token"), true)
		require.NoErrorf(t, err, "detokenize after recovery: %v", err)
		require.Truef(t, resp.CvcIncluded, "detokenize after recovery: %v", err)
		c.Wipe()
		c, _, err = s.detokenize(s.gw, s.a.MerchantID, oldTok, false)
		require.NoErrorf(t, err, "old token after recovery: %v", err)
		c.Wipe()
	}

	t.Run("vault sealed", func(t *testing.T) {
		s.vault.Seal(t)
		s.waitReady(t, http.StatusServiceUnavailable)
		require.EqualValuesf(t, 0, s.in.Envelope.CachedDEKs(), "plaintext DEKs still cached while Vault is sealed")
		keyOutage(t)
		g := s.rest("GET", "/v1/tokens/"+oldTok, s.a.SecretKey, nil)
		require.EqualValuesf(t, 200, g.status, "metadata reads need no key and should keep working: %d", g.status)
		s.vault.Unseal(t)
		s.waitReady(t, http.StatusOK)
		recovered(t)
	})
	t.Run("vault hung", func(t *testing.T) {
		s.vault.Pause(t)
		resumed := false
		defer func() {
			if !resumed {
				s.vault.Resume(t)
			}
		}()
		s.waitReady(t, http.StatusServiceUnavailable)
		keyOutage(t)
		s.vault.Resume(t)
		resumed = true
		s.waitReady(t, http.StatusOK)
		recovered(t)
	})
	t.Run("redis stopped", func(t *testing.T) {
		n := s.countRows(t)
		s.redis.Stop(t)
		r := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "321"))
		require.EqualValuesf(t, 503, r.status, "tokenize with CVC, Redis down: %d %s", r.status, r.raw)
		require.EqualValuesf(t, "storage_unavailable", r.errCode(), "tokenize with CVC, Redis down: %d %s", r.status, r.raw)
		after := s.countRows(t)
		require.EqualValuesf(t, n, after, "a token was stored while its CVC could not be (%d → %d)", n, after)
		_, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, true)
		require.EqualValuesf(t, codes.Unavailable, status.Code(err), "detokenize with CVC, Redis down: %v", err)
		require.EqualValuesf(t, "storage_unavailable", apierr.From(err).Code, "detokenize with CVC, Redis down: %v", err)
		d := s.rest("DELETE", "/v1/tokens/"+oldTok, s.a.SecretKey, nil)
		require.EqualValuesf(t, 503, d.status, "delete with Redis down must not half-delete: %d %s", d.status, d.raw)
		s.waitReady(t, http.StatusServiceUnavailable)
		s.redis.Start(t)
		s.waitReady(t, http.StatusOK)
		recovered(t)
	})
	t.Run("postgres stopped", func(t *testing.T) {
		s.pg.Stop(t)
		r := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "321"))
		require.EqualValuesf(t, 503, r.status, "tokenize, Postgres down: %d %s", r.status, r.raw)
		require.EqualValuesf(t, "storage_unavailable", r.errCode(), "tokenize, Postgres down: %d %s", r.status, r.raw)
		_, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, false)
		require.EqualValuesf(t, codes.Unavailable, status.Code(err), "detokenize, Postgres down: %v", err)
		require.EqualValuesf(t, "storage_unavailable", apierr.From(err).Code, "detokenize, Postgres down: %v", err)
		// The CVC written before the database failed was removed again.
		keys, err := s.redis.Client(t).Keys(context.Background(), "obol:cvc:*").Result()
		require.NoError(t, err)
		s.pg.Start(t)
		s.waitReady(t, http.StatusOK)
		n := s.countRows(t)
		for _, k := range keys {
			if _, err := s.in.Store.GetToken(context.Background(), s.a.MerchantID, k[len("obol:cvc:"):]); err == nil {
				continue
			}
			require.FailNowf(t, "orphan CVC left in Redis after a failed tokenize", "key %s", k)
		}
		recovered(t)
		after := s.countRows(t)
		require.EqualValuesf(t, n+1, after, "rows %d → %d; want one more", n, after)
	})
}

// TestStartFailsClearly: vaultd refuses to start, saying what is wrong, when a
// dependency is unreachable or misconfigured.
func TestStartFailsClearly(t *testing.T) {
	s := newStack(t, stackOpts{})
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tests := []struct {
		name string
		mod  func(c *vaultd.Config)
		want string
	}{
		{"vault unreachable", func(c *vaultd.Config) { c.Vault.Address = "http://" + closed }, "vault is unreachable"},
		{"vault bad token", func(c *vaultd.Config) { c.Vault.Token = "not-a-token" }, "vault denied"},
		{"no such KEK", func(c *vaultd.Config) { c.Vault.KeyName = "missing-kek" }, "obol vault setup"},
		{"postgres unreachable", func(c *vaultd.Config) { c.PostgresURL = "postgres://postgres@" + closed + "/x?sslmode=disable" }, "unreachable"},
		{"redis unreachable", func(c *vaultd.Config) { c.RedisURL = "redis://" + closed + "/0" }, "redis at"},
		{"no postgres url", func(c *vaultd.Config) { c.PostgresURL = "" }, "OBOL_VAULT_POSTGRES_URL"},
		{"auth-limit redis unreachable", func(c *vaultd.Config) { c.AuthLimitRedisURL = "redis://" + closed + "/0" }, "OBOL_AUTHLIMIT_REDIS_URL"},
		{"auth-limit redis URL malformed", func(c *vaultd.Config) { c.AuthLimitRedisURL = "mysql://obol:hunter22@db/x" }, "OBOL_AUTHLIMIT_REDIS_URL: not a redis:// or rediss:// URL"},
		{"no TLS", func(c *vaultd.Config) { c.TLS = nil }, "OBOL_VAULTD_TLS_CERT"},
		{"client secret TTL too long", func(c *vaultd.Config) { c.CVCClientSecretTTL = 2 * time.Hour }, "OBOL_CVC_CLIENT_SECRET_TTL"},
		{"CVC TTL too long", func(c *vaultd.Config) { c.CVCTTL = 25 * time.Hour }, "OBOL_CVC_TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.cfg
			tt.mod(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			in, err := vaultd.Start(ctx, cfg)
			if !assert.Error(t, err, "started") {
				in.Close()
				return
			}
			require.Truef(t, strings.Contains(err.Error(), tt.want), "error %q does not say %q", err, tt.want)
			assert.NotContains(t, err.Error(), "hunter22", "a URL's password is never repeated")
		})
	}
}
