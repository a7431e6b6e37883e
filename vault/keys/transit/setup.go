package transit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/obolpay/obol/policies"
)

// SetupStep is one thing Setup did or found already done.
type SetupStep struct {
	What    string
	Changed bool
}

func (s SetupStep) String() string {
	if s.Changed {
		return "created: " + s.What
	}
	return "exists:  " + s.What
}

// SetupOptions choose the optional parts of Setup.
type SetupOptions struct {
	// Policies writes Obol's policies (policies/vault/*.hcl) and an AppRole
	// role obol-vaultd holding obol-vaultd.
	Policies bool
	// AuditFile enables Vault's file audit device writing to this path.
	AuditFile string
}

// Setup configures a fresh Vault idempotently with an operator token: the
// transit mount, the KEK (aes256-gcm96, not exportable, deletion not
// allowed), a KV v2 mount and the fingerprint secret; optionally the
// policies, the AppRole role for vaultd and a file audit device. Running it
// twice changes nothing. The Client must be built with the operator token.
func (c *Client) Setup(ctx context.Context, opts SetupOptions) ([]SetupStep, error) {
	var steps []SetupStep
	var mounts map[string]struct {
		Type    string            `json:"type"`
		Options map[string]string `json:"options"`
	}
	if err := c.do(ctx, http.MethodGet, "sys/mounts", nil, &mounts); err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	transitMount := strings.Trim(c.cfg.Mount, "/")
	if m, ok := mounts[transitMount+"/"]; ok {
		if m.Type != "transit" {
			return steps, fmt.Errorf("mount %s/ exists but is of type %q, not transit", transitMount, m.Type)
		}
		steps = append(steps, SetupStep{What: "transit secrets engine at " + transitMount + "/"})
	} else {
		if err := c.do(ctx, http.MethodPost, "sys/mounts/"+transitMount, map[string]any{"type": "transit", "description": "Obol key-encryption keys"}, nil); err != nil {
			return steps, fmt.Errorf("enable transit: %w", err)
		}
		steps = append(steps, SetupStep{What: "transit secrets engine at " + transitMount + "/", Changed: true})
	}
	ki, err := c.ReadKey(ctx)
	switch {
	case err == nil:
		if ki.Exportable {
			return steps, fmt.Errorf("transit key %s is exportable; Obol requires a non-exportable KEK", c.cfg.KeyName)
		}
		steps = append(steps, SetupStep{What: fmt.Sprintf("KEK %s/keys/%s (%s, version %d)", transitMount, c.cfg.KeyName, ki.Type, ki.LatestVersion)})
	case errors.Is(err, ErrNotFound):
		if err := c.do(ctx, http.MethodPost, transitMount+"/keys/"+c.cfg.KeyName, map[string]any{"type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false}, nil); err != nil {
			return steps, fmt.Errorf("create KEK: %w", err)
		}
		if err := c.do(ctx, http.MethodPost, transitMount+"/keys/"+c.cfg.KeyName+"/config", map[string]any{"deletion_allowed": false}, nil); err != nil {
			return steps, fmt.Errorf("configure KEK: %w", err)
		}
		steps = append(steps, SetupStep{What: fmt.Sprintf("KEK %s/keys/%s (aes256-gcm96, not exportable, deletion not allowed)", transitMount, c.cfg.KeyName), Changed: true})
	default:
		return steps, fmt.Errorf("read KEK: %w", err)
	}
	// The fingerprint secret lives in KV v2: <mount>/data/<path>.
	kvMount, _, ok := strings.Cut(c.cfg.FingerprintPath, "/data/")
	if !ok {
		return steps, fmt.Errorf("fingerprint path %q must be a KV v2 data path like secret/data/obol/fingerprint", c.cfg.FingerprintPath)
	}
	if m, ok := mounts[kvMount+"/"]; ok {
		if m.Type != "kv" || m.Options["version"] != "2" {
			return steps, fmt.Errorf("mount %s/ exists but is not KV version 2", kvMount)
		}
		steps = append(steps, SetupStep{What: "KV v2 secrets engine at " + kvMount + "/"})
	} else {
		if err := c.do(ctx, http.MethodPost, "sys/mounts/"+kvMount, map[string]any{"type": "kv", "options": map[string]string{"version": "2"}}, nil); err != nil {
			return steps, fmt.Errorf("enable KV v2: %w", err)
		}
		steps = append(steps, SetupStep{What: "KV v2 secrets engine at " + kvMount + "/", Changed: true})
	}
	if _, _, err := c.FingerprintSecret(ctx, 0); err == nil {
		steps = append(steps, SetupStep{What: "fingerprint secret at " + c.cfg.FingerprintPath})
	} else if errors.Is(err, ErrNotFound) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return steps, err
		}
		// cas=0: write only if absent, so a concurrent setup cannot replace it.
		body := map[string]any{"options": map[string]any{"cas": 0}, "data": map[string]string{"key": base64.StdEncoding.EncodeToString(b[:])}}
		if err := c.do(ctx, http.MethodPost, c.cfg.FingerprintPath, body, nil); err != nil {
			return steps, fmt.Errorf("write fingerprint secret: %w", err)
		}
		steps = append(steps, SetupStep{What: "fingerprint secret at " + c.cfg.FingerprintPath, Changed: true})
	} else {
		return steps, err
	}
	if opts.Policies {
		more, err := c.setupPolicies(ctx, kvMount)
		steps = append(steps, more...)
		if err != nil {
			return steps, err
		}
	}
	if opts.AuditFile != "" {
		st, err := c.setupAudit(ctx, opts.AuditFile)
		steps = append(steps, st)
		if err != nil {
			return steps, err
		}
	}
	return steps, nil
}

// AppRoleName is the AppRole role vaultd logs in with.
const AppRoleName = "obol-vaultd"

func (c *Client) setupPolicies(ctx context.Context, kvMount string) ([]SetupStep, error) {
	var steps []SetupStep
	for _, name := range policies.Names() {
		want, err := policies.Render(name, c.cfg.Mount, c.cfg.KeyName, kvMount)
		if err != nil {
			return steps, err
		}
		var cur struct {
			Policy string `json:"policy"`
		}
		err = c.do(ctx, http.MethodGet, "sys/policies/acl/"+name, nil, &cur)
		switch {
		case err == nil && cur.Policy == want:
			steps = append(steps, SetupStep{What: "policy " + name})
			continue
		case err != nil && !errors.Is(err, ErrNotFound):
			return steps, fmt.Errorf("read policy %s: %w", name, err)
		}
		if err := c.do(ctx, http.MethodPut, "sys/policies/acl/"+name, map[string]string{"policy": want}, nil); err != nil {
			return steps, fmt.Errorf("write policy %s: %w", name, err)
		}
		steps = append(steps, SetupStep{What: "policy " + name, Changed: true})
	}
	var auths map[string]struct {
		Type string `json:"type"`
	}
	if err := c.do(ctx, http.MethodGet, "sys/auth", nil, &auths); err != nil {
		return steps, fmt.Errorf("list auth methods: %w", err)
	}
	mount := strings.Trim(c.cfg.AppRoleMount, "/")
	if a, ok := auths[mount+"/"]; ok {
		if a.Type != "approle" {
			return steps, fmt.Errorf("auth mount %s/ exists but is of type %q", mount, a.Type)
		}
		steps = append(steps, SetupStep{What: "AppRole auth method at " + mount + "/"})
	} else {
		if err := c.do(ctx, http.MethodPost, "sys/auth/"+mount, map[string]string{"type": "approle"}, nil); err != nil {
			return steps, fmt.Errorf("enable AppRole: %w", err)
		}
		steps = append(steps, SetupStep{What: "AppRole auth method at " + mount + "/", Changed: true})
	}
	role := map[string]any{
		"token_policies": []string{policies.VaultD},
		"token_ttl":      3600, "token_max_ttl": 86400,
		"secret_id_ttl": 2592000, "token_type": "service",
	}
	var cur struct {
		TokenPolicies []string `json:"token_policies"`
		TokenTTL      int      `json:"token_ttl"`
		TokenMaxTTL   int      `json:"token_max_ttl"`
		SecretIDTTL   int      `json:"secret_id_ttl"`
	}
	err := c.do(ctx, http.MethodGet, "auth/"+mount+"/role/"+AppRoleName, nil, &cur)
	if err == nil && len(cur.TokenPolicies) == 1 && cur.TokenPolicies[0] == policies.VaultD && cur.TokenTTL == 3600 && cur.TokenMaxTTL == 86400 && cur.SecretIDTTL == 2592000 {
		steps = append(steps, SetupStep{What: "AppRole role " + AppRoleName + " (policy " + policies.VaultD + ", token TTL 1h, secret id TTL 30d)"})
		return steps, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return steps, fmt.Errorf("read AppRole role: %w", err)
	}
	if err := c.do(ctx, http.MethodPost, "auth/"+mount+"/role/"+AppRoleName, role, nil); err != nil {
		return steps, fmt.Errorf("write AppRole role: %w", err)
	}
	steps = append(steps, SetupStep{What: "AppRole role " + AppRoleName + " (policy " + policies.VaultD + ", token TTL 1h, secret id TTL 30d)", Changed: true})
	return steps, nil
}

func (c *Client) setupAudit(ctx context.Context, path string) (SetupStep, error) {
	what := "Vault file audit device writing to " + path
	var devices map[string]struct {
		Type    string            `json:"type"`
		Options map[string]string `json:"options"`
	}
	if err := c.do(ctx, http.MethodGet, "sys/audit", nil, &devices); err != nil && !errors.Is(err, ErrVault) {
		return SetupStep{What: what}, fmt.Errorf("list audit devices: %w", err)
	}
	for _, d := range devices {
		if d.Type == "file" && d.Options["file_path"] == path {
			return SetupStep{What: what}, nil
		}
	}
	if err := c.do(ctx, http.MethodPut, "sys/audit/obol-file", map[string]any{"type": "file", "options": map[string]string{"file_path": path}}, nil); err != nil {
		return SetupStep{What: what}, fmt.Errorf("enable audit device: %w", err)
	}
	return SetupStep{What: what, Changed: true}, nil
}
