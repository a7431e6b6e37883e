// Package transit is the production key manager: HashiCorp Vault's transit
// engine generates and wraps data keys (envelope encryption), and a KV secret
// holds the root of the per-merchant fingerprint keys. It speaks Vault's HTTP
// API directly (no SDK) so every failure mode maps to a clear error. It never
// sees a PAN: only data keys travel to and from Vault.
package transit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/obolpay/obol/internal/telemetry"
	"github.com/obolpay/obol/vault/envelope"
)

var _ envelope.KeyManager = (*Client)(nil)

// Errors returned by the client. Every one of them means "fail closed".
var (
	// ErrSealed: Vault answered that it is sealed.
	ErrSealed = errors.New("vault is sealed")
	// ErrUnreachable: no answer from Vault (connection refused, timeout).
	ErrUnreachable = errors.New("vault is unreachable")
	// ErrDenied: Vault refused the token (403).
	ErrDenied = errors.New("vault denied the request")
	// ErrNotFound: the path (key, secret, mount) does not exist.
	ErrNotFound = errors.New("vault path not found")
	// ErrVault: any other Vault error.
	ErrVault = errors.New("vault error")
)

// Config configures the client.
type Config struct {
	Address   string // e.g. https://vault.internal:8200
	Namespace string // Vault Enterprise namespace, optional
	// Token authentication (takes precedence when set).
	Token string
	// TokenFile holds a token kept fresh by someone else (Vault Agent's
	// auto-auth sink, e.g. with Kubernetes auth). It is re-read when Vault
	// refuses the current token.
	TokenFile string
	// AppRole authentication.
	RoleID       string
	SecretIDFile string
	AppRoleMount string // default "approle"
	// Transit.
	Mount   string // default "transit"
	KeyName string // default "obol-kek"
	// FingerprintPath is the KV v2 path of the fingerprint secret (default
	// "secret/data/obol/fingerprint"); its field "key" holds base64 of ≥32 bytes.
	FingerprintPath string
	// AuditAnchorPath is the KV v2 path of the audit chain's anchor
	// (default "secret/data/obol/audit-anchor").
	AuditAnchorPath string
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
	// CACertFile trusts an extra CA for Vault's TLS certificate.
	CACertFile string
	Logger     *slog.Logger
	// Now is the clock for token lifetimes (default time.Now).
	Now func() time.Time
}

// Client is a Vault transit key manager.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger

	mu        sync.RWMutex
	token     string
	tokenExp  time.Time
	loginOnce sync.Mutex
}

// New builds a client; it does not contact Vault (see Check).
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault address is required (OBOL_VAULT_ADDR)")
	}
	if cfg.Token == "" && cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault token file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
		if cfg.Token == "" {
			return nil, fmt.Errorf("vault token file %s is empty", cfg.TokenFile)
		}
	}
	if cfg.Token == "" && cfg.RoleID == "" {
		return nil, errors.New("vault auth is required: a token (OBOL_VAULT_TOKEN or OBOL_VAULT_TOKEN_FILE) or AppRole (OBOL_VAULT_ROLE_ID and OBOL_VAULT_SECRET_ID_FILE)")
	}
	if cfg.RoleID != "" && cfg.Token == "" && cfg.SecretIDFile == "" {
		return nil, errors.New("AppRole auth needs a secret id file (OBOL_VAULT_SECRET_ID_FILE)")
	}
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	if cfg.KeyName == "" {
		cfg.KeyName = "obol-kek"
	}
	if cfg.FingerprintPath == "" {
		cfg.FingerprintPath = "secret/data/obol/fingerprint"
	}
	if cfg.AuditAnchorPath == "" {
		cfg.AuditAnchorPath = "secret/data/obol/audit-anchor"
	}
	if cfg.AppRoleMount == "" {
		cfg.AppRoleMount = "approle"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if cfg.CACertFile != "" {
		pool, err := loadCA(cfg.CACertFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	cfg.Address = strings.TrimRight(cfg.Address, "/")
	return &Client{cfg: cfg, http: &http.Client{Transport: telemetry.Transport("vault transit", tr), Timeout: cfg.Timeout}, log: cfg.Logger, token: cfg.Token}, nil
}

// KeyName is the transit key (KEK) in use.
func (c *Client) KeyName() string { return c.cfg.KeyName }

// Mount is the transit mount.
func (c *Client) Mount() string { return c.cfg.Mount }

type vaultResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []string        `json:"errors"`
	Auth   *struct {
		ClientToken   string `json:"client_token"`
		LeaseDuration int    `json:"lease_duration"`
		Renewable     bool   `json:"renewable"`
	} `json:"auth"`
}

// do sends one request. It never logs bodies (they carry data keys).
func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	if err := c.ensureToken(ctx); err != nil {
		return err
	}
	err := c.doOnce(ctx, method, path, body, out, true)
	if errors.Is(err, ErrDenied) && c.cfg.TokenFile != "" && c.reloadTokenFile() {
		return c.doOnce(ctx, method, path, body, out, true)
	}
	if errors.Is(err, ErrDenied) && c.cfg.RoleID != "" && c.cfg.Token == "" {
		// Vault answers 403 both for a dead token and for a policy denial.
		// Only a dead token (expired, revoked) is fixed by logging in again.
		if lerr := c.doOnce(ctx, http.MethodGet, "auth/token/lookup-self", nil, nil, true); lerr == nil || !errors.Is(lerr, ErrDenied) {
			return err
		}
		if lerr := c.login(ctx); lerr != nil {
			return lerr
		}
		err = c.doOnce(ctx, method, path, body, out, true)
	}
	return err
}

func (c *Client) doOnce(ctx context.Context, method, path string, body any, out any, auth bool) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.Address+"/v1/"+path, rd)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVault, err)
	}
	if auth {
		c.mu.RLock()
		req.Header.Set("X-Vault-Token", c.token)
		c.mu.RUnlock()
	}
	if c.cfg.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", c.cfg.Namespace)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: read response: %w", ErrUnreachable, err)
	}
	var vr vaultResponse
	_ = json.Unmarshal(raw, &vr)
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s %s: %s", ErrSealed, method, path, strings.Join(vr.Errors, "; "))
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s %s: %s", ErrDenied, method, path, strings.Join(vr.Errors, "; "))
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s %s", ErrNotFound, method, path)
	case resp.StatusCode >= 300:
		return fmt.Errorf("%w: %s %s: HTTP %d: %s", ErrVault, method, path, resp.StatusCode, strings.Join(vr.Errors, "; "))
	}
	if out == nil {
		return nil
	}
	if o, ok := out.(*vaultResponse); ok {
		*o = vr
		return nil
	}
	if len(vr.Data) == 0 {
		return fmt.Errorf("%w: %s %s: empty data", ErrVault, method, path)
	}
	if err := json.Unmarshal(vr.Data, out); err != nil {
		return fmt.Errorf("%w: %s %s: decode: %w", ErrVault, method, path, err)
	}
	return nil
}

// reloadTokenFile re-reads the token file; true if it now holds another token.
func (c *Client) reloadTokenFile() bool {
	b, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return false
	}
	t := strings.TrimSpace(string(b))
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == "" || t == c.token {
		return false
	}
	c.token = t
	c.log.Info("vault token reloaded from file")
	return true
}

func (c *Client) ensureToken(ctx context.Context) error {
	if c.cfg.Token != "" {
		return nil
	}
	c.mu.RLock()
	ok := c.token != "" && c.cfg.Now().Before(c.tokenExp)
	c.mu.RUnlock()
	if ok {
		return nil
	}
	return c.login(ctx)
}

// login performs an AppRole login with the secret id read fresh from its file
// (so an orchestrator can rotate it).
func (c *Client) login(ctx context.Context) error {
	c.loginOnce.Lock()
	defer c.loginOnce.Unlock()
	secretID, err := os.ReadFile(c.cfg.SecretIDFile)
	if err != nil {
		return fmt.Errorf("%w: read AppRole secret id file: %w", ErrDenied, err)
	}
	var vr vaultResponse
	body := map[string]string{"role_id": c.cfg.RoleID, "secret_id": strings.TrimSpace(string(secretID))}
	if err := c.doOnce(ctx, http.MethodPost, "auth/"+c.cfg.AppRoleMount+"/login", body, &vr, false); err != nil {
		return fmt.Errorf("approle login: %w", err)
	}
	if vr.Auth == nil || vr.Auth.ClientToken == "" {
		return fmt.Errorf("%w: approle login returned no token", ErrVault)
	}
	ttl := time.Duration(vr.Auth.LeaseDuration) * time.Second
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	c.mu.Lock()
	c.token = vr.Auth.ClientToken
	// Log in again after two thirds of the lease, well before it expires.
	c.tokenExp = c.cfg.Now().Add(ttl * 2 / 3)
	c.mu.Unlock()
	c.log.Info("vault approle login", "ttl", ttl.String())
	return nil
}

// GenerateDataKey asks transit for a new 256-bit data key.
func (c *Client) GenerateDataKey(ctx context.Context) (dk envelope.DataKey, err error) {
	var out struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
		KeyVersion int    `json:"key_version"`
	}
	if err := c.do(ctx, http.MethodPost, c.cfg.Mount+"/datakey/plaintext/"+c.cfg.KeyName, map[string]any{"bits": 256}, &out); err != nil {
		return dk, err
	}
	pt, err := base64.StdEncoding.DecodeString(out.Plaintext)
	if err != nil {
		return dk, fmt.Errorf("%w: data key encoding: %w", ErrVault, err)
	}
	dk.Plaintext, dk.Wrapped, dk.KEKVersion = pt, out.Ciphertext, out.KeyVersion
	if dk.KEKVersion == 0 {
		dk.KEKVersion = WrappedVersion(out.Ciphertext)
	}
	return dk, nil
}

// UnwrapDataKey decrypts a wrapped data key.
func (c *Client) UnwrapDataKey(ctx context.Context, wrapped string) ([]byte, error) {
	var out struct {
		Plaintext string `json:"plaintext"`
	}
	if err := c.do(ctx, http.MethodPost, c.cfg.Mount+"/decrypt/"+c.cfg.KeyName, map[string]string{"ciphertext": wrapped}, &out); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(out.Plaintext)
}

// FingerprintSecret reads a version of the fingerprint root secret from KV
// v2 (0: the latest) and returns it with its version number.
func (c *Client) FingerprintSecret(ctx context.Context, version int) ([]byte, int, error) {
	var out struct {
		Data     map[string]string `json:"data"`
		Metadata struct {
			Version int `json:"version"`
		} `json:"metadata"`
	}
	path := c.cfg.FingerprintPath
	if version > 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, 0, fmt.Errorf("fingerprint secret %s: %w", c.cfg.FingerprintPath, err)
	}
	s, err := base64.StdEncoding.DecodeString(out.Data["key"])
	if err != nil || len(s) < 32 {
		return nil, 0, fmt.Errorf("%w: fingerprint secret %s: field \"key\" must be base64 of at least 32 bytes", ErrVault, c.cfg.FingerprintPath)
	}
	return s, out.Metadata.Version, nil
}

// FingerprintVersion is the latest version of the fingerprint secret.
func (c *Client) FingerprintVersion(ctx context.Context) (int, error) {
	_, v, err := c.FingerprintSecret(ctx, 0)
	return v, err
}

// RotateFingerprint writes a new random version of the fingerprint secret
// (check-and-set on the current version). Run with an operator token: the
// key-admin role deliberately cannot write it, since whoever knows the
// secret could test candidate PANs against fingerprints.
func (c *Client) RotateFingerprint(ctx context.Context) (int, error) {
	_, cur, err := c.FingerprintSecret(ctx, 0)
	if err != nil {
		return 0, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	var out struct {
		Version int `json:"version"`
	}
	body := map[string]any{"options": map[string]any{"cas": cur}, "data": map[string]string{"key": base64.StdEncoding.EncodeToString(b[:])}}
	if err := c.do(ctx, http.MethodPost, c.cfg.FingerprintPath, body, &out); err != nil {
		return 0, fmt.Errorf("rotate fingerprint secret: %w", err)
	}
	return out.Version, nil
}

// KeyInfo is the transit key's metadata.
type KeyInfo struct {
	Type                 string `json:"type"`
	LatestVersion        int    `json:"latest_version"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
	MinEncryptionVersion int    `json:"min_encryption_version"`
	Exportable           bool   `json:"exportable"`
	DeletionAllowed      bool   `json:"deletion_allowed"`
	Derived              bool   `json:"derived"`
	// AutoRotatePeriod is in seconds (0: off).
	AutoRotatePeriod int64 `json:"auto_rotate_period"`
}

// ReadKey reads the KEK's metadata.
func (c *Client) ReadKey(ctx context.Context) (KeyInfo, error) {
	var ki KeyInfo
	err := c.do(ctx, http.MethodGet, c.cfg.Mount+"/keys/"+c.cfg.KeyName, nil, &ki)
	return ki, err
}

// Health asks sys/health whether Vault is initialized, unsealed and active
// (standbys forward requests, so they count as healthy).
func (c *Client) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Address+"/v1/sys/health?standbyok=true&perfstandbyok=true", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusTooManyRequests, 473:
		return nil
	case http.StatusServiceUnavailable:
		return ErrSealed
	case http.StatusNotImplemented:
		return fmt.Errorf("%w: vault is not initialized", ErrVault)
	default:
		return fmt.Errorf("%w: sys/health HTTP %d", ErrVault, resp.StatusCode)
	}
}

// Check verifies at start-up that Vault is reachable and unsealed, that the
// credentials work, that the KEK exists and is usable for data keys, and that
// the fingerprint secret is readable. Errors say what to fix.
func (c *Client) Check(ctx context.Context) error {
	if err := c.Health(ctx); err != nil {
		return fmt.Errorf("vault at %s: %w", c.cfg.Address, err)
	}
	if err := c.ensureToken(ctx); err != nil {
		return fmt.Errorf("vault auth: %w", err)
	}
	ki, err := c.ReadKey(ctx)
	if err != nil {
		return fmt.Errorf("transit key %s/keys/%s: %w (create it with `obol vault setup`)", c.cfg.Mount, c.cfg.KeyName, err)
	}
	if ki.Type != "aes256-gcm96" && ki.Type != "chacha20-poly1305" && ki.Type != "aes128-gcm96" {
		return fmt.Errorf("transit key %s has type %q: it must be a symmetric key that supports data keys", c.cfg.KeyName, ki.Type)
	}
	if ki.Derived {
		return fmt.Errorf("transit key %s uses key derivation, which Obol does not support for data keys", c.cfg.KeyName)
	}
	if _, _, err := c.FingerprintSecret(ctx, 0); err != nil {
		return fmt.Errorf("%w (create it with `obol vault setup`)", err)
	}
	return nil
}

// WrappedVersion parses N out of "vault:vN:…" (0 if malformed).
func WrappedVersion(wrapped string) int {
	rest, ok := strings.CutPrefix(wrapped, "vault:v")
	if !ok {
		return 0
	}
	n := 0
	for _, r := range rest {
		if r == ':' {
			return n
		}
		if r < '0' || r > '9' {
			return 0
		}
		n = n*10 + int(r-'0')
	}
	return 0
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vault CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("vault CA file %s: no PEM certificates", path)
	}
	return pool, nil
}

// LatestVersion is the KEK's latest version (new data keys are wrapped under it).
func (c *Client) LatestVersion(ctx context.Context) (int, error) {
	ki, err := c.ReadKey(ctx)
	return ki.LatestVersion, err
}

// RewrapBatch rewraps wrapped data keys to the KEK's latest version in one
// request (transit/rewrap with batch_input). Plaintext never leaves Vault.
// It returns the new wrapped forms in input order.
func (c *Client) RewrapBatch(ctx context.Context, wrapped []string) ([]string, error) {
	in := make([]map[string]string, len(wrapped))
	for i, w := range wrapped {
		in[i] = map[string]string{"ciphertext": w}
	}
	var out struct {
		BatchResults []struct {
			Ciphertext string `json:"ciphertext"`
			Error      string `json:"error"`
		} `json:"batch_results"`
	}
	if err := c.do(ctx, http.MethodPost, c.cfg.Mount+"/rewrap/"+c.cfg.KeyName, map[string]any{"batch_input": in}, &out); err != nil {
		return nil, err
	}
	if len(out.BatchResults) != len(wrapped) {
		return nil, fmt.Errorf("%w: rewrap returned %d results for %d inputs", ErrVault, len(out.BatchResults), len(wrapped))
	}
	res := make([]string, len(wrapped))
	for i, r := range out.BatchResults {
		if r.Error != "" || r.Ciphertext == "" {
			return nil, fmt.Errorf("%w: rewrap item %d: %s", ErrVault, i, r.Error)
		}
		res[i] = r.Ciphertext
	}
	return res, nil
}

// AuditAnchor is the head of Obol's audit chain as recorded in Vault.
type AuditAnchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"` // hex
	At   string `json:"at"`
}

// WriteAuditAnchor records the audit chain's head in KV v2, where the
// auditor can read it and vaultd cannot rewrite history unnoticed.
func (c *Client) WriteAuditAnchor(ctx context.Context, a AuditAnchor) error {
	return c.do(ctx, http.MethodPost, c.cfg.AuditAnchorPath, map[string]any{"data": a}, nil)
}

// ReadAuditAnchor reads the anchor (auditor and break-glass may).
func (c *Client) ReadAuditAnchor(ctx context.Context) (AuditAnchor, error) {
	var out struct {
		Data AuditAnchor `json:"data"`
	}
	err := c.do(ctx, http.MethodGet, c.cfg.AuditAnchorPath, nil, &out)
	return out.Data, err
}
