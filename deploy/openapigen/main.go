// Command openapigen writes Obol's OpenAPI 3.0 documents: one per service
// (served by the service at GET /openapi.json) and one merged,
// merchant-facing document (tokens, payments, forward) for the docs and
// for client generators.
//
// Input is the Swagger 2.0 that protoc-gen-openapiv2 writes from the protos
// and proto/api_http.yaml (deploy/scripts/generate.sh runs it into a
// temporary directory); the message descriptors (compiled into this
// program) give the required fields ((obol.api.v1.required)). On top of the
// conversion it sets what the protos cannot say: 64-bit integers as JSON
// integers (the REST edge writes them as numbers, internal/httpapi),
// bearer security schemes (secret key; publishable key on the calls that
// take one), the Idempotency-Key header on every write, the error body on
// every 4xx/5xx, titles, versions, servers, operationIds and tags. The
// /v1/forward proxy is not a gRPC method: it is described by hand in
// proto/openapi/forward.yaml and added to the gateway's and the merged
// documents.
//
// It never sees card data: it reads and writes API descriptions only.
//
// Usage: go run ./deploy/openapigen -in <swagger dir> -out proto
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"gopkg.in/yaml.v3"

	apiv1 "github.com/obolpay/obol/proto/obol/api/v1"
	_ "github.com/obolpay/obol/proto/obol/events/v1"
	_ "github.com/obolpay/obol/proto/obol/gateway/v1"
	_ "github.com/obolpay/obol/proto/obol/ledger/v1"
	_ "github.com/obolpay/obol/proto/obol/risk/v1"
	_ "github.com/obolpay/obol/proto/obol/vault/v1"
)

// Version is the API version written into every document's info.
const Version = "1.0.0"

type obj = map[string]any

// service describes one API: where its Swagger is, and what the protos do
// not say about it.
type service struct {
	pkg         string // proto directory under obol/, e.g. "vault"
	title       string
	description string
	tag         string // the operations' tag (instead of the gRPC service name)
	tagDesc     string
	server      string // the obol dev REST address
	serverDesc  string
	schemes     []string // security schemes; the first is the default
	either      []string // operations that also take the second scheme
	merchant    bool     // part of the merged merchant document
	// idempotent: the service's writes take an Idempotency-Key, except
	// noIdempotency (refused: e.g. a client secret is shown once, never
	// replayed). riskd and ledgerd writes are idempotent by the ids in
	// their bodies, so their documents do not offer the header.
	idempotent    bool
	noIdempotency []string
	overlay       string // hand-written paths added to the document
}

var services = []service{
	{
		pkg: "vault", title: "Obol vault API (tokens)",
		description: "Card tokenization (vaultd, the PCI zone). A card goes in once and comes back as a token (`tok_…`) with PAN-free metadata; card numbers never appear in an answer.",
		tag:         "Tokens", tagDesc: "Tokenize cards, read and delete tokens, attach a CVC.",
		server: "http://127.0.0.1:8080", serverDesc: "obol dev (vaultd REST, plaintext on loopback)",
		schemes: []string{"secretKey", "publishableKey"}, either: []string{"tokenize", "attachCVC"}, merchant: true,
		idempotent: true, noIdempotency: []string{"createCVCClientSecret"},
	},
	{
		pkg: "gateway", title: "Obol payments API",
		description: "Payments by token and the forward proxy (gatewayd). Every write takes an `Idempotency-Key`.",
		tag:         "Payments", tagDesc: "Authorize, capture, cancel, refund and read payments.",
		server: "http://127.0.0.1:8083", serverDesc: "obol dev (gatewayd REST, plaintext on loopback)",
		schemes: []string{"secretKey"}, merchant: true, overlay: "openapi/forward.yaml", idempotent: true,
	},
	{
		pkg: "events", title: "Obol events and webhooks API",
		description: "The event log and webhook endpoints (eventsd, outside the PCI zone), served at the gateway's address. Events are PAN-free; webhooks are signed to the Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
		tag:         "Events", tagDesc: "Read events; manage webhook endpoints, their secrets and deliveries.",
		server: "http://127.0.0.1:8083", serverDesc: "obol dev (gatewayd REST, plaintext on loopback)",
		schemes: []string{"secretKey"}, merchant: true,
	},
	{
		pkg: "risk", title: "Obol risk API",
		description: "The risk engine (riskd) for risk analysts: rules, lists, dry runs and backtests. Outside the PCI zone.",
		tag:         "Risk", tagDesc: "Rule sets, lists, dry runs and backtests.",
		server: "http://127.0.0.1:8081", serverDesc: "obol dev (riskd REST, plaintext on loopback)",
		schemes: []string{"riskToken"},
	},
	{
		pkg: "ledger", title: "Obol ledger API",
		description: "The double-entry ledger (ledgerd) for finance teams: accounts, entries, balances, payouts and settlements. Outside the PCI zone.",
		tag:         "Ledger", tagDesc: "Accounts, entries, balances, payouts and settlement imports.",
		server: "http://127.0.0.1:8082", serverDesc: "obol dev (ledgerd REST, plaintext on loopback)",
		schemes: []string{"ledgerToken"},
	},
}

var securitySchemes = obj{
	"secretKey": obj{"type": "http", "scheme": "bearer", "bearerFormat": "sk_test_… or sk_live_…",
		"description": "The merchant's secret API key (`Authorization: Bearer sk_…`). Server side only."},
	"publishableKey": obj{"type": "http", "scheme": "bearer", "bearerFormat": "pk_test_… or pk_live_…",
		"description": "The merchant's publishable key, for browsers: it creates fresh tokens (and attaches a CVC with a client secret) and nothing else. The request's `Origin` must be one of the key's allowed origins."},
	"riskToken": obj{"type": "http", "scheme": "bearer",
		"description": "riskd's API token (`OBOL_RISK_TOKEN`; `risk_token` in obol dev's credentials file)."},
	"ledgerToken": obj{"type": "http", "scheme": "bearer",
		"description": "ledgerd's API token (`OBOL_LEDGER_TOKEN`; `ledger_token` in obol dev's credentials file)."},
}

// errorResponses are the error answers, by status; every one has the same
// body (internal/httpapi.ErrorBody).
var errorResponses = []struct {
	status, name, desc string
	writes, bodies     bool // only on writes; only with a request body
}{
	{"400", "BadRequest", "Invalid input: a typed error whose `field` names the offending field or header.", false, false},
	{"401", "Unauthorized", "Missing or unknown API key.", false, false},
	{"403", "Forbidden", "The key may not do this (e.g. a publishable key), or the destination is not allowed.", false, false},
	{"404", "NotFound", "No such object for this merchant.", false, false},
	{"409", "Conflict", "The Idempotency-Key was used with another request or is in progress, or the object's state does not allow the change.", true, false},
	{"413", "PayloadTooLarge", "The request body is too large.", false, true},
	{"429", "TooManyRequests", "Too many failed authentications from this client.", false, false},
	{"500", "InternalError", "Internal error (the cause is logged, never returned).", false, false},
	{"503", "Unavailable", "A dependency (Vault, the database, Redis, a service) is unavailable; retry with the same Idempotency-Key.", false, false},
}

var errorSchema = obj{
	"title": "Error", "type": "object", "required": []any{"error"},
	"description": "Every error answer: one stable machine code, a human message and the offending field. Internal causes are never returned.",
	"properties": obj{"error": obj{"type": "object", "required": []any{"code", "message"},
		"properties": obj{
			"code":    obj{"type": "string", "description": "Stable machine code, e.g. `amount_invalid`.", "example": "amount_invalid"},
			"message": obj{"type": "string", "description": "Human-readable message; never contains request values."},
			"field":   obj{"type": "string", "description": "The offending field (dotted path), header or parameter, when there is one.", "example": "amount"},
		}}},
}

var idempotencyParam = obj{
	"name": "Idempotency-Key", "in": "header", "required": false,
	"description": "Makes the write safe to retry: the same key with the same request returns the first result; with another request it is a 409 `idempotency_key_reused`. 1 to 255 printable ASCII characters, sent once, never card data.",
	"schema":      obj{"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
}

func main() {
	in := flag.String("in", "", "directory with protoc-gen-openapiv2 output (obol/*/v1/*.swagger.json)")
	out := flag.String("out", "proto", "proto directory: documents go next to each package, the merged one to openapi/")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" {
		return errors.New("-in is required")
	}
	var merged []*document
	for _, s := range services {
		raw, err := os.ReadFile(filepath.Join(in, "obol", s.pkg, "v1", s.pkg+".swagger.json"))
		if err != nil {
			return err
		}
		d, err := convert(s, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", s.pkg, err)
		}
		if s.overlay != "" {
			if err := d.addOverlay(filepath.Join(out, s.overlay)); err != nil {
				return fmt.Errorf("%s: overlay: %w", s.pkg, err)
			}
		}
		if err := write(filepath.Join(out, "obol", s.pkg, "v1", s.pkg+".openapi.json"), d.doc); err != nil {
			return err
		}
		if s.merchant {
			merged = append(merged, d)
		}
	}
	m, err := merge(merged)
	if err != nil {
		return err
	}
	return write(filepath.Join(out, "openapi", "obol.openapi.json"), m)
}

func write(path string, doc obj) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

type document struct {
	svc service
	doc obj
}

func (d *document) paths() obj      { return d.doc["paths"].(obj) }
func (d *document) components() obj { return d.doc["components"].(obj) }

// schemaName is the component name of a fully qualified definition name:
// the message name ("obol.vault.v1.Token" → "Token"; a request body without
// its path fields, "obol.vault.v1.VaultService.AttachCVCBody" →
// "AttachCVCBody"). A message named …Response is called …Result: client
// generators name their per-operation answer types <Operation>Response
// (oapi-codegen's ListPaymentsResponse would collide with the message's).
func schemaName(fqn string) string {
	name := fqn[strings.LastIndex(fqn, ".")+1:]
	if base, ok := strings.CutSuffix(name, "Response"); ok {
		name = base + "Result"
	}
	return name
}

func convert(s service, raw []byte) (*document, error) {
	var sw obj
	if err := json.Unmarshal(raw, &sw); err != nil {
		return nil, err
	}
	c := &converter{defs: obj{}}
	if defs, ok := sw["definitions"].(obj); ok {
		c.defs = defs
	}
	schemes := obj{}
	for _, name := range s.schemes {
		schemes[name] = securitySchemes[name]
	}
	doc := obj{
		"openapi":  "3.0.3",
		"info":     obj{"title": s.title, "version": Version, "description": s.description + "\n\n" + commonInfo},
		"servers":  []any{obj{"url": s.server, "description": s.serverDesc}},
		"tags":     []any{obj{"name": s.tag, "description": s.tagDesc}},
		"security": []any{obj{s.schemes[0]: []any{}}},
		"paths":    obj{},
		"components": obj{
			"securitySchemes": schemes,
			"parameters":      obj{},
			"responses":       errorComponents(),
			"schemas":         obj{"Error": errorSchema},
		},
	}
	if s.idempotent {
		doc["components"].(obj)["parameters"].(obj)["IdempotencyKey"] = idempotencyParam
	}
	d := &document{svc: s, doc: doc}
	paths, _ := sw["paths"].(obj)
	for _, p := range sortedKeys(paths) {
		item := obj{}
		for _, method := range sortedKeys(paths[p].(obj)) {
			op, err := c.operation(s, method, paths[p].(obj)[method].(obj))
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, p, err)
			}
			item[method] = op
		}
		d.paths()[p] = item
	}
	for name := range c.used {
		if err := c.addSchema(d.components()["schemas"].(obj), name); err != nil {
			return nil, err
		}
	}
	return d, nil
}

const commonInfo = "Amounts are JSON integers in minor units (2500 is 25.00 EUR) with an ISO 4217 currency; every 64-bit integer is a JSON number in answers, well below 2^53 (requests may also send it as a string). Fields whose value is zero, empty or false are omitted from answers. Times are RFC 3339 UTC. Errors have one shape (`Error`)."

func errorComponents() obj {
	out := obj{}
	for _, e := range errorResponses {
		out[e.name] = obj{"description": e.desc, "content": obj{"application/json": obj{"schema": ref("schemas", "Error")}}}
	}
	return out
}

func ref(kind, name string) obj { return obj{"$ref": "#/components/" + kind + "/" + name} }

type converter struct {
	defs obj
	used map[string]bool // definitions referenced (fully qualified)
}

var writes = map[string]bool{"post": true, "put": true, "patch": true, "delete": true}

func (c *converter) operation(s service, method string, op obj) (obj, error) {
	id, _ := op["operationId"].(string) // "VaultService_Tokenize"
	rpc := id[strings.Index(id, "_")+1:]
	opID := strings.ToLower(rpc[:1]) + rpc[1:]
	summary, description := text(op)
	out := obj{"operationId": opID, "tags": []any{s.tag}, "summary": summary}
	if description != "" {
		out["description"] = description
	}
	if slices.Contains(s.either, opID) {
		out["security"] = []any{obj{s.schemes[0]: []any{}}, obj{s.schemes[1]: []any{}}}
	}
	var params []any
	hasBody := false
	for _, raw := range asList(op["parameters"]) {
		p := raw.(obj)
		if p["in"] == "body" {
			hasBody = true
			schema, err := c.schema(p["schema"])
			if err != nil {
				return nil, err
			}
			body := obj{"required": true, "content": obj{"application/json": obj{"schema": schema}}}
			if d, ok := p["description"].(string); ok {
				body["description"] = oneLine(d)
			}
			out["requestBody"] = body
			continue
		}
		np := obj{"name": p["name"], "in": p["in"], "required": p["in"] == "path" || p["required"] == true}
		if d, ok := p["description"].(string); ok {
			np["description"] = oneLine(d)
		}
		sch := obj{}
		for _, k := range []string{"type", "format", "items", "enum", "default"} {
			if v, ok := p[k]; ok {
				sch[k] = v
			}
		}
		conv, err := c.schema(sch)
		if err != nil {
			return nil, err
		}
		np["schema"] = conv
		if p["collectionFormat"] == "multi" {
			np["style"], np["explode"] = "form", true
		}
		params = append(params, np)
	}
	if writes[method] && s.idempotent && !slices.Contains(s.noIdempotency, opID) {
		params = append(params, ref("parameters", "IdempotencyKey"))
	}
	if len(params) > 0 {
		out["parameters"] = params
	}
	responses := obj{}
	for code, raw := range op["responses"].(obj) {
		r := raw.(obj)
		schema, err := c.schema(r["schema"])
		if err != nil {
			return nil, err
		}
		responses[code] = obj{"description": "OK", "content": obj{"application/json": obj{"schema": schema}}}
	}
	for _, e := range errorResponses {
		if (e.writes && !writes[method]) || (e.bodies && !hasBody) {
			continue
		}
		responses[e.status] = ref("responses", e.name)
	}
	out["responses"] = responses
	return out, nil
}

// text splits a proto comment into a one-sentence summary and the rest.
func text(op obj) (summary, description string) {
	s, _ := op["summary"].(string)
	d, _ := op["description"].(string)
	full := oneLine(strings.TrimSpace(s + " " + d))
	if i := strings.Index(full, ". "); i > 0 && i < 120 {
		return full[:i+1], full
	}
	if len(full) <= 120 {
		return full, ""
	}
	return full[:strings.LastIndex(full[:117], " ")] + "…", full
}

var spaces = regexp.MustCompile(`\s*\n\s*`)

// oneLine joins a proto comment's wrapped lines (paragraphs stay apart).
func oneLine(s string) string {
	paras := strings.Split(s, "\n\n")
	for i, p := range paras {
		paras[i] = spaces.ReplaceAllString(strings.TrimSpace(p), " ")
	}
	return strings.Join(paras, "\n\n")
}

func asList(v any) []any { l, _ := v.([]any); return l }

// schema converts a Swagger schema (and marks the definitions it uses).
func (c *converter) schema(v any) (any, error) {
	s, ok := v.(obj)
	if !ok {
		return v, nil
	}
	out := obj{}
	for k, val := range s {
		switch k {
		case "$ref":
			fqn := strings.TrimPrefix(val.(string), "#/definitions/")
			if _, ok := c.defs[fqn]; !ok {
				return nil, fmt.Errorf("unknown definition %s", fqn)
			}
			if c.used == nil {
				c.used = map[string]bool{}
			}
			c.used[fqn] = true
			out[k] = "#/components/schemas/" + schemaName(fqn)
		case "properties":
			props := obj{}
			for name, p := range val.(obj) {
				conv, err := c.schema(p)
				if err != nil {
					return nil, err
				}
				props[name] = conv
			}
			out[k] = props
		case "items", "additionalProperties":
			conv, err := c.schema(val)
			if err != nil {
				return nil, err
			}
			out[k] = conv
		case "allOf", "anyOf", "oneOf":
			var l []any
			for _, el := range asList(val) {
				conv, err := c.schema(el)
				if err != nil {
					return nil, err
				}
				l = append(l, conv)
			}
			out[k] = l
		case "description", "title":
			out[k] = oneLine(val.(string))
		default:
			out[k] = val
		}
	}
	// 64-bit integers are JSON numbers on the wire (internal/httpapi).
	if out["type"] == "string" && (out["format"] == "int64" || out["format"] == "uint64") {
		if out["format"] == "uint64" {
			out["minimum"] = 0
		}
		out["type"], out["format"] = "integer", "int64"
	}
	// OpenAPI 3.0 ignores a $ref's siblings (a field's description): the
	// referenced schema carries its own.
	if r, ok := out["$ref"]; ok {
		out = obj{"$ref": r}
	}
	return out, nil
}

// addSchema converts a definition and those it references, with the
// required fields from the message descriptors.
func (c *converter) addSchema(schemas obj, fqn string) error {
	name := schemaName(fqn)
	if _, done := schemas[name]; done {
		return nil
	}
	conv, err := c.schema(c.defs[fqn])
	if err != nil {
		return err
	}
	s := conv.(obj)
	md, err := messageOf(fqn)
	if err != nil {
		return err
	}
	props, _ := s["properties"].(obj)
	var required []any
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if _, ok := props[string(fd.Name())]; !ok {
			continue // a path parameter, not in the body
		}
		if proto.GetExtension(fd.Options(), apiv1.E_Required).(bool) {
			required = append(required, string(fd.Name()))
		}
	}
	if len(required) > 0 {
		s["required"] = required
	}
	if _, ok := s["title"]; !ok {
		s["title"] = name
	}
	schemas[name] = s
	for _, again := range sortedKeys(c.used) {
		if _, done := schemas[schemaName(again)]; !done {
			if err := c.addSchema(schemas, again); err != nil {
				return err
			}
		}
	}
	return nil
}

// messageOf finds the message a definition describes: the message itself,
// or for "pkg.Service.MethodBody" the method's request.
func messageOf(fqn string) (protoreflect.MessageDescriptor, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(fqn))
	if err == nil {
		if md, ok := d.(protoreflect.MessageDescriptor); ok {
			return md, nil
		}
	}
	if strings.HasSuffix(fqn, "Body") {
		i := strings.LastIndex(fqn, ".")
		sd, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(fqn[:i]))
		if err == nil {
			if svc, ok := sd.(protoreflect.ServiceDescriptor); ok {
				if m := svc.Methods().ByName(protoreflect.Name(strings.TrimSuffix(fqn[i+1:], "Body"))); m != nil {
					return m.Input(), nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no message for definition %s", fqn)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// addOverlay adds hand-written paths and components (YAML) to d.
func (d *document) addOverlay(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var ov obj
	if err := yaml.Unmarshal(raw, &ov); err != nil {
		return err
	}
	paths, _ := ov["paths"].(obj)
	for p, item := range paths {
		if _, dup := d.paths()[p]; dup {
			return fmt.Errorf("path %s is already generated", p)
		}
		d.paths()[p] = item
	}
	comps, _ := ov["components"].(obj)
	for kind, m := range comps {
		dst, ok := d.components()[kind].(obj)
		if !ok {
			dst = obj{}
			d.components()[kind] = dst
		}
		for name, v := range m.(obj) {
			if _, dup := dst[name]; dup {
				return fmt.Errorf("component %s/%s is already generated", kind, name)
			}
			dst[name] = v
		}
	}
	for _, t := range asList(ov["tags"]) {
		d.doc["tags"] = append(d.doc["tags"].([]any), t)
	}
	return nil
}

// merge writes the merchant document: every merchant service's paths (each
// path with its service's server), components and tags.
func merge(docs []*document) (obj, error) {
	paths, schemes, tags := obj{}, obj{}, []any{}
	comps := obj{"securitySchemes": schemes}
	var servers []any
	for _, d := range docs {
		srv := d.doc["servers"].([]any)
		servers = append(servers, srv...)
		for p, item := range d.paths() {
			if _, dup := paths[p]; dup {
				return nil, fmt.Errorf("merge: path %s in two services", p)
			}
			it := obj{}
			for k, v := range item.(obj) {
				it[k] = v
			}
			it["servers"] = srv
			paths[p] = it
		}
		for kind, m := range d.components() {
			dst, ok := comps[kind].(obj)
			if !ok {
				dst = obj{}
				comps[kind] = dst
			}
			for name, v := range m.(obj) {
				if prev, dup := dst[name]; dup {
					a, _ := json.Marshal(prev)
					b, _ := json.Marshal(v)
					if !bytes.Equal(a, b) {
						return nil, fmt.Errorf("merge: %s/%s differs between services", kind, name)
					}
				}
				dst[name] = v
			}
		}
		tags = append(tags, d.doc["tags"].([]any)...)
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "Obol merchant API", "version": Version,
			"description": "What a merchant calls: tokens (vaultd), payments and the forward proxy (gatewayd). Each path names its service's server; each service also serves its own part at `GET /openapi.json`.\n\n" + commonInfo},
		"servers":    servers,
		"tags":       tags,
		"security":   []any{obj{"secretKey": []any{}}},
		"paths":      paths,
		"components": comps,
	}, nil
}
