package transit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// DefaultKubernetesJWTFile is where Kubernetes mounts a pod's service
// account token.
const DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Authentication methods, in order of precedence.
const (
	authToken      = "token"
	authTokenFile  = "token file"
	authAppRole    = "approle"
	authKubernetes = "kubernetes"
)

// authenticator keeps the client's token valid. Tokens given directly (or by
// file) belong to someone else, who renews them. Tokens from a login
// (AppRole, Kubernetes) are renewed by the library's LifetimeWatcher; when
// the lease can no longer be renewed (max TTL reached, renewal failing until
// expiry) it logs in again.
type authenticator struct {
	c         *Client
	kind      string
	tokenFile string
	// method builds the login for this attempt: credential files are re-read
	// at every login, so an orchestrator can rotate them.
	method func() (vault.AuthMethod, error)

	mu      sync.Mutex // serialises logins and the watcher swap
	watcher *vault.LifetimeWatcher

	done      chan struct{}
	closeOnce sync.Once
}

// AuthMethod names the authentication method New will use for cfg, by the
// precedence documented on Config (for logs; it prints no secret).
func (cfg Config) AuthMethod() string {
	switch {
	case cfg.Token != "":
		return authToken
	case cfg.TokenFile != "":
		return authTokenFile
	case cfg.RoleID != "":
		return authAppRole
	case cfg.KubernetesRole != "":
		return authKubernetes
	default:
		return authToken + " (VAULT_TOKEN)"
	}
}

func newAuthenticator(c *Client) (*authenticator, error) {
	cfg := &c.cfg
	a := &authenticator{c: c, done: make(chan struct{})}
	switch {
	case cfg.Token != "":
		a.kind = authToken
		c.api.SetToken(cfg.Token)
	case cfg.TokenFile != "":
		a.kind, a.tokenFile = authTokenFile, cfg.TokenFile
		tok, err := readCredential(cfg.TokenFile, "vault token file")
		if err != nil {
			return nil, err
		}
		c.api.SetToken(tok)
	case cfg.RoleID != "":
		if cfg.SecretIDFile == "" {
			return nil, errors.New("AppRole auth needs a secret id file (OBOL_VAULT_SECRET_ID_FILE)")
		}
		if cfg.AppRoleMount == "" {
			cfg.AppRoleMount = "approle"
		}
		a.kind = authAppRole
		a.method = func() (vault.AuthMethod, error) {
			sid, err := readCredential(cfg.SecretIDFile, "AppRole secret id file")
			if err != nil {
				return nil, err
			}
			return approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{FromString: sid}, approle.WithMountPath(strings.Trim(cfg.AppRoleMount, "/")))
		}
		c.api.ClearToken()
	case cfg.KubernetesRole != "":
		if cfg.KubernetesMount == "" {
			cfg.KubernetesMount = "kubernetes"
		}
		if cfg.KubernetesJWTFile == "" {
			cfg.KubernetesJWTFile = DefaultKubernetesJWTFile
		}
		a.kind = authKubernetes
		a.method = func() (vault.AuthMethod, error) {
			jwt, err := readCredential(cfg.KubernetesJWTFile, "Kubernetes service account token file")
			if err != nil {
				return nil, err
			}
			return kubernetes.NewKubernetesAuth(cfg.KubernetesRole, kubernetes.WithServiceAccountToken(jwt), kubernetes.WithMountPath(strings.Trim(cfg.KubernetesMount, "/")))
		}
		c.api.ClearToken()
	case c.api.Token() != "":
		// Nothing configured: the library read VAULT_TOKEN.
		a.kind = authToken
	default:
		return nil, errors.New("vault auth is required: a token (OBOL_VAULT_TOKEN, VAULT_TOKEN or OBOL_VAULT_TOKEN_FILE), AppRole (OBOL_VAULT_ROLE_ID and OBOL_VAULT_SECRET_ID_FILE) or Kubernetes (OBOL_VAULT_K8S_ROLE)")
	}
	return a, nil
}

// readCredential reads a secret from a file (trimmed; empty is an error).
func readCredential(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrDenied, what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%w: %s %s is empty", ErrDenied, what, path)
	}
	return s, nil
}

// ensure logs in when a login method has no token yet.
func (a *authenticator) ensure(ctx context.Context) error {
	if a.method == nil || a.c.api.Token() != "" {
		return nil
	}
	return a.login(ctx, func() bool { return a.c.api.Token() == "" })
}

// recover is called after Vault refused the token used: it reports whether
// the request is worth repeating with the (now) current token.
func (a *authenticator) recover(ctx context.Context, used string) (bool, error) {
	if cur := a.c.api.Token(); cur != used {
		return true, nil // someone else already replaced the token
	}
	switch a.kind {
	case authTokenFile:
		return a.reloadTokenFile(), nil
	case authAppRole, authKubernetes:
		// Vault answers 403 both for a dead token and for a policy denial.
		// Only a dead token (expired, revoked) is fixed by logging in again.
		if _, err := a.c.api.Auth().Token().LookupSelfWithContext(ctx); !isDenied(err) {
			return false, nil
		}
		if err := a.login(ctx, func() bool { return a.c.api.Token() == used }); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// reloadTokenFile re-reads the token file; true if it now holds another token.
func (a *authenticator) reloadTokenFile() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := readCredential(a.tokenFile, "vault token file")
	if err != nil || t == a.c.api.Token() {
		return false
	}
	a.c.api.SetToken(t)
	a.c.log.Info("vault token reloaded from file")
	return true
}

// login logs in if still needed (need is checked under the lock, so
// concurrent callers log in once), sets the token and starts its watcher.
func (a *authenticator) login(ctx context.Context, need func() bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.done:
		return fmt.Errorf("%w: client closed", ErrVault)
	default:
	}
	if !need() {
		return nil
	}
	m, err := a.method()
	if err != nil {
		return fmt.Errorf("%s login: %w", a.kind, err)
	}
	// Log in without any token (a stale one must not ride along), keeping
	// the namespace header.
	lc, err := a.c.api.CloneWithHeaders()
	if err != nil {
		return fmt.Errorf("%w: %s login: %w", ErrVault, a.kind, err)
	}
	lc.ClearToken()
	secret, err := m.Login(ctx, lc)
	if err != nil {
		return fmt.Errorf("%s login: %w", a.kind, mapErr("auth/"+a.kind+"/login", err))
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return fmt.Errorf("%w: %s login returned no token", ErrVault, a.kind)
	}
	a.c.api.SetToken(secret.Auth.ClientToken)
	ttl := time.Duration(secret.Auth.LeaseDuration) * time.Second
	a.c.log.Info("vault login", "method", a.kind, "ttl", ttl.String(), "renewable", secret.Auth.Renewable)
	a.startWatcher(secret)
	return nil
}

// startWatcher replaces the watcher (a.mu held).
func (a *authenticator) startWatcher(secret *vault.Secret) {
	if a.watcher != nil {
		a.watcher.Stop()
		a.watcher = nil
	}
	if secret.Auth.LeaseDuration <= 0 {
		return // a token that never expires (root-like): nothing to renew
	}
	w, err := a.c.api.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		a.c.log.Warn("vault token renewal not started", "err", err)
		return
	}
	a.watcher = w
	go w.Start()
	go a.follow(w)
}

// follow reports renewals and logs in again when w gives up.
func (a *authenticator) follow(w *vault.LifetimeWatcher) {
	for {
		select {
		case <-a.done:
			w.Stop()
			return
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.c.log.Debug("vault token renewed", "method", a.kind, "ttl", (time.Duration(r.Secret.Auth.LeaseDuration) * time.Second).String())
			}
		case err := <-w.DoneCh():
			a.mu.Lock()
			current := a.watcher == w
			a.mu.Unlock()
			if !current {
				return // replaced by a newer login, or closed
			}
			a.c.log.Info("vault token can no longer be renewed; logging in again", "method", a.kind, "err", err)
			a.relogin(w)
			return
		}
	}
}

// relogin retries the login with backoff until it works, another login
// replaced old, or the client is closed. Requests meanwhile fail closed.
func (a *authenticator) relogin(old *vault.LifetimeWatcher) {
	wait := 500 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*a.c.cfg.Timeout)
		err := a.login(ctx, func() bool { return a.watcher == old })
		cancel()
		if err == nil {
			return
		}
		a.c.log.Warn("vault login failed; retrying", "method", a.kind, "in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-a.done:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (a *authenticator) close() {
	a.closeOnce.Do(func() {
		close(a.done)
		a.mu.Lock()
		if a.watcher != nil {
			a.watcher.Stop()
			a.watcher = nil
		}
		a.mu.Unlock()
	})
}
