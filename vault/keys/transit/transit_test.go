package transit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestWrappedVersion(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"vault:v1:abc", 1},
		{"vault:v12:abc", 12},
		{"vault:v:abc", 0},
		{"vault:vx:abc", 0},
		{"local:v1:abc", 0},
		{"", 0},
		{"vault:v3", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := WrappedVersion(tt.in); got != tt.want {
				t.Fatalf("WrappedVersion(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no address", Config{Token: "t"}},
		{"no auth", Config{Address: "http://x"}},
		{"approle without secret id file", Config{Address: "http://x", RoleID: "r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("accepted")
			}
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
	if err != nil {
		t.Fatal(err)
	}
	return v, root
}

// TestSetupIdempotent: the first run creates everything, the second changes
// nothing, and the KEK is not exportable and cannot be deleted.
func TestSetupIdempotent(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	first, err := root.Setup(ctx, SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := root.Setup(ctx, SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	count := func(steps []SetupStep) (changed int) {
		for _, s := range steps {
			if s.Changed {
				changed++
			}
		}
		return changed
	}
	// Dev-mode Vault already has KV v2 at secret/: transit, KEK and fingerprint secret are new.
	if c := count(first); c != 3 {
		t.Fatalf("first setup changed %d things: %v", c, first)
	}
	if c := count(second); c != 0 || len(second) != len(first) {
		t.Fatalf("second setup changed %d things: %v", c, second)
	}
	ki, err := root.ReadKey(ctx)
	if err != nil || ki.Exportable || ki.DeletionAllowed || ki.Type != "aes256-gcm96" {
		t.Fatalf("KEK = %+v, %v", ki, err)
	}
	s1, _, _ := root.FingerprintSecret(ctx, 0)
	if _, err := root.Setup(ctx, SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := root.FingerprintSecret(ctx, 0)
	if !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Fatal("setup replaced the fingerprint secret")
	}
	if code, _ := v.Call(t, "DELETE", "transit/keys/obol-kek", nil); code != 400 {
		t.Fatalf("deleting the KEK answered %d; deletion must not be allowed", code)
	}
	if _, err := root.ReadKey(ctx); err != nil {
		t.Fatalf("KEK gone after a refused delete: %v", err)
	}
}

// TestAppRoleLeastPrivilege logs in with AppRole under policies/vault/obol-vaultd.hcl:
// vaultd's operations work, others are denied, and a revoked token is
// replaced by a fresh login.
func TestAppRoleLeastPrivilege(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	if _, err := root.Setup(ctx, SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("../../../policies/vault/obol-vaultd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	v.Do(t, "PUT", "sys/policies/acl/obol-vaultd", map[string]string{"policy": string(policy)})
	v.Do(t, "POST", "sys/auth/approle", map[string]string{"type": "approle"})
	v.Do(t, "POST", "auth/approle/role/obol-vaultd", map[string]any{"token_policies": []string{"obol-vaultd"}, "token_ttl": "1h", "secret_id_ttl": "24h"})
	roleID := v.Do(t, "GET", "auth/approle/role/obol-vaultd/role-id", nil)["data"].(map[string]any)["role_id"].(string)
	secretID := v.Do(t, "POST", "auth/approle/role/obol-vaultd/secret-id", nil)["data"].(map[string]any)["secret_id"].(string)
	sidFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(sidFile, []byte(secretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	clock := time.Now()
	c, err := New(Config{Address: v.Addr, RoleID: roleID, SecretIDFile: sidFile, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check with AppRole: %v", err)
	}
	dk, err := c.GenerateDataKey(ctx)
	if err != nil || len(dk.Plaintext) != 32 || WrappedVersion(dk.Wrapped) != 1 || dk.KEKVersion != 1 {
		t.Fatalf("GenerateDataKey: %+v %v", dk.KEKVersion, err)
	}
	pt, err := c.UnwrapDataKey(ctx, dk.Wrapped)
	if err != nil || !bytes.Equal(pt, dk.Plaintext) {
		t.Fatalf("UnwrapDataKey: %v", err)
	}
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
			err := c.do(ctx, d.method, d.path, map[string]string{"plaintext": "AAAA"}, nil)
			if !errors.Is(err, ErrDenied) {
				t.Fatalf("err = %v, want ErrDenied", err)
			}
		})
	}
	if n := bytes.Count(logs.Bytes(), []byte("approle login")); n != 1 {
		t.Fatalf("%d logins; policy denials must not trigger a new login", n)
	}
	// Revoke the current token behind the client's back: the next call logs in again.
	c.mu.RLock()
	tok := c.token
	c.mu.RUnlock()
	v.Do(t, "POST", "auth/token/revoke", map[string]string{"token": tok})
	if _, err := c.GenerateDataKey(ctx); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	c.mu.RLock()
	if c.token == tok {
		t.Fatal("client kept the revoked token")
	}
	c.mu.RUnlock()
	if n := bytes.Count(logs.Bytes(), []byte("approle login")); n != 2 {
		t.Fatalf("%d logins after one revocation; want 2", n)
	}
	// Before the 1h token expires (at two thirds of its TTL), the client
	// logs in again on its own, without any request being refused.
	clock = clock.Add(39 * time.Minute)
	if _, err := c.GenerateDataKey(ctx); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(logs.Bytes(), []byte("approle login")); n != 2 {
		t.Fatalf("logged in again before two thirds of the TTL (%d logins)", n)
	}
	clock = clock.Add(2 * time.Minute)
	if _, err := c.GenerateDataKey(ctx); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(logs.Bytes(), []byte("approle login")); n != 3 {
		t.Fatalf("%d logins; want a fresh login after two thirds of the TTL", n)
	}
}

func TestHealth(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	if err := root.Health(ctx); err != nil {
		t.Fatalf("healthy vault: %v", err)
	}
	v.Seal(t)
	if err := root.Health(ctx); !errors.Is(err, ErrSealed) {
		t.Fatalf("sealed vault: %v", err)
	}
	if _, err := root.GenerateDataKey(ctx); !errors.Is(err, ErrSealed) {
		t.Fatalf("data key from sealed vault: %v", err)
	}
	v.Unseal(t)
	if err := root.Health(ctx); err != nil {
		t.Fatalf("unsealed vault: %v", err)
	}
	gone, _ := New(Config{Address: fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), Token: "x"})
	if err := gone.Health(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("unreachable vault: %v", err)
	}
}

// TestTokenFile: a token kept fresh in a file (Vault Agent's sink) is
// re-read when Vault refuses the current one.
func TestTokenFile(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	if _, err := root.Setup(ctx, SetupOptions{Policies: true}); err != nil {
		t.Fatal(err)
	}
	mint := func() string {
		r := v.Do(t, "POST", "auth/token/create", map[string]any{"policies": []string{"obol-vaultd"}, "ttl": "1h"})
		return r["auth"].(map[string]any)["client_token"].(string)
	}
	file := filepath.Join(t.TempDir(), "token")
	first := mint()
	if err := os.WriteFile(file, []byte(first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Address: v.Addr, TokenFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	v.Do(t, "POST", "auth/token/revoke", map[string]string{"token": first})
	if err := os.WriteFile(file, []byte(mint()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateDataKey(ctx); err != nil {
		t.Fatalf("after the agent replaced the token: %v", err)
	}
	if _, err := New(Config{Address: v.Addr, TokenFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}

func TestRotateFingerprint(t *testing.T) {
	_, root := dedicated(t)
	ctx := context.Background()
	if _, err := root.Setup(ctx, SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	s1, v1, err := root.FingerprintSecret(ctx, 0)
	if err != nil || v1 != 1 {
		t.Fatalf("v%d %v", v1, err)
	}
	v2, err := root.RotateFingerprint(ctx)
	if err != nil || v2 != 2 {
		t.Fatalf("rotate: v%d %v", v2, err)
	}
	s2, got, _ := root.FingerprintSecret(ctx, 0)
	old, gotOld, _ := root.FingerprintSecret(ctx, 1)
	if got != 2 || bytes.Equal(s1, s2) || gotOld != 1 || !bytes.Equal(old, s1) {
		t.Fatal("versions do not read back as written")
	}
}

// TestSetupAuditDevice: setup enables Vault's file audit device when asked,
// once, and Vault then records requests to it.
func TestSetupAuditDevice(t *testing.T) {
	_, root := dedicated(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vault-audit.log")
	for i := 0; i < 2; i++ {
		steps, err := root.Setup(ctx, SetupOptions{AuditFile: path})
		if err != nil {
			t.Fatal(err)
		}
		last := steps[len(steps)-1]
		if last.Changed != (i == 0) || !strings.Contains(last.What, path) {
			t.Fatalf("run %d: %v", i+1, last)
		}
	}
	if _, err := root.GenerateDataKey(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(b, []byte("transit/datakey/plaintext/obol-kek")) {
		t.Fatalf("audit log does not record the data key request: %v", err)
	}
	if bytes.Contains(b, []byte(`"plaintext":"`)) && !bytes.Contains(b, []byte(`"plaintext":"hmac-sha256:`)) {
		t.Fatal("Vault's audit log holds a plaintext data key (it must be HMACed)")
	}
}
