package transit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	vault "github.com/hashicorp/vault/api"

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
	mounts, err := call(ctx, c, "list mounts", c.api.Sys().ListMountsWithContext)
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	transitMount := strings.Trim(c.cfg.Mount, "/")
	if m, ok := mounts[transitMount+"/"]; ok {
		if m.Type != "transit" {
			return steps, fmt.Errorf("mount %s/ exists but is of type %q, not transit", transitMount, m.Type)
		}
		steps = append(steps, SetupStep{What: "transit secrets engine at " + transitMount + "/"})
	} else {
		if err := c.mount(ctx, transitMount, &vault.MountInput{Type: "transit", Description: "Obol key-encryption keys"}); err != nil {
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
		if _, err := c.write(ctx, transitMount+"/keys/"+c.cfg.KeyName, map[string]any{"type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false}); err != nil {
			return steps, fmt.Errorf("create KEK: %w", err)
		}
		if _, err := c.write(ctx, transitMount+"/keys/"+c.cfg.KeyName+"/config", map[string]any{"deletion_allowed": false}); err != nil {
			return steps, fmt.Errorf("configure KEK: %w", err)
		}
		steps = append(steps, SetupStep{What: fmt.Sprintf("KEK %s/keys/%s (aes256-gcm96, not exportable, deletion not allowed)", transitMount, c.cfg.KeyName), Changed: true})
	default:
		return steps, fmt.Errorf("read KEK: %w", err)
	}
	// The fingerprint secret lives in KV v2: <mount>/data/<path>.
	kvMount, _, err := splitKV(c.cfg.FingerprintPath)
	if err != nil {
		return steps, fmt.Errorf("fingerprint path: %w", err)
	}
	if m, ok := mounts[kvMount+"/"]; ok {
		if m.Type != "kv" || m.Options["version"] != "2" {
			return steps, fmt.Errorf("mount %s/ exists but is not KV version 2", kvMount)
		}
		steps = append(steps, SetupStep{What: "KV v2 secrets engine at " + kvMount + "/"})
	} else {
		if err := c.mount(ctx, kvMount, &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return steps, fmt.Errorf("enable KV v2: %w", err)
		}
		steps = append(steps, SetupStep{What: "KV v2 secrets engine at " + kvMount + "/", Changed: true})
	}
	if _, _, err := c.FingerprintSecret(ctx, 0); err == nil {
		steps = append(steps, SetupStep{What: "fingerprint secret at " + c.cfg.FingerprintPath})
	} else if errors.Is(err, ErrNotFound) {
		data, err := newFingerprintKey()
		if err != nil {
			return steps, err
		}
		// cas=0: write only if absent, so a concurrent setup cannot replace it.
		if _, err := c.kvPut(ctx, c.cfg.FingerprintPath, data, 0); err != nil {
			return steps, fmt.Errorf("write fingerprint secret: %w", err)
		}
		steps = append(steps, SetupStep{What: "fingerprint secret at " + c.cfg.FingerprintPath, Changed: true})
	} else {
		return steps, err
	}
	if opts.Policies {
		more, err := c.setupPolicies(ctx)
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

// mount enables a secrets engine.
func (c *Client) mount(ctx context.Context, path string, in *vault.MountInput) error {
	_, err := call(ctx, c, "mount "+path, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, c.api.Sys().MountWithContext(ctx, path, in)
	})
	return err
}

// AppRoleName is the AppRole role vaultd logs in with.
const AppRoleName = "obol-vaultd"

// The AppRole role's settings, in seconds.
const (
	appRoleTokenTTL    = 3600
	appRoleTokenMaxTTL = 86400
	appRoleSecretIDTTL = 2592000
)

func (c *Client) setupPolicies(ctx context.Context) ([]SetupStep, error) {
	var steps []SetupStep
	kvMount, _, err := splitKV(c.cfg.FingerprintPath)
	if err != nil {
		return steps, err
	}
	for _, name := range policies.Names() {
		want, err := policies.Render(name, c.cfg.Mount, c.cfg.KeyName, kvMount)
		if err != nil {
			return steps, err
		}
		// GetPolicy answers "" for a missing policy.
		cur, err := call(ctx, c, "read policy "+name, func(ctx context.Context) (string, error) {
			return c.api.Sys().GetPolicyWithContext(ctx, name)
		})
		if err != nil {
			return steps, fmt.Errorf("read policy %s: %w", name, err)
		}
		if cur == want {
			steps = append(steps, SetupStep{What: "policy " + name})
			continue
		}
		if _, err := call(ctx, c, "write policy "+name, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, c.api.Sys().PutPolicyWithContext(ctx, name, want)
		}); err != nil {
			return steps, fmt.Errorf("write policy %s: %w", name, err)
		}
		steps = append(steps, SetupStep{What: "policy " + name, Changed: true})
	}
	auths, err := call(ctx, c, "list auth methods", c.api.Sys().ListAuthWithContext)
	if err != nil {
		return steps, fmt.Errorf("list auth methods: %w", err)
	}
	mount := strings.Trim(c.cfg.AppRoleMount, "/")
	if mount == "" {
		mount = "approle"
	}
	if a, ok := auths[mount+"/"]; ok {
		if a.Type != "approle" {
			return steps, fmt.Errorf("auth mount %s/ exists but is of type %q", mount, a.Type)
		}
		steps = append(steps, SetupStep{What: "AppRole auth method at " + mount + "/"})
	} else {
		if _, err := call(ctx, c, "enable auth "+mount, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, c.api.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vault.EnableAuthOptions{Type: "approle"})
		}); err != nil {
			return steps, fmt.Errorf("enable AppRole: %w", err)
		}
		steps = append(steps, SetupStep{What: "AppRole auth method at " + mount + "/", Changed: true})
	}
	what := "AppRole role " + AppRoleName + " (policy " + policies.VaultD + ", token TTL 1h, secret id TTL 30d)"
	rolePath := "auth/" + mount + "/role/" + AppRoleName
	var cur struct {
		TokenPolicies []string `json:"token_policies"`
		TokenTTL      int      `json:"token_ttl"`
		TokenMaxTTL   int      `json:"token_max_ttl"`
		SecretIDTTL   int      `json:"secret_id_ttl"`
	}
	s, err := c.read(ctx, rolePath)
	if err == nil {
		err = decode("read "+rolePath, s.Data, &cur)
	}
	if err == nil && len(cur.TokenPolicies) == 1 && cur.TokenPolicies[0] == policies.VaultD && cur.TokenTTL == appRoleTokenTTL && cur.TokenMaxTTL == appRoleTokenMaxTTL && cur.SecretIDTTL == appRoleSecretIDTTL {
		steps = append(steps, SetupStep{What: what})
		return steps, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return steps, fmt.Errorf("read AppRole role: %w", err)
	}
	role := map[string]any{
		"token_policies": []string{policies.VaultD},
		"token_ttl":      appRoleTokenTTL, "token_max_ttl": appRoleTokenMaxTTL,
		"secret_id_ttl": appRoleSecretIDTTL, "token_type": "service",
	}
	if _, err := c.write(ctx, rolePath, role); err != nil {
		return steps, fmt.Errorf("write AppRole role: %w", err)
	}
	steps = append(steps, SetupStep{What: what, Changed: true})
	return steps, nil
}

func (c *Client) setupAudit(ctx context.Context, path string) (SetupStep, error) {
	what := "Vault file audit device writing to " + path
	devices, err := call(ctx, c, "list audit devices", c.api.Sys().ListAuditWithContext)
	if err != nil && !errors.Is(err, ErrVault) {
		return SetupStep{What: what}, fmt.Errorf("list audit devices: %w", err)
	}
	for _, d := range devices {
		if d.Type == "file" && d.Options["file_path"] == path {
			return SetupStep{What: what}, nil
		}
	}
	if _, err := call(ctx, c, "enable audit device", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, c.api.Sys().EnableAuditWithOptionsWithContext(ctx, "obol-file", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": path}})
	}); err != nil {
		return SetupStep{What: what}, fmt.Errorf("enable audit device: %w", err)
	}
	return SetupStep{What: what, Changed: true}, nil
}
