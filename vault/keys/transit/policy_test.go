package transit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/policies"
)

// TestPolicyMatrix tries a token holding only one Obol policy against every
// relevant operation on a real Vault. Allowed cells must succeed; every other
// cell must be denied with 403. The matrix is printed.
func TestPolicyMatrix(t *testing.T) {
	v, root := dedicated(t)
	ctx := context.Background()
	_, err := root.Setup(ctx, SetupOptions{Policies: true})
	require.NoError(t, err)
	dk, err := root.GenerateDataKey(ctx)
	require.NoError(t, err)
	v.Do(t, "POST", "secret/data/obol/audit-anchor", map[string]any{"data": map[string]string{"head": "0000"}})

	type op struct {
		name   string
		method string
		path   string
		body   any
		allow  []string
	}
	ops := []op{
		{"data key", "POST", "transit/datakey/plaintext/obol-kek", nil, []string{policies.VaultD}},
		{"encrypt", "POST", "transit/encrypt/obol-kek", map[string]string{"plaintext": "aGVsbG8="}, nil},
		{"decrypt", "POST", "transit/decrypt/obol-kek", map[string]string{"ciphertext": dk.Wrapped}, []string{policies.VaultD, policies.BreakGlass}},
		{"rewrap", "POST", "transit/rewrap/obol-kek", map[string]string{"ciphertext": dk.Wrapped}, []string{policies.VaultD, policies.BreakGlass}},
		{"rotate", "POST", "transit/keys/obol-kek/rotate", nil, []string{policies.KeyAdmin, policies.BreakGlass}},
		{"config min_decryption_version", "POST", "transit/keys/obol-kek/config", map[string]any{"min_decryption_version": 1}, []string{policies.KeyAdmin, policies.BreakGlass}},
		{"config auto_rotate_period", "POST", "transit/keys/obol-kek/config", map[string]any{"auto_rotate_period": "720h"}, []string{policies.KeyAdmin, policies.BreakGlass}},
		{"config exportable", "POST", "transit/keys/obol-kek/config", map[string]any{"exportable": true}, nil},
		{"config deletion_allowed", "POST", "transit/keys/obol-kek/config", map[string]any{"deletion_allowed": true}, nil},
		{"export", "GET", "transit/export/encryption-key/obol-kek", nil, nil},
		{"backup", "GET", "transit/backup/obol-kek", nil, nil},
		{"delete", "DELETE", "transit/keys/obol-kek", nil, nil},
		{"read metadata", "GET", "transit/keys/obol-kek", nil, []string{policies.VaultD, policies.KeyAdmin, policies.Auditor, policies.BreakGlass}},
		{"read fingerprint secret", "GET", "secret/data/obol/fingerprint", nil, []string{policies.VaultD, policies.BreakGlass}},
		{"write fingerprint secret", "POST", "secret/data/obol/fingerprint", map[string]any{"data": map[string]string{"key": "x"}}, nil},
		{"policy write", "PUT", "sys/policies/acl/obol-evil", map[string]string{"policy": `path "*" { capabilities = ["sudo"] }`}, nil},
		{"audit read", "GET", "secret/data/obol/audit-anchor", nil, []string{policies.Auditor, policies.BreakGlass}},
		{"audit anchor write", "POST", "secret/data/obol/audit-anchor", map[string]any{"data": map[string]string{"head": "1"}}, []string{policies.VaultD}},
	}
	roles := policies.Names()
	tokens := map[string]string{}
	for _, r := range roles {
		resp := v.Do(t, "POST", "auth/token/create", map[string]any{"policies": []string{r}, "no_default_policy": true, "ttl": "10m"})
		tokens[r] = resp["auth"].(map[string]any)["client_token"].(string)
	}
	call := func(token string, o op) int {
		var rd *bytes.Reader
		if o.body != nil {
			b, _ := json.Marshal(o.body)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, err := http.NewRequest(o.method, v.Addr+"/v1/"+o.path, rd)
		require.NoError(t, err)
		req.Header.Set("X-Vault-Token", token)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		require.NoError(t, err, o.name)
		resp.Body.Close()
		return resp.StatusCode
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-30s", "operation")
	for _, r := range roles {
		fmt.Fprintf(&table, " %-17s", r)
	}
	table.WriteString("\n")
	for _, o := range ops {
		fmt.Fprintf(&table, "%-30s", o.name)
		for _, r := range roles {
			allowed := false
			for _, a := range o.allow {
				allowed = allowed || a == r
			}
			code := call(tokens[r], o)
			cell := fmt.Sprintf("deny %d", code)
			if code < 300 {
				cell = fmt.Sprintf("ALLOW %d", code)
			}
			switch {
			case allowed:
				if !assert.Less(t, code, 300, "%s as %s: want success", o.name, r) {
					cell += " ✗"
				}
			default:
				if !assert.Equal(t, http.StatusForbidden, code, "%s as %s: want 403", o.name, r) {
					cell += " ✗"
				}
			}
			fmt.Fprintf(&table, " %-17s", cell)
		}
		table.WriteString("\n")
	}
	t.Log(table.String())
	ki, err := root.ReadKey(ctx)
	require.NoError(t, err)
	assert.False(t, ki.Exportable, "the KEK's protections changed")
	assert.False(t, ki.DeletionAllowed, "the KEK's protections changed")
}
