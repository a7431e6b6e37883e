package transit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// Setup configures a fresh Vault idempotently with an operator token: the
// transit mount, the KEK (aes256-gcm96, not exportable, deletion not
// allowed), a KV v2 mount and the fingerprint secret. Running it twice
// changes nothing. The Client must be built with the operator token.
func (c *Client) Setup(ctx context.Context) ([]SetupStep, error) {
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
	if _, err := c.FingerprintSecret(ctx); err == nil {
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
	return steps, nil
}
