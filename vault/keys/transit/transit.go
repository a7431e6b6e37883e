// Package transit is the production key manager: HashiCorp Vault's transit
// engine generates and wraps data keys (envelope encryption), and KV v2
// secrets hold the root of the per-merchant fingerprint keys and the audit
// anchor. It talks to Vault through the official client library
// (github.com/hashicorp/vault/api) and maps every failure to one of the
// fail-closed sentinels below. It never sees a PAN: only data keys travel to
// and from Vault.
package transit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/obolpay/obol/vault/envelope"
)

var _ envelope.KeyManager = (*Client)(nil)

// Errors returned by the client. Every one of them means "fail closed".
var (
	// ErrSealed: Vault answered that it is sealed (HTTP 503).
	ErrSealed = errors.New("vault is sealed")
	// ErrUnreachable: no answer from Vault (connection refused, timeout).
	ErrUnreachable = errors.New("vault is unreachable")
	// ErrDenied: Vault refused the token (403).
	ErrDenied = errors.New("vault denied the request")
	// ErrNotFound: the path (key, secret, mount) does not exist.
	ErrNotFound = errors.New("vault path not found")
	// ErrConflict: a KV v2 check-and-set write was refused because the
	// secret changed since it was read.
	ErrConflict = errors.New("vault check-and-set conflict")
	// ErrVault: any other Vault error.
	ErrVault = errors.New("vault error")
)

// Config configures the client. Fields left empty fall back to the standard
// VAULT_* environment where noted (see the README's "Vault configuration").
type Config struct {
	// Address, e.g. https://vault.internal:8200. Empty: VAULT_ADDR.
	Address string
	// Namespace is the Vault Enterprise namespace. Empty: VAULT_NAMESPACE.
	Namespace string
	// Token authentication (takes precedence over every other method). Empty
	// and no other method configured: VAULT_TOKEN.
	Token string
	// TokenFile holds a token kept fresh by someone else (Vault Agent's
	// auto-auth sink, e.g. with Kubernetes auth). It is re-read when Vault
	// refuses the current token.
	TokenFile string
	// AppRole authentication.
	RoleID       string
	SecretIDFile string
	AppRoleMount string // default "approle"
	// Kubernetes authentication (used when no token and no AppRole role id
	// is set): the Vault role, the auth mount and the service account token
	// file, re-read at every login (projected tokens rotate).
	KubernetesRole    string
	KubernetesMount   string // default "kubernetes"
	KubernetesJWTFile string // default /var/run/secrets/kubernetes.io/serviceaccount/token
	// Transit.
	Mount   string // default "transit"
	KeyName string // default "obol-kek"
	// FingerprintPath is the KV v2 data path of the fingerprint secret
	// (default "secret/data/obol/fingerprint"); its field "key" holds base64
	// of ≥32 bytes.
	FingerprintPath string
	// AuditAnchorPath is the KV v2 data path of the audit chain's anchor
	// (default "secret/data/obol/audit-anchor").
	AuditAnchorPath string
	// Timeout bounds each request (default VAULT_CLIENT_TIMEOUT, else 5s).
	Timeout time.Duration
	// CACertFile trusts an extra CA for Vault's TLS certificate. Empty:
	// VAULT_CACERT.
	CACertFile string
	// ClientCertFile and ClientKeyFile present a TLS client certificate to
	// Vault. Empty: VAULT_CLIENT_CERT and VAULT_CLIENT_KEY.
	ClientCertFile string
	ClientKeyFile  string
	Logger         *slog.Logger
}

// Client is a Vault transit key manager.
type Client struct {
	cfg  Config
	api  *vault.Client
	log  *slog.Logger
	auth *authenticator
}

// New builds a client; it does not contact Vault (see Check).
func New(cfg Config) (*Client, error) {
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
	for _, p := range []struct{ name, path string }{{"fingerprint path", cfg.FingerprintPath}, {"audit anchor path", cfg.AuditAnchorPath}} {
		if _, _, err := splitKV(p.path); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	vc, err := newAPIClient(&cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, api: vc, log: cfg.Logger}
	if c.auth, err = newAuthenticator(c); err != nil {
		return nil, err
	}
	return c, nil
}

// newAPIClient builds the library client: api.DefaultConfig reads the
// standard VAULT_* environment, then Obol's explicit settings override it.
func newAPIClient(cfg *Config) (*vault.Client, error) {
	if v, _ := os.LookupEnv("VAULT_SKIP_VERIFY"); v != "" && v != "0" && !strings.EqualFold(v, "false") {
		return nil, errors.New("VAULT_SKIP_VERIFY is set: Obol never talks to Vault without verifying its TLS certificate (trust its CA with OBOL_VAULT_CACERT or VAULT_CACERT instead)")
	}
	vcfg := vault.DefaultConfig()
	if vcfg.Error != nil {
		return nil, fmt.Errorf("vault environment (VAULT_*): %w", vcfg.Error)
	}
	if cfg.Address == "" {
		// DefaultConfig falls back to https://127.0.0.1:8200; Obol wants the
		// address said explicitly.
		if os.Getenv(vault.EnvVaultAddress) == "" && os.Getenv(vault.EnvVaultAgentAddr) == "" {
			return nil, errors.New("vault address is required (OBOL_VAULT_ADDR or VAULT_ADDR)")
		}
		cfg.Address = vcfg.Address
	}
	vcfg.Address = strings.TrimRight(cfg.Address, "/")
	cfg.Address = vcfg.Address
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
		if os.Getenv(vault.EnvVaultClientTimeout) != "" {
			cfg.Timeout = vcfg.Timeout
		}
	}
	vcfg.Timeout = cfg.Timeout
	vcfg.HttpClient.Timeout = cfg.Timeout
	// No retries unless VAULT_MAX_RETRIES asks for them: a sealed or hung
	// Vault must fail closed at once, not after seconds of backoff.
	if os.Getenv(vault.EnvVaultMaxRetries) == "" {
		vcfg.MaxRetries = 0
	}
	if tr, ok := vcfg.HttpClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConns = 256
		tr.MaxIdleConnsPerHost = 64
		tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tlsCfg := &vault.TLSConfig{
		CACert:        firstNonEmpty(cfg.CACertFile, os.Getenv(vault.EnvVaultCACert)),
		CAPath:        os.Getenv(vault.EnvVaultCAPath),
		ClientCert:    firstNonEmpty(cfg.ClientCertFile, os.Getenv(vault.EnvVaultClientCert)),
		ClientKey:     firstNonEmpty(cfg.ClientKeyFile, os.Getenv(vault.EnvVaultClientKey)),
		TLSServerName: os.Getenv(vault.EnvVaultTLSServerName),
	}
	if (tlsCfg.ClientCert == "") != (tlsCfg.ClientKey == "") {
		return nil, errors.New("vault TLS client certificate and key must be set together")
	}
	if cfg.CACertFile != "" || cfg.ClientCertFile != "" || cfg.ClientKeyFile != "" {
		if err := vcfg.ConfigureTLS(tlsCfg); err != nil {
			return nil, fmt.Errorf("vault TLS: %w", err)
		}
	}
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	if cfg.Namespace != "" {
		vc.SetNamespace(cfg.Namespace)
	}
	return vc, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// KeyName is the transit key (KEK) in use.
func (c *Client) KeyName() string { return c.cfg.KeyName }

// Mount is the transit mount.
func (c *Client) Mount() string { return c.cfg.Mount }

// Close stops the token renewal (if any). The client must not be used after.
func (c *Client) Close() error {
	c.auth.close()
	return nil
}

// call runs one library call with a valid token: it logs in first when
// needed, and once more after a refusal that a fresh token fixes (revoked or
// expired token, a token file rewritten by Vault Agent). The error is mapped
// to the package's sentinels.
func call[T any](ctx context.Context, c *Client, op string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := c.auth.ensure(ctx); err != nil {
		return zero, err
	}
	used := c.api.Token()
	v, err := f(ctx)
	if err != nil && isDenied(err) {
		retry, aerr := c.auth.recover(ctx, used)
		if aerr != nil {
			return zero, aerr
		}
		if retry {
			v, err = f(ctx)
		}
	}
	if err != nil {
		return zero, mapErr(op, err)
	}
	return v, nil
}

// write is a logical write (POST) through call.
func (c *Client) write(ctx context.Context, path string, body map[string]any) (*vault.Secret, error) {
	return call(ctx, c, "write "+path, func(ctx context.Context) (*vault.Secret, error) {
		return c.api.Logical().WriteWithContext(ctx, path, body)
	})
}

// read is a logical read (GET) through call; a missing path is ErrNotFound.
func (c *Client) read(ctx context.Context, path string) (*vault.Secret, error) {
	s, err := call(ctx, c, "read "+path, func(ctx context.Context) (*vault.Secret, error) {
		return c.api.Logical().ReadWithContext(ctx, path)
	})
	if err == nil && (s == nil || s.Data == nil) {
		return nil, fmt.Errorf("%w: read %s", ErrNotFound, path)
	}
	return s, err
}

// decode turns a secret's data into a struct through its JSON tags.
func decode(op string, data map[string]any, out any) error {
	if data == nil {
		return fmt.Errorf("%w: %s: empty data", ErrVault, op)
	}
	b, err := json.Marshal(data)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: decode: %w", ErrVault, op, err)
	}
	return nil
}

// GenerateDataKey asks transit for a new 256-bit data key.
func (c *Client) GenerateDataKey(ctx context.Context) (dk envelope.DataKey, err error) {
	path := c.cfg.Mount + "/datakey/plaintext/" + c.cfg.KeyName
	s, err := c.write(ctx, path, map[string]any{"bits": 256})
	if err != nil {
		return dk, err
	}
	var out struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
		KeyVersion int    `json:"key_version"`
	}
	if s == nil {
		return dk, fmt.Errorf("%w: %s: empty answer", ErrVault, path)
	}
	if err := decode(path, s.Data, &out); err != nil {
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
	path := c.cfg.Mount + "/decrypt/" + c.cfg.KeyName
	s, err := c.write(ctx, path, map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	pt, ok := secretString(s, "plaintext")
	if !ok {
		return nil, fmt.Errorf("%w: %s: no plaintext in answer", ErrVault, path)
	}
	return base64.StdEncoding.DecodeString(pt)
}

func secretString(s *vault.Secret, field string) (string, bool) {
	if s == nil || s.Data == nil {
		return "", false
	}
	v, ok := s.Data[field].(string)
	return v, ok
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
	path := c.cfg.Mount + "/keys/" + c.cfg.KeyName
	s, err := c.read(ctx, path)
	if err != nil {
		return ki, err
	}
	err = decode(path, s.Data, &ki)
	return ki, err
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
	path := c.cfg.Mount + "/rewrap/" + c.cfg.KeyName
	s, err := c.write(ctx, path, map[string]any{"batch_input": in})
	if err != nil {
		return nil, err
	}
	var out struct {
		BatchResults []struct {
			Ciphertext string `json:"ciphertext"`
			Error      string `json:"error"`
		} `json:"batch_results"`
	}
	if s == nil {
		return nil, fmt.Errorf("%w: %s: empty answer", ErrVault, path)
	}
	if err := decode(path, s.Data, &out); err != nil {
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

// Health asks sys/health whether Vault is initialized, unsealed and active
// (standbys forward requests, so they count as healthy). It needs no token.
func (c *Client) Health(ctx context.Context) error {
	h, err := c.api.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return mapErr("sys/health", err)
	case !h.Initialized:
		return fmt.Errorf("%w: vault is not initialized", ErrVault)
	case h.Sealed:
		return ErrSealed
	}
	return nil
}

// Check verifies at start-up that Vault is reachable and unsealed, that the
// credentials work, that the KEK exists and is usable for data keys, and that
// the fingerprint secret is readable. Errors say what to fix.
func (c *Client) Check(ctx context.Context) error {
	if err := c.Health(ctx); err != nil {
		return fmt.Errorf("vault at %s: %w", c.cfg.Address, err)
	}
	if err := c.auth.ensure(ctx); err != nil {
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
		d := int(r - '0')
		if n > (math.MaxInt-d)/10 {
			return 0 // does not fit: malformed
		}
		n = n*10 + d
	}
	return 0
}

// mapErr maps a library error to the package's sentinels, keeping the
// operation and Vault's messages (which never carry key material).
func mapErr(op string, err error) error {
	var re *vault.ResponseError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vault.ErrSecretNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	case errors.As(err, &re):
		sentinel := ErrVault
		switch {
		case re.StatusCode == http.StatusServiceUnavailable:
			sentinel = ErrSealed
		case re.StatusCode == http.StatusForbidden:
			sentinel = ErrDenied
		case re.StatusCode == http.StatusNotFound:
			sentinel = ErrNotFound
		case re.StatusCode == http.StatusBadRequest && isCASMismatch(re):
			sentinel = ErrConflict
		}
		return fmt.Errorf("%w: %s: HTTP %d: %s", sentinel, op, re.StatusCode, strings.Join(re.Errors, "; "))
	case isTransport(err):
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, op, err)
	default:
		return fmt.Errorf("%w: %s: %w", ErrVault, op, err)
	}
}

// isTransport reports a failure to get any answer from Vault.
func isTransport(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func isDenied(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// isCASMismatch: KV v2 answers a stale check-and-set with 400 and no other
// machine-readable sign than its message.
func isCASMismatch(re *vault.ResponseError) bool {
	for _, m := range re.Errors {
		if strings.Contains(m, "check-and-set") {
			return true
		}
	}
	return false
}
