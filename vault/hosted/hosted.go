// Package hosted serves Obol's hosted card fields from vaultd's own origin:
// the versioned page script obol.js (with its type definitions and
// Subresource Integrity hashes), the iframe pages whose inputs hold the card
// number, expiry and CVC, the frames' tokenize and CVC endpoints, and a CSP
// violation report endpoint. The merchant's page only ever receives tokens,
// PAN-free card metadata and field state (SAQ A).
//
// Part of the PCI zone: the frames' requests carry card data, which this
// package hands to the vault service and never logs, keeps or returns.
// Assets are embedded in the binary; nothing is fetched at run time.
package hosted

import (
	"context"
	"crypto/sha512"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/apikey"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/store"
)

// Version is the current obol.js version: /hosted/<Version>/obol.js. A
// released version's files never change (merchants pin their SRI hash); a
// change ships as a new version directory.
const Version = "v1"

// Prefix is the URL path under which everything here is served.
const Prefix = "/hosted/"

//go:embed assets
var assets embed.FS

// Errors of the hosted endpoints.
var (
	// ErrCrossOrigin: the frames' endpoints answer the vault's own frames only.
	ErrCrossOrigin = apierr.New(apierr.KindPermissionDenied, "cross_origin_request", "origin", "this endpoint serves the vault's own card frames only")
	// ErrSecretKeyInBrowser: the frames carry the publishable key, never a secret key.
	ErrSecretKeyInBrowser = apierr.New(apierr.KindPermissionDenied, apierr.CodePermissionDenied, "authorization", "hosted fields use the publishable key (pk_…); never send a secret key from a browser")
	// ErrMalformed: the frame's request body is not the expected JSON.
	ErrMalformed = apierr.Invalid(apierr.CodeMalformedBody, "body", "request body must be a JSON object with origin and card")
	// ErrOriginRequired: the frame names the page origin it serves.
	ErrOriginRequired = apierr.Invalid(apierr.CodeFieldRequired, "origin", "origin (the checkout page's origin) is required")
)

// Keys resolves publishable keys to their merchant's allowed origins.
type Keys interface {
	LookupAPIKey(ctx context.Context, hash []byte) (store.APIKey, error)
	GetMerchant(ctx context.Context, id string) (store.Merchant, error)
}

// Vault is the vault service's browser-facing RPCs. Authentication and the
// origin check are the service's: the caller's metadata carries the
// publishable key and the checkout page's origin.
type Vault interface {
	Tokenize(ctx context.Context, req *vaultv1.TokenizeRequest) (*vaultv1.Token, error)
	// AttachCVC with a publishable key needs a client secret the
	// merchant's backend minted with its secret key for that token.
	AttachCVC(ctx context.Context, req *vaultv1.AttachCVCRequest) (*vaultv1.Token, error)
}

var _ Vault = (vaultv1.VaultServiceServer)(nil)

// Options configure a Handler.
type Options struct {
	Keys   Keys
	Vault  Vault
	Logger *slog.Logger
}

// Handler serves the hosted fields.
type Handler struct {
	o          Options
	log        *slog.Logger
	static     map[string]asset
	violations *prometheus.CounterVec
	reports    prometheus.Counter
}

type asset struct {
	body        []byte
	contentType string
	integrity   string
}

// New builds the handler and hashes the embedded assets.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &Handler{o: o, log: o.Logger, static: map[string]asset{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha512.Sum384(b)
		h.static[strings.TrimPrefix(p, "assets/")] = asset{body: b, contentType: contentType(p), integrity: "sha384-" + base64.StdEncoding.EncodeToString(sum[:])}
		return nil
	})
	if err != nil {
		panic("hosted: embedded assets: " + err.Error())
	}
	h.violations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_vault_hosted_csp_violations_total", Help: "CSP violation reports from the hosted card frames, by violated directive."}, []string{"directive"})
	h.reports = prometheus.NewCounter(prometheus.CounterOpts{Name: "obol_vault_hosted_csp_reports_refused_total", Help: "CSP report requests refused as malformed."})
	return h
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".ts":
		return "application/typescript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

// Collectors are the handler's metrics.
func (h *Handler) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.violations, h.reports}
}

// Integrity maps every served obol.js version ("v1/obol.js") to its SRI
// hash (sha384-…), for <script integrity=…>.
func (h *Handler) Integrity() map[string]string {
	out := map[string]string{}
	for p, a := range h.static {
		if path.Base(p) == "obol.js" {
			out[p] = a.integrity
		}
	}
	return out
}

// Asset returns an embedded file by its served path ("v1/rules.js").
func (h *Handler) Asset(p string) ([]byte, bool) {
	a, ok := h.static[p]
	return a.body, ok
}

// Register adds the routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Prefix+"{version}/{file}", h.serveFile)
	mux.HandleFunc("GET "+Prefix+"integrity.json", h.serveIntegrity)
	mux.HandleFunc("POST "+Prefix+"{version}/tokens", h.tokens)
	mux.HandleFunc("POST "+Prefix+"{version}/cvc", h.cvc)
	mux.HandleFunc("POST "+Prefix+"csp-report", h.cspReport)
}

func (h *Handler) serveIntegrity(w http.ResponseWriter, _ *http.Request) {
	integ := h.Integrity()
	keys := make([]string, 0, len(integ))
	for k := range integ {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type entry struct {
		Version   string `json:"version"`
		URL       string `json:"url"`
		Integrity string `json:"integrity"`
	}
	out := struct {
		Current  string  `json:"current"`
		Versions []entry `json:"versions"`
	}{Current: Version}
	for _, k := range keys {
		out.Versions = append(out.Versions, entry{Version: path.Dir(k), URL: Prefix + k, Integrity: integ[k]})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(out)
}

// page scripts may be loaded cross-origin (with SRI: CORS required); the
// frame's own files are for the frame only.
var pageFiles = map[string]bool{"obol.js": true, "obol.d.ts": true}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("version") + "/" + r.PathValue("file")
	if r.PathValue("file") == "frame.html" {
		h.frame(w, r)
		return
	}
	a, ok := h.static[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "public, max-age=300")
	if pageFiles[r.PathValue("file")] {
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Cross-Origin-Resource-Policy", "cross-origin")
	} else {
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	}
	_, _ = w.Write(a.body)
}

// frameCSP is the frame page's policy: nothing but the vault's own scripts,
// styles and connections, framed only by the one merchant origin the frame
// was issued for (checked against the publishable key's allowed origins).
func frameCSP(ancestor string) string {
	return "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; font-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors " + ancestor + "; report-uri " + Prefix + "csp-report; report-to obol-csp"
}

func (h *Handler) frame(w http.ResponseWriter, r *http.Request) {
	a, ok := h.static[r.PathValue("version")+"/frame.html"]
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Reporting-Endpoints", `obol-csp="`+Prefix+`csp-report"`)
	if !ok {
		deny(w, http.StatusNotFound, "unknown hosted fields version")
		return
	}
	q := r.URL.Query()
	origin := q.Get("origin")
	if !validOrigin(origin) {
		deny(w, http.StatusBadRequest, "the frame needs the checkout page's origin")
		return
	}
	allowed, err := h.allowedOrigins(r.Context(), q.Get("pk"))
	if err != nil {
		e := apierr.From(err)
		if e.Kind == apierr.KindUnavailable {
			h.log.ErrorContext(r.Context(), "hosted frame: key lookup failed", "err", err)
			deny(w, http.StatusServiceUnavailable, "the vault is unavailable")
			return
		}
		deny(w, http.StatusForbidden, "unknown publishable key")
		return
	}
	if !contains(allowed, origin) {
		deny(w, http.StatusForbidden, "this checkout origin is not allowed for the merchant's publishable key")
		return
	}
	hd.Set("Content-Security-Policy", frameCSP(origin))
	hd.Set("Content-Type", a.contentType)
	_, _ = w.Write(a.body)
}

// deny answers a frame request that must not render: nothing may frame it.
func deny(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; report-uri "+Prefix+"csp-report")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// originRe is scheme://host[:port]: a DNS name or IPv4 address, or an
// IPv6 address in brackets. Nothing else can reach the frame-ancestors
// directive (no ';', quote, space or comma that would end it or add a
// source).
var originRe = regexp.MustCompile(`^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// validOrigin accepts scheme://host[:port] (http or https), no path.
func validOrigin(o string) bool {
	if !originRe.MatchString(o) {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Scheme+"://"+u.Host == o
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (h *Handler) allowedOrigins(ctx context.Context, pk string) ([]string, error) {
	if !strings.HasPrefix(pk, "pk_") || len(pk) > 128 {
		return nil, apierr.ErrUnauthenticated
	}
	k, err := h.o.Keys.LookupAPIKey(ctx, apikey.Hash(pk))
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.Kind != store.KeyPublishable) {
		return nil, apierr.ErrUnauthenticated
	}
	if err != nil {
		return nil, apierr.StorageUnavailable(err)
	}
	m, err := h.o.Keys.GetMerchant(ctx, k.MerchantID)
	if err != nil {
		return nil, apierr.StorageUnavailable(err)
	}
	return m.AllowedOrigins, nil
}

// sameOrigin is true for requests made by the vault's own pages: the
// browser's Sec-Fetch-Site says so, or (older browsers) Origin is this host.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return o != "" && o == scheme+"://"+r.Host
}
