package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/proxy/reconcile"
)

// runObol runs the obol command as a subprocess to its end and returns its
// stdout, stderr and exit code.
func runObol(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	p := startObol(t, args...)
	<-p.done
	code := 0
	var ee *exec.ExitError
	if p.err != nil {
		require.ErrorAs(t, p.err, &ee)
		code = ee.ExitCode()
	}
	return p.out.String(), p.stderr.String(), code
}

// TestDevReconcile: against a running obol dev (--data-dir), payments made
// through the gateway reconcile clean (exit 0); after a gateway row is
// altered, the difference is reported exactly, as JSON, with exit code 3.
func TestDevReconcile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	t.Setenv("OBOL_LEDGER_ADDR", "")
	t.Setenv("OBOL_GATEWAY_POSTGRES_URL", "")
	dir := filepath.Join(t.TempDir(), ".obol")
	dev := startObol(t, devArgs(dir)...)
	restAddr := dev.waitBanner(t)
	pm := payRe.FindStringSubmatch(dev.out.String())
	require.NotNil(t, pm, "no payments address:\n%s", dev.out)
	var creds map[string]string
	b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &creds))
	auth := []string{"Authorization", "Bearer " + creds["secret_key"]}

	pay := func(capture bool) string {
		resp, body := post(t, "http://"+restAddr+"/v1/tokens", `{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}}`, auth...)
		require.Equal(t, 200, resp.StatusCode, string(body))
		var tok map[string]any
		require.NoError(t, json.Unmarshal(body, &tok))
		capt := "false"
		if capture {
			capt = "true"
		}
		resp, body = post(t, "http://"+pm[1]+"/v1/payments", `{"token":"`+tok["token"].(string)+`","amount":1500,"currency":"USD","capture":`+capt+`}`, auth...)
		require.Equal(t, 200, resp.StatusCode, string(body))
		var p map[string]any
		require.NoError(t, json.Unmarshal(body, &p))
		return p["id"].(string)
	}
	captured := pay(true)
	pay(false)

	stdout, stderr, code := runObol(t, "ledger", "reconcile", "--data-dir", dir, "--json")
	require.Equal(t, 0, code, "stderr: %s\nstdout: %s", stderr, stdout)
	var rep reconcile.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	require.Equal(t, reconcile.Report{GatewayPayments: 2, LedgerPayments: 2, Differences: []reconcile.Difference{}}, rep)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "gateway.db")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`UPDATE payments SET amount_captured = 1000 WHERE id = ?`, captured)
	require.NoError(t, err)

	stdout, stderr, code = runObol(t, "reconcile", "--data-dir", dir, "--json")
	require.Equal(t, exitDifferences, code, "stderr: %s\nstdout: %s", stderr, stdout)
	require.Contains(t, stderr, "obol: reconciliation found 1 difference(s) between the gateway and the ledger")
	rep = reconcile.Report{}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	require.Equal(t, []reconcile.Difference{{PaymentID: captured, MerchantID: creds["merchant_id"], Kind: reconcile.KindAmountMismatch, Field: "captured",
		GatewayStatus: "captured", Gateway: "1000", Ledger: "1500"}}, rep.Differences)

	// The text form names the payment and the amounts.
	var out strings.Builder
	err = run(context.Background(), []string{"ledger", "reconcile", "--data-dir", dir}, &out)
	require.ErrorContains(t, err, "reconciliation found 1 difference(s)")
	require.Contains(t, out.String(), "DIFFERENCE: "+captured+" amount_mismatch captured: gateway 1000, ledger 1500 (gateway status captured)")
}
