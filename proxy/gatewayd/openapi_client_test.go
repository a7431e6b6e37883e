package gatewayd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client generator and its runtime library, pinned.
const (
	oapiCodegen = "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2"
	oapiRuntime = "github.com/oapi-codegen/runtime v1.9.0"
)

// goTool runs the go command in dir, outside Obol's module.
func goTool(ctx context.Context, t *testing.T, dir string, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"GOFLAGS=", "GOWORK=off"}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go %v: %s", args, stderr.String())
	return out
}

// TestGeneratedClient: a client generated from the merged OpenAPI document
// (proto/openapi/obol.openapi.json) by a standard generator (oapi-codegen,
// pinned) is enough to tokenize with the publishable key and to authorize,
// capture and refund with the secret key against the real stack. Its typed
// answers hold the amounts as integers (a quoted amount would fail to
// decode into the generated int64), arithmetic on them works, a typed error
// answer decodes into the Error schema, and the acquirer saw the same
// amounts.
func TestGeneratedClient(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	doc, err := filepath.Abs("../../proto/openapi/obol.openapi.json")
	require.NoError(t, err)
	prog, err := os.ReadFile("testdata/openapiclient/main.go")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module obolclient\n\ngo 1.24\n\nrequire "+oapiRuntime+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), prog, 0o644))

	goTool(ctx, t, dir, nil, "run", oapiCodegen, "-generate", "types,client", "-package", "obol", "-o", "obol/client.gen.go", doc)
	goTool(ctx, t, dir, nil, "mod", "tidy")
	out := goTool(ctx, t, dir, []string{
		"OBOL_VAULT_URL=http://" + s.vault, "OBOL_GATEWAY_URL=http://" + s.gw,
		"OBOL_PUBLISHABLE_KEY=" + s.pk, "OBOL_SECRET_KEY=" + s.sk, "OBOL_CARD=4242424242424242",
	}, "run", ".")

	var res struct {
		Token, Payment, Authorized, Status    string
		Amount, Captured, Refunded, Remaining int64
		Fee                                   int64
		OverCapture                           string `json:"over_capture"`
		RawAmountKinds                        string `json:"raw_amount_kinds"`
	}
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	assert.Regexp(t, `^tok_`, res.Token)
	assert.Regexp(t, `^pay_`, res.Payment)
	assert.Equal(t, "authorized", res.Authorized)
	assert.Equal(t, int64(2500), res.Amount)
	assert.Equal(t, "capture_exceeds_authorization", res.OverCapture, "a 409 decodes into the Error schema")
	assert.Equal(t, "partially_refunded", res.Status)
	assert.Equal(t, int64(2500), res.Captured)
	assert.Equal(t, int64(1000), res.Refunded)
	assert.Equal(t, int64(1500), res.Remaining)
	assert.Equal(t, int64(103), res.Fee)
	assert.Equal(t, "amount:float64 amount_captured:float64 amount_refunded:float64 fee:float64 ", res.RawAmountKinds, "JSON numbers on the wire")

	// The real stack agrees: the acquirer captured and refunded those amounts.
	st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+res.Payment, "", "")
	require.Equal(t, 200, st)
	captured, refunded := s.acquirer(t, p)
	assert.Equal(t, int64(2500), captured)
	assert.Equal(t, int64(1000), refunded)
	s.verifyLedger(t)

	// Each service serves its own part as OpenAPI 3 at GET /openapi.json.
	for addr, path := range map[string]string{s.gw: "/v1/forward", s.vault: "/v1/tokens"} {
		resp, err := http.Get("http://" + addr + "/openapi.json")
		require.NoError(t, err)
		var served struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&served))
		resp.Body.Close()
		assert.Equal(t, "3.0.3", served.OpenAPI, addr)
		assert.Contains(t, served.Paths, path, addr)
	}
}
