package vaultd_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/vaultd"
)

// TestConfigStringAuth: the start-up log names the Vault auth method
// actually used (it once said "approle" for a token file or Kubernetes), and
// never the token or role id.
func TestConfigStringAuth(t *testing.T) {
	tests := []struct {
		name  string
		vault transit.Config
		want  string
	}{
		{"token", transit.Config{Token: "hvs.secret-token"}, `auth="token"`},
		{"token file", transit.Config{TokenFile: "/vault/secrets/token"}, `auth="token file"`},
		{"approle", transit.Config{RoleID: "role-id-value", SecretIDFile: "/run/sid"}, `auth="approle"`},
		{"kubernetes", transit.Config{KubernetesRole: "obol-vaultd"}, `auth="kubernetes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := vaultd.Config{Vault: tt.vault}.String()
			assert.Truef(t, strings.Contains(s, tt.want), "String() = %s, want it to contain %s", s, tt.want)
			for _, secret := range []string{"hvs.secret-token", "role-id-value"} {
				assert.Falsef(t, strings.Contains(s, secret), "String() prints a credential: %s", s)
			}
		})
	}
}
