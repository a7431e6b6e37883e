package transit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTokenReview stands in for the Kubernetes API server's TokenReview
// endpoint, which Vault's Kubernetes auth calls to check a service account
// JWT: known JWTs belong to the service account given, others are rejected.
type fakeTokenReview struct {
	mu       sync.Mutex
	accounts map[string][2]string // jwt → username, uid
	reviewed []string
}

func (f *fakeTokenReview) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Spec struct {
			Token string `json:"token"`
		} `json:"spec"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.reviewed = append(f.reviewed, req.Spec.Token)
	acct, ok := f.accounts[req.Spec.Token]
	f.mu.Unlock()
	status := map[string]any{"authenticated": ok}
	if ok {
		status["user"] = map[string]any{"username": acct[0], "uid": acct[1]}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
}

// serviceAccountJWT builds an (unsigned-in-effect) service account JWT: Vault
// configured without public keys does not verify the signature and relies on
// the TokenReview answer instead.
func serviceAccountJWT(t *testing.T, namespace, name, uid string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]string{
		"iss":                                    "kubernetes/serviceaccount",
		"kubernetes.io/serviceaccount/namespace": namespace,
		"kubernetes.io/serviceaccount/service-account.name": name,
		"kubernetes.io/serviceaccount/service-account.uid":  uid,
	}) + "." + base64.RawURLEncoding.EncodeToString([]byte("not-verified"))
}

// TestKubernetesAuthRealVault logs in through the real Vault's Kubernetes
// auth method (the Kubernetes API is a fake TokenReview endpoint, there is
// no cluster here): the bound service account gets a token holding
// obol-vaultd and can make data keys; another service account is denied,
// and the client fails closed with ErrDenied.
func TestKubernetesAuthRealVault(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	_, err := root.Setup(ctx, SetupOptions{})
	require.NoError(t, err)
	policy, err := os.ReadFile("../../../policies/vault/obol-vaultd.hcl")
	require.NoError(t, err)
	v.Do(t, "PUT", "sys/policies/acl/obol-vaultd", map[string]string{"policy": string(policy)})

	good := serviceAccountJWT(t, "obol-cde", "vaultd", "uid-vaultd")
	other := serviceAccountJWT(t, "obol-cde", "intruder", "uid-intruder")
	kube := &fakeTokenReview{accounts: map[string][2]string{
		good:  {"system:serviceaccount:obol-cde:vaultd", "uid-vaultd"},
		other: {"system:serviceaccount:obol-cde:intruder", "uid-intruder"},
	}}
	srv := httptest.NewServer(kube)
	t.Cleanup(srv.Close)
	v.Do(t, "POST", "sys/auth/k8s-cde", map[string]string{"type": "kubernetes"})
	v.Do(t, "POST", "auth/k8s-cde/config", map[string]any{"kubernetes_host": srv.URL, "disable_local_ca_jwt": true})
	v.Do(t, "POST", "auth/k8s-cde/role/obol-vaultd", map[string]any{
		"bound_service_account_names": []string{"vaultd"}, "bound_service_account_namespaces": []string{"obol-cde"},
		"token_policies": []string{"obol-vaultd"}, "token_ttl": "1h",
	})

	tests := []struct {
		name    string
		jwt     string
		wantErr error
	}{
		{"bound service account", good, nil},
		{"other service account", other, ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwtFile := filepath.Join(t.TempDir(), "token")
			require.NoError(t, os.WriteFile(jwtFile, []byte(tt.jwt), 0o600))
			c, err := New(Config{Address: v.Addr, KubernetesRole: "obol-vaultd", KubernetesMount: "k8s-cde", KubernetesJWTFile: jwtFile})
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			err = c.Check(ctx)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Empty(t, c.api.Token(), "no token after a refused login")
				return
			}
			require.NoError(t, err)
			dk, err := c.GenerateDataKey(ctx)
			require.NoError(t, err)
			assert.Len(t, dk.Plaintext, 32)
			self, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
			require.NoError(t, err)
			assert.Contains(t, self.Data["policies"], "obol-vaultd")
			assert.Equal(t, "vaultd", self.Data["meta"].(map[string]any)["service_account_name"])
		})
	}
	kube.mu.Lock()
	defer kube.mu.Unlock()
	assert.Contains(t, kube.reviewed, good, "Vault reviewed the JWT read from the file")
}
