package gatewayd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/gatewayd"
)

type readyAnswer struct {
	status       int
	code         string
	dependencies map[string]string
}

func readyz(addr string) (readyAnswer, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return readyAnswer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		Dependencies map[string]string `json:"dependencies"`
	}
	_ = json.Unmarshal(b, &body)
	return readyAnswer{resp.StatusCode, body.Error.Code, body.Dependencies}, nil
}

// waitReady polls gatewayd's /readyz until it answers want (200, or 503
// naming dep with code).
func waitReady(t *testing.T, addr string, dep, code string) {
	t.Helper()
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		a, err := readyz(addr)
		if err != nil {
			return err
		}
		if dep == "" {
			if a.status != 200 {
				return fmt.Errorf("readyz %d %s %v", a.status, a.code, a.dependencies)
			}
			return nil
		}
		if a.status != 503 || a.code != code || a.dependencies[dep] != code || a.dependencies["database"] != "ok" {
			return fmt.Errorf("readyz %d %s %v, want 503 naming %s", a.status, a.code, a.dependencies, dep)
		}
		return nil
	}))
}

// TestReadyzFollowsDependencies: gatewayd's /readyz is 503 naming vault
// (vault_unavailable) while HashiCorp Vault is sealed, through vaultd's own
// readiness, and 200 again once it is unsealed; the same for riskd and
// ledgerd stopped and started again.
func TestReadyzFollowsDependencies(t *testing.T) {
	hv := testenv.StartVault(t)
	s := startOn(t, hv, func(c *gatewayd.Config, _ string) {
		c.ReadyGrace, c.ReadyCache = time.Second, 200*time.Millisecond
	})
	waitReady(t, s.gw, "", "")

	hv.Seal(t)
	unsealed := false
	t.Cleanup(func() {
		if !unsealed {
			hv.Unseal(t)
		}
	})
	waitReady(t, s.gw, "vault", "vault_unavailable")
	hv.Unseal(t)
	unsealed = true
	waitReady(t, s.gw, "", "")

	for _, tt := range []struct{ dep, code string }{{"risk", "risk_unavailable"}, {"ledger", "ledger_unavailable"}} {
		t.Run(tt.dep, func(t *testing.T) {
			s.deps[tt.dep].down()
			waitReady(t, s.gw, tt.dep, tt.code)
			s.deps[tt.dep].up(t)
			waitReady(t, s.gw, "", "")
		})
	}
}
