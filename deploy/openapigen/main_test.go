package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, path string) obj {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("../../proto", path))
	require.NoError(t, err)
	var d obj
	require.NoError(t, json.Unmarshal(raw, &d))
	return d
}

var documents = []string{"openapi/obol.openapi.json", "obol/vault/v1/vault.openapi.json", "obol/gateway/v1/gateway.openapi.json", "obol/risk/v1/risk.openapi.json", "obol/ledger/v1/ledger.openapi.json", "obol/events/v1/events.openapi.json"}

// walk calls f on every JSON object in v, with its path.
func walk(v any, path string, f func(path string, o obj)) {
	switch x := v.(type) {
	case obj:
		f(path, x)
		for k, el := range x {
			walk(el, path+"/"+k, f)
		}
	case []any:
		for _, el := range x {
			walk(el, path+"/[]", f)
		}
	}
}

type op struct {
	method, path string
	o            obj
}

func operations(d obj) []op {
	var out []op
	for p, item := range d["paths"].(obj) {
		for m, o := range item.(obj) {
			if m == "servers" || m == "parameters" {
				continue
			}
			out = append(out, op{m, p, o.(obj)})
		}
	}
	return out
}

// TestDocuments checks the committed documents for what the generator
// promises: OpenAPI 3.0 with titles and versions; no 64-bit integer typed
// as a string; every operation with a unique operationId, a tag, a summary,
// and the Error body on its 4xx and 5xx answers; every write of the vault
// and the gateway taking the Idempotency-Key (except the client-secret
// mint, which refuses one, and the forward proxy, which relays headers;
// the events calls, served at the gateway's address, are not money writes
// and take none).
func TestDocuments(t *testing.T) {
	for _, name := range documents {
		t.Run(name, func(t *testing.T) {
			d := load(t, name)
			assert.Regexp(t, `^3\.0\.\d$`, d["openapi"])
			info := d["info"].(obj)
			assert.NotEmpty(t, info["title"])
			assert.Equal(t, Version, info["version"])
			walk(d, "", func(path string, o obj) {
				if o["type"] == "string" {
					assert.NotContains(t, []any{"int64", "uint64"}, o["format"], "64-bit integer as a string at %s", path)
				}
			})
			ids := map[string]bool{}
			idempotent := strings.Contains(name, "vault") || strings.Contains(name, "gateway") || strings.HasPrefix(name, "openapi/")
			for _, o := range operations(d) {
				id, _ := o.o["operationId"].(string)
				require.NotEmpty(t, id, "%s %s", o.method, o.path)
				assert.False(t, ids[id], "duplicate operationId %s", id)
				ids[id] = true
				assert.NotEmpty(t, o.o["summary"], id)
				assert.Len(t, o.o["tags"], 1, id)
				resp := o.o["responses"].(obj)
				for _, code := range []string{"400", "401", "500", "503"} {
					r, ok := resp[code].(obj)
					if assert.True(t, ok, "%s has no %s answer", id, code) {
						assert.Regexp(t, `^#/components/responses/`, r["$ref"], id)
					}
				}
				events := slices.Contains(asList(o.o["tags"]), any("Events"))
				if !writes[o.method] || !idempotent || events || id == "createCVCClientSecret" || id == "forward" {
					continue
				}
				var refs []any
				for _, p := range asList(o.o["parameters"]) {
					refs = append(refs, p.(obj)["$ref"])
				}
				assert.Contains(t, refs, "#/components/parameters/IdempotencyKey", "%s takes an Idempotency-Key", id)
				assert.Contains(t, resp, "409", id)
			}
			for name, r := range d["components"].(obj)["responses"].(obj) {
				content := r.(obj)["content"].(obj)["application/json"].(obj)
				assert.Equal(t, "#/components/schemas/Error", content["schema"].(obj)["$ref"], name)
			}
		})
	}
}

// TestMerchantDocument: the merged document has the tokens, payments and
// forward paths, each with its service's server; amounts are integers;
// the required fields come from the protos' (obol.api.v1.required); the
// publishable key is offered on tokenize and attachCVC only.
func TestMerchantDocument(t *testing.T) {
	d := load(t, "openapi/obol.openapi.json")
	paths := d["paths"].(obj)
	for p, server := range map[string]string{"/v1/tokens": "8080", "/v1/tokens/{token}/cvc": "8080", "/v1/payments": "8083", "/v1/payments/{id}/refunds": "8083", "/v1/forward": "8083"} {
		item, ok := paths[p].(obj)
		require.True(t, ok, p)
		srv := item["servers"].([]any)[0].(obj)["url"].(string)
		assert.True(t, strings.HasSuffix(srv, ":"+server), "%s on %s", p, srv)
	}
	schemas := d["components"].(obj)["schemas"].(obj)
	required := func(name string) []any { r, _ := schemas[name].(obj)["required"].([]any); return r }
	assert.Equal(t, []any{"token", "amount", "currency"}, required("CreatePaymentRequest"))
	assert.Equal(t, []any{"card"}, required("TokenizeRequest"))
	assert.Equal(t, []any{"number", "exp_month", "exp_year"}, required("CardInput"))
	assert.Equal(t, []any{"cvc"}, required("AttachCVCBody"), "the path's token is not a body field")
	assert.Contains(t, required("Payment"), "amount")
	assert.NotContains(t, required("Payment"), "amount_refunded", "zero values are omitted from answers")
	amount := schemas["Payment"].(obj)["properties"].(obj)["amount"].(obj)
	assert.Equal(t, obj{"type": "integer", "format": "int64"}, amount)
	for _, o := range operations(d) {
		id := o.o["operationId"].(string)
		var schemes []string
		for _, s := range asList(o.o["security"]) {
			for k := range s.(obj) {
				schemes = append(schemes, k)
			}
		}
		if slices.Contains([]string{"tokenize", "attachCVC"}, id) {
			assert.ElementsMatch(t, []string{"secretKey", "publishableKey"}, schemes, id)
		} else {
			assert.Empty(t, schemes, "%s uses the default (secret key)", id)
		}
	}
	assert.Equal(t, []any{obj{"secretKey": []any{}}}, d["security"])
	fwd := paths["/v1/forward"].(obj)["post"].(obj)
	var headers []any
	for _, p := range asList(fwd["parameters"]) {
		headers = append(headers, p.(obj)["name"])
	}
	assert.Equal(t, []any{"Obol-Destination", "Obol-Dry-Run", "Obol-Upstream-Authorization"}, headers)
	assert.Contains(t, fwd["responses"].(obj)["200"].(obj)["headers"], "Obol-Redacted")
}

// TestSchemaName: message names become component names; …Response ones
// are renamed so that generated per-operation types do not collide.
func TestSchemaName(t *testing.T) {
	for in, want := range map[string]string{
		"obol.vault.v1.Token":                      "Token",
		"obol.vault.v1.VaultService.AttachCVCBody": "AttachCVCBody",
		"obol.gateway.v1.ListPaymentsResponse":     "ListPaymentsResult",
	} {
		assert.Equal(t, want, schemaName(in), in)
	}
}

// TestRunRefusesUnknownDefinitions: a reference the Swagger input does
// not define is an error, not a dangling $ref.
func TestRunRefusesUnknownDefinitions(t *testing.T) {
	in := []byte(`{"paths":{"/v1/x":{"get":{"operationId":"S_X","responses":{"200":{"schema":{"$ref":"#/definitions/obol.vault.v1.Nope"}}}}}}}`)
	_, err := convert(services[0], in)
	require.ErrorContains(t, err, "unknown definition obol.vault.v1.Nope")
}
