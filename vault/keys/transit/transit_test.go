package transit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestWrappedVersion(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"v1", "vault:v1:abc", 1},
		{"v12", "vault:v12:abc", 12},
		{"no digits", "vault:v:abc", 0},
		{"not a number", "vault:vx:abc", 0},
		{"other prefix", "local:v1:abc", 0},
		{"empty", "", 0},
		{"no ciphertext", "vault:v3", 0},
		{"overflow", "vault:v99999999999999999999:abc", 0},
		{"largest int", "vault:v9223372036854775807:abc", 9223372036854775807},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, WrappedVersion(tt.in))
		})
	}
}

// FuzzWrappedVersion: wrapped DEKs come back from the database; parsing one
// never panics, never yields a negative version, and reads back what was
// formatted.
func FuzzWrappedVersion(f *testing.F) {
	for _, s := range []string{"vault:v1:abc", "vault:v99999999999999999999:x", "vault:v:", ""} {
		f.Add(s, uint32(3))
	}
	f.Fuzz(func(t *testing.T, s string, n uint32) {
		assert.GreaterOrEqual(t, WrappedVersion(s), 0)
		if !strings.HasPrefix(s, "vault:v") {
			assert.Zero(t, WrappedVersion(s))
		}
		assert.Equal(t, int(n), WrappedVersion(fmt.Sprintf("vault:v%d:%s", n, s)))
	})
}

// clearVaultEnv makes the test independent of the caller's VAULT_* variables.
func clearVaultEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"VAULT_ADDR", "VAULT_AGENT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_SKIP_VERIFY", "VAULT_MAX_RETRIES", "VAULT_CLIENT_TIMEOUT"} {
		t.Setenv(k, "")
	}
}

func TestNewValidatesConfig(t *testing.T) {
	clearVaultEnv(t)
	tests := []struct {
		name string
		env  map[string]string
		cfg  Config
		want string
	}{
		{"no address", nil, Config{Token: "t"}, "vault address is required"},
		{"no auth", nil, Config{Address: "http://x"}, "vault auth is required"},
		{"approle without secret id file", nil, Config{Address: "http://x", RoleID: "r"}, "secret id file"},
		{"missing token file", nil, Config{Address: "http://x", TokenFile: "/nonexistent/token"}, "vault token file"},
		{"fingerprint path not KV v2", nil, Config{Address: "http://x", Token: "t", FingerprintPath: "secret/obol/fp"}, "fingerprint path"},
		{"audit anchor path not KV v2", nil, Config{Address: "http://x", Token: "t", AuditAnchorPath: "secret/data/"}, "audit anchor path"},
		{"client cert without key", nil, Config{Address: "https://x", Token: "t", ClientCertFile: "cert.pem"}, "set together"},
		{"missing CA file", nil, Config{Address: "https://x", Token: "t", CACertFile: "/nonexistent/ca.pem"}, "vault TLS"},
		{"VAULT_SKIP_VERIFY refused", map[string]string{"VAULT_SKIP_VERIFY": "true"}, Config{Address: "https://x", Token: "t"}, "VAULT_SKIP_VERIFY"},
		{"malformed VAULT_MAX_RETRIES", map[string]string{"VAULT_MAX_RETRIES": "many"}, Config{Address: "http://x", Token: "t"}, "VAULT_*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := New(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestNewEnvironment: the standard VAULT_* variables fill what Obol's
// settings leave empty; Obol's settings win when both are set.
func TestNewEnvironment(t *testing.T) {
	tests := []struct {
		name          string
		env           map[string]string
		cfg           Config
		wantAddr      string
		wantToken     string
		wantNamespace string
		wantTimeout   time.Duration
	}{
		{"env only", map[string]string{"VAULT_ADDR": "http://env:8200", "VAULT_TOKEN": "env-token", "VAULT_NAMESPACE": "env-ns", "VAULT_CLIENT_TIMEOUT": "7s"}, Config{},
			"http://env:8200", "env-token", "env-ns", 7 * time.Second},
		{"obol settings win", map[string]string{"VAULT_ADDR": "http://env:8200", "VAULT_TOKEN": "env-token", "VAULT_NAMESPACE": "env-ns", "VAULT_CLIENT_TIMEOUT": "7s"},
			Config{Address: "http://obol:8200/", Token: "obol-token", Namespace: "obol-ns", Timeout: 3 * time.Second},
			"http://obol:8200", "obol-token", "obol-ns", 3 * time.Second},
		{"defaults", nil, Config{Address: "http://obol:8200", Token: "t"}, "http://obol:8200", "t", "", 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearVaultEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := New(tt.cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			assert.Equal(t, tt.wantAddr, c.api.Address())
			assert.Equal(t, tt.wantToken, c.api.Token())
			assert.Equal(t, tt.wantNamespace, c.api.Namespace())
			assert.Equal(t, tt.wantTimeout, c.cfg.Timeout)
			assert.Equal(t, authToken, c.auth.kind)
		})
	}
}

// TestAuthPrecedence: a token beats a token file, which beats AppRole,
// which beats Kubernetes; a login method never starts with VAULT_TOKEN.
func TestAuthPrecedence(t *testing.T) {
	clearVaultEnv(t)
	t.Setenv("VAULT_TOKEN", "env-token")
	file := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(file, []byte("file-token\n"), 0o600))
	all := Config{Address: "http://x", Token: "t", TokenFile: file, RoleID: "r", SecretIDFile: "sid", KubernetesRole: "k"}
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantKind  string
		wantToken string
	}{
		{"token", func(*Config) {}, authToken, "t"},
		{"token file", func(c *Config) { c.Token = "" }, authTokenFile, "file-token"},
		{"approle", func(c *Config) { c.Token, c.TokenFile = "", "" }, authAppRole, ""},
		{"kubernetes", func(c *Config) { c.Token, c.TokenFile, c.RoleID = "", "", "" }, authKubernetes, ""},
		{"VAULT_TOKEN", func(c *Config) { c.Token, c.TokenFile, c.RoleID, c.KubernetesRole = "", "", "", "" }, authToken, "env-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := all
			tt.mutate(&cfg)
			assert.Contains(t, cfg.AuthMethod(), tt.wantKind)
			c, err := New(cfg)
			require.NoError(t, err)
			assert.Equal(t, tt.wantKind, c.auth.kind)
			assert.Equal(t, tt.wantToken, c.api.Token())
		})
	}
}

func dedicated(t *testing.T) (*testenv.Vault, *Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Vault")
	}
	v := testenv.StartVault(t)
	root, err := New(Config{Address: v.Addr, Token: v.Token})
	require.NoError(t, err)
	t.Cleanup(func() { _ = root.Close() })
	return v, root
}

// syncBuffer is a log sink safe for the watcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

const loginLine = `msg="vault login" `

// TestSetupIdempotent: the first run creates everything, the second changes
// nothing, and the KEK is not exportable and cannot be deleted.
func TestSetupIdempotent(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	first, err := root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	second, err := root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	count := func(steps []SetupStep) (changed int) {
		for _, s := range steps {
			if s.Changed {
				changed++
			}
		}
		return changed
	}
	// Dev-mode Vault already has KV v2 at secret/: transit, KEK and fingerprint secret are new.
	assert.Equal(t, 3, count(first), "first setup: %v", first)
	assert.Equal(t, 0, count(second), "second setup: %v", second)
	assert.Len(t, second, len(first))
	ki, err := root.ReadKey(ctx)
	require.NoError(t, err)
	assert.False(t, ki.Exportable)
	assert.False(t, ki.DeletionAllowed)
	assert.Equal(t, "aes256-gcm96", ki.Type)
	s1, _, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	_, err = root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	s2, _, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	assert.Len(t, s1, 32)
	assert.Equal(t, s1, s2, "setup replaced the fingerprint secret")
	code, _ := v.Call(t, "DELETE", "transit/keys/obol-kek", nil)
	assert.Equal(t, 400, code, "deleting the KEK must not be allowed")
	_, err = root.ReadKey(ctx)
	require.NoError(t, err, "KEK gone after a refused delete")
}

// appRole enables AppRole on v with a role holding policies/vault/obol-vaultd.hcl
// and returns a client logging in with it.
func appRole(t *testing.T, v *testenv.Vault, root *Client, role map[string]any, logs *syncBuffer) *Client {
	t.Helper()
	_, err := root.Setup(context.Background(), SetupOptions{})
	require.NoError(t, err)
	policy, err := os.ReadFile("../../../policies/vault/obol-vaultd.hcl")
	require.NoError(t, err)
	v.Do(t, "PUT", "sys/policies/acl/obol-vaultd", map[string]string{"policy": string(policy)})
	v.Do(t, "POST", "sys/auth/approle", map[string]string{"type": "approle"})
	role["token_policies"] = []string{"obol-vaultd"}
	v.Do(t, "POST", "auth/approle/role/obol-vaultd", role)
	roleID := v.Do(t, "GET", "auth/approle/role/obol-vaultd/role-id", nil)["data"].(map[string]any)["role_id"].(string)
	secretID := v.Do(t, "POST", "auth/approle/role/obol-vaultd/secret-id", nil)["data"].(map[string]any)["secret_id"].(string)
	sidFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(sidFile, []byte(secretID+"\n"), 0o600))
	c, err := New(Config{Address: v.Addr, RoleID: roleID, SecretIDFile: sidFile, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAppRoleLeastPrivilege logs in with AppRole under policies/vault/obol-vaultd.hcl:
// vaultd's operations work, others are denied (without a new login), and a
// revoked token is replaced by a fresh login.
func TestAppRoleLeastPrivilege(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	var logs syncBuffer
	c := appRole(t, v, root, map[string]any{"token_ttl": "1h", "secret_id_ttl": "24h"}, &logs)
	require.NoError(t, c.Check(ctx), "Check with AppRole")
	dk, err := c.GenerateDataKey(ctx)
	require.NoError(t, err)
	assert.Len(t, dk.Plaintext, 32)
	assert.Equal(t, 1, WrappedVersion(dk.Wrapped))
	assert.Equal(t, 1, dk.KEKVersion)
	pt, err := c.UnwrapDataKey(ctx, dk.Wrapped)
	require.NoError(t, err)
	assert.Equal(t, dk.Plaintext, pt)
	denied := []struct{ method, path string }{
		{"POST", "transit/encrypt/obol-kek"},
		{"POST", "transit/keys/obol-kek/rotate"},
		{"GET", "transit/export/encryption-key/obol-kek"},
		{"POST", "transit/keys/obol-kek/config"},
		{"GET", "sys/policies/acl/obol-vaultd"},
		{"GET", "secret/data/other"},
	}
	for _, d := range denied {
		t.Run(fmt.Sprintf("denied %s %s", d.method, d.path), func(t *testing.T) {
			var err error
			if d.method == "GET" {
				_, err = c.read(ctx, d.path)
			} else {
				_, err = c.write(ctx, d.path, map[string]any{"plaintext": "AAAA"})
			}
			require.ErrorIs(t, err, ErrDenied)
		})
	}
	assert.Equal(t, 1, logs.count(loginLine), "policy denials must not trigger a new login")
	// Revoke the current token behind the client's back: the next call logs in again.
	tok := c.api.Token()
	v.Do(t, "POST", "auth/token/revoke", map[string]string{"token": tok})
	_, err = c.GenerateDataKey(ctx)
	require.NoError(t, err, "after revocation")
	assert.NotEqual(t, tok, c.api.Token(), "client kept the revoked token")
	assert.Equal(t, 2, logs.count(loginLine), "one revocation, one new login")
}

// tokenLookup looks a token up with the root token.
func tokenLookup(v *testenv.Vault, t *testing.T, tok string) (map[string]any, error) {
	code, body := v.Call(t, "POST", "auth/token/lookup", map[string]string{"token": tok})
	if code != 200 {
		return nil, fmt.Errorf("lookup: HTTP %d %v", code, body)
	}
	return body["data"].(map[string]any), nil
}

// TestAppRoleRenewal: with a short-lived AppRole token the library's
// lifetime watcher renews the token before it expires (its expiry moves
// forward with no request from us), and once the role's max TTL stops
// renewals it logs in again on its own; the client keeps working throughout.
func TestAppRoleRenewal(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	var logs syncBuffer
	c := appRole(t, v, root, map[string]any{"token_ttl": "4s", "token_max_ttl": "12s", "secret_id_ttl": "1h"}, &logs)
	require.NoError(t, c.Check(ctx))
	first := c.api.Token()
	d0, err := tokenLookup(v, t, first)
	require.NoError(t, err)
	exp0, err := time.Parse(time.RFC3339Nano, d0["expire_time"].(string))
	require.NoError(t, err)
	require.Equal(t, true, d0["renewable"])

	// Renewed in place: same token, later expiry, a renewal recorded.
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		d, err := tokenLookup(v, t, first)
		if err != nil {
			return err
		}
		exp, err := time.Parse(time.RFC3339Nano, d["expire_time"].(string))
		if err != nil {
			return err
		}
		if !exp.After(exp0) || d["last_renewal_time"] == nil {
			return fmt.Errorf("not renewed yet: expires %s (was %s)", exp, exp0)
		}
		return nil
	}))
	assert.Equal(t, first, c.api.Token(), "a renewal keeps the token")
	assert.Equal(t, 1, logs.count(loginLine))
	assert.Positive(t, logs.count(`msg="vault token renewed"`))

	// The max TTL caps the lease: the watcher gives up and the client logs in again.
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		if c.api.Token() == first {
			return fmt.Errorf("still on the first token")
		}
		return nil
	}))
	assert.GreaterOrEqual(t, logs.count(loginLine), 2)
	assert.Positive(t, logs.count(`msg="vault token can no longer be renewed; logging in again"`))
	_, err = c.GenerateDataKey(ctx)
	require.NoError(t, err, "after the re-login")
}

func TestHealth(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	require.NoError(t, root.Health(ctx), "healthy vault")
	v.Seal(t)
	require.ErrorIs(t, root.Health(ctx), ErrSealed, "sealed vault")
	_, err := root.GenerateDataKey(ctx)
	require.ErrorIs(t, err, ErrSealed, "data key from sealed vault")
	v.Unseal(t)
	require.NoError(t, root.Health(ctx), "unsealed vault")
	gone, err := New(Config{Address: fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), Token: "x"})
	require.NoError(t, err)
	require.ErrorIs(t, gone.Health(ctx), ErrUnreachable, "unreachable vault")
	_, err = gone.GenerateDataKey(ctx)
	require.ErrorIs(t, err, ErrUnreachable, "data key from unreachable vault")
}

// TestTokenFile: a token kept fresh in a file (Vault Agent's sink) is
// re-read when Vault refuses the current one.
func TestTokenFile(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	_, err := root.Setup(ctx, SetupOptions{Policies: true})
	require.NoError(t, err)
	mint := func() string {
		r := v.Do(t, "POST", "auth/token/create", map[string]any{"policies": []string{"obol-vaultd"}, "ttl": "1h"})
		return r["auth"].(map[string]any)["client_token"].(string)
	}
	file := filepath.Join(t.TempDir(), "token")
	first := mint()
	require.NoError(t, os.WriteFile(file, []byte(first+"\n"), 0o600))
	c, err := New(Config{Address: v.Addr, TokenFile: file})
	require.NoError(t, err)
	require.NoError(t, c.Check(ctx))
	v.Do(t, "POST", "auth/token/revoke", map[string]string{"token": first})
	require.NoError(t, os.WriteFile(file, []byte(mint()), 0o600))
	_, err = c.GenerateDataKey(ctx)
	require.NoError(t, err, "after the agent replaced the token")
	_, err = New(Config{Address: v.Addr, TokenFile: filepath.Join(t.TempDir(), "missing")})
	require.Error(t, err, "a missing token file was accepted")
}

func TestRotateFingerprint(t *testing.T) {
	_, root := dedicated(t)
	ctx := context.Background()
	_, err := root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	s1, v1, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, v1)
	v2, err := root.RotateFingerprint(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, v2)
	s2, got, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	old, gotOld, err := root.FingerprintSecret(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, 2, got)
	assert.NotEqual(t, s1, s2)
	assert.Equal(t, 1, gotOld)
	assert.Equal(t, s1, old)
}

// TestKVCheckAndSet: a KV v2 write whose check-and-set version is stale is
// refused by Vault with ErrConflict and changes nothing; cas=0 (write only
// if absent, what Setup relies on) is refused once the secret exists.
func TestKVCheckAndSet(t *testing.T) {
	_, root := dedicated(t)
	ctx := context.Background()
	_, err := root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	_, v1, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	_, err = root.RotateFingerprint(ctx)
	require.NoError(t, err)
	cur, v2, err := root.FingerprintSecret(ctx, 0)
	require.NoError(t, err)
	data, err := newFingerprintKey()
	require.NoError(t, err)
	tests := []struct {
		name string
		cas  int
	}{
		{"stale version", v1},
		{"only if absent", 0},
		{"future version", v2 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := root.kvPut(ctx, root.cfg.FingerprintPath, data, tt.cas)
			require.ErrorIs(t, err, ErrConflict)
			assert.NotErrorIs(t, err, ErrDenied)
			got, ver, err := root.FingerprintSecret(ctx, 0)
			require.NoError(t, err)
			assert.Equal(t, v2, ver)
			assert.Equal(t, cur, got)
		})
	}
	ver, err := root.kvPut(ctx, root.cfg.FingerprintPath, data, v2)
	require.NoError(t, err, "the current version is accepted")
	assert.Equal(t, v2+1, ver)
}

// TestSetupAuditDevice: setup enables Vault's file audit device when asked,
// once, and Vault then records requests to it.
func TestSetupAuditDevice(t *testing.T) {
	_, root := dedicated(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vault-audit.log")
	for i := 0; i < 2; i++ {
		steps, err := root.Setup(ctx, SetupOptions{AuditFile: path})
		require.NoError(t, err)
		last := steps[len(steps)-1]
		assert.Equal(t, i == 0, last.Changed, "run %d: %v", i+1, last)
		assert.Contains(t, last.What, path)
	}
	_, err := root.GenerateDataKey(ctx)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(b), "transit/datakey/plaintext/obol-kek", "audit log does not record the data key request")
	if bytes.Contains(b, []byte(`"plaintext":"`)) {
		assert.Contains(t, string(b), `"plaintext":"hmac-sha256:`, "Vault's audit log holds a plaintext data key (it must be HMACed)")
	}
}
