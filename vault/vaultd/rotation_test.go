package vaultd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/policies"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/store"
)

// keyAdmin is a Vault token holding only obol-key-admin (for this test's KEK).
type keyAdmin struct {
	addr, token, kek string
}

func newKeyAdmin(t *testing.T, s *stack) keyAdmin {
	t.Helper()
	hcl, err := policies.Render(policies.KeyAdmin, "transit", s.kek, "secret")
	require.NoError(t, err)
	name := "obol-key-admin-" + s.kek
	s.vault.Do(t, "PUT", "sys/policies/acl/"+name, map[string]string{"policy": hcl})
	resp := s.vault.Do(t, "POST", "auth/token/create", map[string]any{"policies": []string{name}, "no_default_policy": true, "ttl": "1h"})
	return keyAdmin{addr: s.vault.Addr, token: resp["auth"].(map[string]any)["client_token"].(string), kek: s.kek}
}

// do is what a security engineer's `vault write` does.
func (k keyAdmin) do(t *testing.T, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", k.addr+"/v1/transit/keys/"+k.kek+path, bytes.NewReader(b))
	req.Header.Set("X-Vault-Token", k.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Lessf(t, resp.StatusCode, 300, "key admin %s: HTTP %d", path, resp.StatusCode)
}

// TestRotationUnderLoad tokenizes and detokenizes at a steady rate while the
// KEK rotates three times (as the key admin would, with only obol-key-admin)
// and vaultd rewraps; then min_decryption_version is raised. Zero requests
// may fail, and every token must still detokenize with every cached key
// wiped (so each DEK is unwrapped again through Vault).
func TestRotationUnderLoad(t *testing.T) {
	s := newStack(t, stackOpts{dedicated: true, dekMaxUses: 20})
	admin := newKeyAdmin(t, s)
	ctx := context.Background()

	var okTok, okDetok, failed atomic.Int64
	var mu sync.Mutex
	var tokens []string
	var failures []string
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	numbers := []string{"4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "3566002020360505"}
	for _, n := range numbers {
		leaks.AddCard(n, "")
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond) // 4 workers × 100/s: a steady rate, not a flood
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
				r := s.tokenize(s.a.SecretKey, map[string]any{"number": numbers[(w+i)%len(numbers)], "exp_month": 12, "exp_year": expYear})
				if r.status != 200 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("tokenize: %d %s", r.status, r.raw))
					mu.Unlock()
					continue
				}
				okTok.Add(1)
				tok := r.str("token")
				mu.Lock()
				tokens = append(tokens, tok)
				older := tokens[(i*7919)%len(tokens)]
				mu.Unlock()
				for _, tk := range []string{tok, older} {
					c, _, err := s.detokenize(s.gw, s.a.MerchantID, tk, false)
					if err != nil {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, "detokenize: "+err.Error())
						mu.Unlock()
						continue
					}
					c.Wipe()
					okDetok.Add(1)
				}
			}
		}(w)
	}
	waitOps := func(n int64) {
		t.Helper()
		target := okTok.Load() + n
		require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
			if okTok.Load() < target {
				return errors.New("load not progressing")
			}
			return nil
		}))
	}
	waitOps(100)
	var pickups []time.Duration
	for v := 2; v <= 4; v++ {
		admin.do(t, "/rotate", map[string]any{})
		rotated := time.Now()
		// vaultd seals new data under a DEK wrapped by the new version.
		require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
			if got := s.in.Envelope.CurrentKEKVersion(); got != v {
				return fmt.Errorf("current DEK under KEK v%d, want v%d", got, v)
			}
			return nil
		}))
		pickups = append(pickups, time.Since(rotated))
		waitOps(50)
		// The rewrap job leaves nothing under older versions.
		require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
			behind, err := s.in.Store.DEKsBelowVersion(ctx, v, "", 1)
			if err != nil || len(behind) > 0 {
				return fmt.Errorf("DEKs still below v%d: %v", v, err)
			}
			return nil
		}))
	}
	admin.do(t, "/config", map[string]any{"min_decryption_version": 4})
	waitOps(100)
	stopLoad()
	wg.Wait()

	s.in.Envelope.Purge() // forget every plaintext DEK: each must unwrap again under min_decryption_version 4
	mu.Lock()
	all := append([]string(nil), tokens...)
	mu.Unlock()
	for _, tok := range all {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		require.NoErrorf(t, err, "token %s does not detokenize after min_decryption_version=4: %v", tok, err)
		c.Wipe()
	}
	stats, _ := s.in.Store.KeyStats(ctx)
	require.EqualValuesf(t, 0, failed.Load(), "%d failed requests during rotation, e.g. %v", failed.Load(), failures[:min(3, len(failures))])
	require.Lenf(t, stats, 1, "DEKs by KEK version after rewrap: %+v", stats)
	require.EqualValuesf(t, 4, stats[0].KEKVersion, "DEKs by KEK version after rewrap: %+v", stats)
	evs, err := s.in.Store.ListAudit(ctx, store.AuditFilter{Limit: 100000})
	require.NoError(t, err)
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Action]++
	}
	require.EqualValuesf(t, 3, counts[audit.ActionKEKRotated], "audit trail: %v (want 3 rotations, ≥3 rewraps, %d reveals)", counts, okDetok.Load()+int64(len(all)))
	require.GreaterOrEqualf(t, counts[audit.ActionRewrap], 3, "audit trail: %v (want 3 rotations, ≥3 rewraps, %d reveals)", counts, okDetok.Load()+int64(len(all)))
	require.EqualValuesf(t, int(okDetok.Load()+int64(len(all))), counts[audit.ActionDetokenize], "audit trail: %v (want 3 rotations, ≥3 rewraps, %d reveals)", counts, okDetok.Load()+int64(len(all)))
	fmt.Printf("rotation under load: %d tokenize + %d detokenize OK, %d failed; 3 KEK rotations picked up after %v; %d DEKs rewrapped in %d runs; %d tokens verified after min_decryption_version=4 (%d DEKs unwrapped)\n",
		okTok.Load(), okDetok.Load(), failed.Load(), pickups, s.in.Rewrap.Rewrapped.Load(), s.in.Rewrap.Runs.Load(), len(all), stats[0].DEKs)
}
