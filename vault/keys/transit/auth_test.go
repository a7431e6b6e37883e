package transit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMapErr: every failure the library reports maps to one fail-closed
// sentinel, decided by the typed response error, not its text.
func TestMapErr(t *testing.T) {
	resp := func(code int, msgs ...string) error {
		return fmt.Errorf("wrapped by the library: %w", &vault.ResponseError{HTTPMethod: "PUT", URL: "http://v/v1/x", StatusCode: code, Errors: msgs})
	}
	dial := &url.Error{Op: "Post", URL: "http://v/v1/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"sealed", resp(503, "Vault is sealed"), ErrSealed},
		{"standby unavailable", resp(503), ErrSealed},
		{"permission denied", resp(403, "permission denied"), ErrDenied},
		{"not found", resp(404), ErrNotFound},
		{"kv secret not found", fmt.Errorf("%w: at secret/data/x", vault.ErrSecretNotFound), ErrNotFound},
		{"check-and-set", resp(400, "check-and-set parameter did not match the current version"), ErrConflict},
		{"other bad request", resp(400, "invalid key type"), ErrVault},
		{"rate limited", resp(429, "quota exceeded"), ErrVault},
		{"server error", resp(500, "internal error"), ErrVault},
		{"connection refused", dial, ErrUnreachable},
		{"deadline", fmt.Errorf("do: %w", context.DeadlineExceeded), ErrUnreachable},
		{"canceled", context.Canceled, ErrUnreachable},
		{"bad answer", errors.New("invalid character"), ErrVault},
	}
	sentinels := []error{ErrSealed, ErrUnreachable, ErrDenied, ErrNotFound, ErrConflict, ErrVault}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapErr("op", tt.err)
			require.ErrorIs(t, got, tt.want)
			for _, s := range sentinels {
				if s != tt.want {
					assert.NotErrorIs(t, got, s)
				}
			}
			assert.Contains(t, got.Error(), "op")
		})
	}
	assert.NoError(t, mapErr("op", nil))
	assert.ErrorIs(t, mapErr("op", context.Canceled), context.Canceled, "the cause stays visible")
}

// fakeVault answers Kubernetes logins and one read, recording what it got.
type fakeVault struct {
	mu     sync.Mutex
	logins []map[string]string // path, role, jwt
	valid  map[string]bool     // live tokens
	n      int
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := r.Header.Get("X-Vault-Token")
	switch {
	case r.Method == http.MethodPut || r.Method == http.MethodPost:
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		if tok != "" {
			http.Error(w, `{"errors":["login must not carry a token"]}`, http.StatusBadRequest)
			return
		}
		f.logins = append(f.logins, map[string]string{"path": r.URL.Path, "role": body["role"], "jwt": body["jwt"]})
		f.n++
		t := fmt.Sprintf("tok-%d", f.n)
		f.valid[t] = true
		_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": t, "lease_duration": 0, "renewable": false}})
	case r.URL.Path == "/v1/auth/token/lookup-self" || !f.valid[tok]:
		if !f.valid[tok] {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":["permission denied"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"id":"x"}}`))
	default:
		_, _ = w.Write([]byte(`{"data":{"type":"aes256-gcm96","latest_version":1}}`))
	}
}

func (f *fakeVault) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid = map[string]bool{}
}

// TestKubernetesLogin: Kubernetes auth (no cluster here, so against a fake
// Vault) logs in at auth/<mount>/login with the role and the service account
// JWT read from its file, trimmed, without a stale token; the file is read
// again at the next login, so a rotated projected token is picked up.
func TestKubernetesLogin(t *testing.T) {
	clearVaultEnv(t)
	t.Setenv("VAULT_TOKEN", "must-not-be-sent")
	tests := []struct {
		name      string
		mount     string
		wantPath  string
		wantMount string
	}{
		{"default mount", "", "/v1/auth/kubernetes/login", "kubernetes"},
		{"custom mount", "/k8s-cde/", "/v1/auth/k8s-cde/login", "/k8s-cde/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeVault{valid: map[string]bool{}}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			jwtFile := filepath.Join(t.TempDir(), "token")
			require.NoError(t, os.WriteFile(jwtFile, []byte("jwt-one\n"), 0o600))
			c, err := New(Config{Address: srv.URL, KubernetesRole: "obol-vaultd", KubernetesMount: tt.mount, KubernetesJWTFile: jwtFile})
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			assert.Equal(t, tt.wantMount, c.cfg.KubernetesMount)
			assert.Empty(t, c.api.Token(), "a login method starts without VAULT_TOKEN")

			ctx := context.Background()
			_, err = c.ReadKey(ctx)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(jwtFile, []byte("jwt-two"), 0o600))
			f.revokeAll()
			_, err = c.ReadKey(ctx)
			require.NoError(t, err, "a dead token is replaced by a new login")

			require.Len(t, f.logins, 2)
			assert.Equal(t, map[string]string{"path": tt.wantPath, "role": "obol-vaultd", "jwt": "jwt-one"}, f.logins[0])
			assert.Equal(t, map[string]string{"path": tt.wantPath, "role": "obol-vaultd", "jwt": "jwt-two"}, f.logins[1])
			assert.Equal(t, "tok-2", c.api.Token())
		})
	}
}

func TestKubernetesJWTFile(t *testing.T) {
	clearVaultEnv(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	tests := []struct {
		name string
		file string
		want string
	}{
		{"missing file", filepath.Join(dir, "missing"), "Kubernetes service account token file"},
		{"empty file", empty, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeVault{valid: map[string]bool{}}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			c, err := New(Config{Address: srv.URL, KubernetesRole: "r", KubernetesJWTFile: tt.file})
			require.NoError(t, err, "the file is read at login, not at New")
			_, err = c.ReadKey(context.Background())
			require.ErrorIs(t, err, ErrDenied)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, f.logins, "no login attempted without a JWT")
		})
	}
	c, err := New(Config{Address: "http://x", KubernetesRole: "r"})
	require.NoError(t, err)
	assert.Equal(t, DefaultKubernetesJWTFile, c.cfg.KubernetesJWTFile)
	assert.Equal(t, "kubernetes", c.cfg.KubernetesMount)
}
