package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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
	if err := testenv.WaitFor(20*time.Second, func() error {
		if r := s.rest(http.MethodGet, "/readyz", "", nil); r.status != want {
			return fmt.Errorf("readyz = %d %s", r.status, r.raw)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// countRows counts tokens directly in PostgreSQL (nil error when reachable).
func (s *stack) countRows(t *testing.T) int64 {
	t.Helper()
	n, err := s.in.Store.CountTokens(context.Background())
	if err != nil {
		t.Fatalf("count tokens: %v", err)
	}
	return n
}

// TestOutages seals Vault, pauses it, stops Redis and stops PostgreSQL for
// real. During each outage tokenize and detokenize fail closed with a 503 /
// UNAVAILABLE and the right code and store nothing; afterwards they work
// again without a restart.
func TestOutages(t *testing.T) {
	s := newStack(t, stackOpts{dedicated: true})
	before := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "123"))
	if before.status != 200 {
		t.Fatalf("tokenize: %s", before.raw)
	}
	oldTok := before.str("token")

	// keyOutage checks the Vault-outage answers (PostgreSQL is up, so the
	// token count can be read).
	keyOutage := func(t *testing.T) {
		t.Helper()
		const code, grpcCode = "key_service_unavailable", codes.Unavailable
		n := s.countRows(t)
		r := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "321"))
		if r.status != http.StatusServiceUnavailable || r.errCode() != code {
			t.Fatalf("tokenize during outage: %d %s; want 503 %s", r.status, r.raw, code)
		}
		_, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, false)
		if status.Code(err) != grpcCode || apierr.From(err).Code != code {
			t.Fatalf("detokenize during outage: %v; want %v %s", err, grpcCode, code)
		}
		if after := s.countRows(t); after != n {
			t.Fatalf("a token was stored during the outage (%d → %d)", n, after)
		}
	}
	recovered := func(t *testing.T) {
		t.Helper()
		r := s.tokenize(s.a.SecretKey, cardIn("2223003122003222", 12, expYear, "222"))
		if r.status != 200 {
			t.Fatalf("tokenize after recovery: %d %s", r.status, r.raw)
		}
		c, resp, err := s.detokenize(s.gw, s.a.MerchantID, r.str("token"), true)
		if err != nil || !resp.CvcIncluded {
			t.Fatalf("detokenize after recovery: %v", err)
		}
		c.Wipe()
		c, _, err = s.detokenize(s.gw, s.a.MerchantID, oldTok, false)
		if err != nil {
			t.Fatalf("old token after recovery: %v", err)
		}
		c.Wipe()
	}

	t.Run("vault sealed", func(t *testing.T) {
		s.vault.Seal(t)
		s.waitReady(t, http.StatusServiceUnavailable)
		if s.in.Envelope.CachedDEKs() != 0 {
			t.Fatal("plaintext DEKs still cached while Vault is sealed")
		}
		keyOutage(t)
		if g := s.rest("GET", "/v1/tokens/"+oldTok, s.a.SecretKey, nil); g.status != 200 {
			t.Fatalf("metadata reads need no key and should keep working: %d", g.status)
		}
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
		if r.status != 503 || r.errCode() != "storage_unavailable" {
			t.Fatalf("tokenize with CVC, Redis down: %d %s", r.status, r.raw)
		}
		if after := s.countRows(t); after != n {
			t.Fatalf("a token was stored while its CVC could not be (%d → %d)", n, after)
		}
		if _, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, true); status.Code(err) != codes.Unavailable || apierr.From(err).Code != "storage_unavailable" {
			t.Fatalf("detokenize with CVC, Redis down: %v", err)
		}
		if d := s.rest("DELETE", "/v1/tokens/"+oldTok, s.a.SecretKey, nil); d.status != 503 {
			t.Fatalf("delete with Redis down must not half-delete: %d %s", d.status, d.raw)
		}
		s.waitReady(t, http.StatusServiceUnavailable)
		s.redis.Start(t)
		s.waitReady(t, http.StatusOK)
		recovered(t)
	})
	t.Run("postgres stopped", func(t *testing.T) {
		s.pg.Stop(t)
		r := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "321"))
		if r.status != 503 || r.errCode() != "storage_unavailable" {
			t.Fatalf("tokenize, Postgres down: %d %s", r.status, r.raw)
		}
		if _, _, err := s.detokenize(s.gw, s.a.MerchantID, oldTok, false); status.Code(err) != codes.Unavailable || apierr.From(err).Code != "storage_unavailable" {
			t.Fatalf("detokenize, Postgres down: %v", err)
		}
		// The CVC written before the database failed was removed again.
		keys, err := s.redis.Client(t).Keys(context.Background(), "obol:cvc:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		s.pg.Start(t)
		s.waitReady(t, http.StatusOK)
		n := s.countRows(t)
		for _, k := range keys {
			if _, err := s.in.Store.GetToken(context.Background(), s.a.MerchantID, k[len("obol:cvc:"):]); err == nil {
				continue
			}
			t.Fatalf("orphan CVC %s left in Redis after a failed tokenize", k)
		}
		recovered(t)
		if after := s.countRows(t); after != n+1 {
			t.Fatalf("rows %d → %d; want one more", n, after)
		}
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
		{"no postgres url", func(c *vaultd.Config) { c.PostgresURL = "" }, "OBOL_POSTGRES_URL"},
		{"no TLS", func(c *vaultd.Config) { c.TLS = nil }, "OBOL_TLS_CERT"},
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
			if err == nil {
				in.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
