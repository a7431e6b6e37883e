package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/serve"
)

// The demo shop of `obol dev`: a merchant checkout page on its own origin
// that mounts the vault's hosted card element, and the shop's small backend
// that charges the token with the secret key. It never sees a card number.
//
//go:embed demo
var demoFiles embed.FS

var demoPage = template.Must(template.ParseFS(demoFiles, "demo/index.html"))

var tokenRe = regexp.MustCompile(`^tok_[A-Za-z0-9_-]{8,64}$`)

type demoShop struct {
	ln     net.Listener
	origin string
	srv    *http.Server
	log    *slog.Logger
	cfg    demoConfig
	client *http.Client
}

type demoConfig struct {
	VaultURL       string
	GatewayURL     string
	PublishableKey string
	SecretKey      string
	Integrity      string
}

// listenDemo binds the shop's listener; its origin must be one of the dev
// merchant's allowed origins.
func listenDemo(addr string, log *slog.Logger) (*demoShop, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo shop listen %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return &demoShop{ln: ln, origin: "http://" + net.JoinHostPort(host, port), log: log, client: &http.Client{Timeout: 60 * time.Second}}, nil
}

func (d *demoShop) Origin() string { return d.origin }

// Serve serves the shop until ctx ends.
func (d *demoShop) Serve(ctx context.Context, cfg demoConfig) error {
	d.cfg = cfg
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /shop.js", d.file("demo/shop.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /shop.css", d.file("demo/shop.css", "text/css; charset=utf-8"))
	mux.Handle("POST /api/pay", d.ownPage(d.pay))
	mux.Handle("POST /api/cvc-secret", d.ownPage(d.cvcSecret))
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: serve.ErrorLog(d.log)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.srv.Shutdown(sctx)
	}()
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ownPage lets through only requests of the shop's own page: its Origin
// (browsers send one with every POST) and a JSON body, which a form on
// another site cannot send without a CORS preflight the shop never
// answers. Without it, any page the developer visits could charge the dev
// merchant with its secret key, or mint CVC client secrets.
func (d *demoShop) ownPage(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !d.ownOrigin(r.Header.Values("Origin")) {
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(payResult{Error: "cross_origin_request"})
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			_ = json.NewEncoder(w).Encode(payResult{Error: "content_type_invalid"})
			return
		}
		h(w, r)
	})
}

// ownOrigin reports whether the Origin values name the shop: its origin,
// or the same loopback port under localhost / 127.0.0.1 / [::1].
func (d *demoShop) ownOrigin(values []string) bool {
	if len(values) != 1 {
		return false
	}
	if values[0] == d.origin {
		return true
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(d.origin, "http://"))
	if err != nil {
		return false
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if values[0] == "http://"+net.JoinHostPort(h, port) {
			return true
		}
	}
	return false
}

func (d *demoShop) page(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	if err := demoPage.Execute(&b, d.cfg); err != nil {
		http.Error(w, "template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	// The shop's own policy: scripts from itself and the vault, frames from
	// the vault only.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' "+d.cfg.VaultURL+"; frame-src "+d.cfg.VaultURL+"; connect-src 'self'; style-src 'self'; img-src 'self'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

func (d *demoShop) file(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		b, err := demoFiles.ReadFile(name)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", ctype)
		_, _ = w.Write(b)
	}
}

type payResult struct {
	ID          string `json:"id,omitempty"`
	Status      string `json:"status,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Error       string `json:"error,omitempty"`
}

// pay is the shop's backend: it charges $25.00 to the token with the
// merchant's secret key (which never reaches the browser).
func (d *demoShop) pay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || !tokenRe.MatchString(req.Token) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(payResult{Error: "token_invalid"})
		return
	}
	var order [8]byte
	_, _ = rand.Read(order[:])
	body, _ := json.Marshal(map[string]any{"token": req.Token, "amount": 2500, "currency": "USD", "capture": false, "description": "Demo shop: wool socks"})
	greq, err := http.NewRequestWithContext(r.Context(), http.MethodPost, d.cfg.GatewayURL+"/v1/payments", bytes.NewReader(body))
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	greq.Header.Set("Authorization", "Bearer "+d.cfg.SecretKey)
	greq.Header.Set("Content-Type", "application/json")
	greq.Header.Set("Idempotency-Key", "demo-order-"+hex.EncodeToString(order[:]))
	resp, err := d.client.Do(greq)
	if err != nil {
		d.log.ErrorContext(r.Context(), "demo shop: gateway unreachable", "err", err)
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(payResult{Error: "gateway_unreachable"})
		return
	}
	defer resp.Body.Close()
	var p struct {
		ID          string `json:"id"`
		Status      string `json:"status"`
		DeclineCode string `json:"decline_code"`
		DeclineAlt  string `json:"declineCode"`
		Error       *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p)
	out := payResult{ID: p.ID, Status: p.Status, DeclineCode: p.DeclineCode}
	if out.DeclineCode == "" {
		out.DeclineCode = p.DeclineAlt
	}
	if p.Error != nil {
		out.Error = p.Error.Code
	}
	d.log.InfoContext(r.Context(), "demo shop: payment", "payment", out.ID, "status", out.Status, "decline_code", out.DeclineCode, "error", out.Error)
	_ = json.NewEncoder(w).Encode(out)
}

// cvcSecret is the shop's backend minting a single-use client secret for a
// card on file, so the page can collect a fresh CVC for that token only.
func (d *demoShop) cvcSecret(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || !tokenRe.MatchString(req.Token) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(payResult{Error: "token_invalid"})
		return
	}
	vreq, err := http.NewRequestWithContext(r.Context(), http.MethodPost, d.cfg.VaultURL+"/v1/tokens/"+req.Token+"/cvc_client_secrets", strings.NewReader("{}"))
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	vreq.Header.Set("Authorization", "Bearer "+d.cfg.SecretKey)
	vreq.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(vreq)
	if err != nil {
		d.log.ErrorContext(r.Context(), "demo shop: vault unreachable", "err", err)
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(payResult{Error: "vault_unreachable"})
		return
	}
	defer resp.Body.Close()
	var cs struct {
		ClientSecret string `json:"client_secret"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&cs)
	if resp.StatusCode != http.StatusOK || cs.ClientSecret == "" {
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(payResult{Error: "client_secret_unavailable"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"client_secret": cs.ClientSecret})
}
