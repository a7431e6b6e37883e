package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/store/sqlite"
	"github.com/obolpay/obol/proxy/service"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

// TestGatewayOutboxCommands: `obol gateway outbox list` shows a dead entry
// with its error code; `retry` makes it pending again, due now.
func TestGatewayOutboxCommands(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := paysqlite.Open(ctx, filepath.Join(dir, "gateway.db"))
	require.NoError(t, err)
	require.NoError(t, st.AddOutbox(ctx, "PAYMENT_EVENT_CAPTURED:pay_x:", "pay_x", `{}`, time.Now()))
	require.NoError(t, st.OutboxDeadLetter(ctx, "PAYMENT_EVENT_CAPTURED:pay_x:", "payment_not_authorized"))
	require.NoError(t, st.Close())
	cmd := func(args ...string) (string, error) {
		var b bytes.Buffer
		err := run(ctx, append([]string{"gateway", "outbox"}, args...), &b)
		return b.String(), err
	}
	cases := []struct {
		name string
		args []string
		want []string
		err  string
	}{
		{"list dead", []string{"list", "--data-dir", dir, "--state", "dead"}, []string{"pay_x", "dead", "payment_not_authorized", "1 entries"}, ""},
		{"bad state", []string{"list", "--data-dir", dir, "--state", "gone"}, nil, "--state must be dead or pending"},
		{"retry needs a target", []string{"retry", "--data-dir", dir}, nil, "name one OUTBOX_ID or --all"},
		{"retry unknown", []string{"retry", "--data-dir", dir, "nope"}, nil, `no dead outbox entry "nope"`},
		{"retry all", []string{"retry", "--data-dir", dir, "--all"}, []string{"1 dead entries queued again"}, ""},
		{"list pending after the retry", []string{"list", "--data-dir", dir, "--state", "pending"}, []string{"pay_x", "pending", "1 entries"}, ""},
		{"no database", []string{"list"}, nil, "the gateway database is required"},
	}
	t.Setenv("OBOL_GATEWAY_POSTGRES_URL", "")
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			o, err := cmd(tt.args...)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			for _, w := range tt.want {
				assert.Contains(t, o, w)
			}
		})
	}
}

// TestDevShutdownDrainsPayments: a SIGTERM (context cancel) while a payment
// on the slow test card is in flight. The gateway drains first: the
// payment ends failed/acquirer_timeout with its reversal and hold release
// done while the simulator and ledgerd still run, so the ledger holds
// nothing once obol dev has stopped and nothing is owed on the payment.
func TestDevShutdownDrainsPayments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".obol")
	t.Setenv("OBOL_LEDGER_SETTINGS", "")
	t.Setenv("OBOL_LEDGER_TOKEN", "")
	out := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0", "--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0", "--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0",
			"--simulator-addr", "127.0.0.1:0", "--demo-addr", "", "--log-format", "json"}, out)
	}()
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		if payRe.FindStringSubmatch(out.String()) == nil {
			return errors.New("no payments address printed yet")
		}
		return nil
	}), out.String())
	addr, pay := restRe.FindStringSubmatch(out.String())[1], payRe.FindStringSubmatch(out.String())[1]
	var creds map[string]string
	b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &creds))
	resp, body := post(t, "http://"+addr+"/v1/tokens", `{"card":{"number":"4000000000000036","exp_month":12,"exp_year":2031,"cvc":"123"}}`, "Authorization", "Bearer "+creds["secret_key"])
	require.Equal(t, 200, resp.StatusCode, string(body))
	var tok map[string]any
	require.NoError(t, json.Unmarshal(body, &tok))

	type answer struct {
		status int
		body   string
	}
	paid := make(chan answer, 1)
	go func() {
		resp, body := post(t, "http://"+pay+"/v1/payments", `{"token":"`+tok["token"].(string)+`","amount":1500,"currency":"USD","capture":true}`, "Authorization", "Bearer "+creds["secret_key"])
		paid <- answer{resp.StatusCode, string(body)}
	}()
	gw, err := paysqlite.Open(context.Background(), filepath.Join(dir, "gateway.db"))
	require.NoError(t, err)
	defer gw.Close()
	var id string
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		ps, err := gw.List(context.Background(), creds["merchant_id"], service.ListFilter{Status: service.StatusProcessing, Limit: 1})
		if err != nil || len(ps) == 0 {
			return errors.New("the payment is not in flight yet")
		}
		id = ps[0].ID
		return nil
	}))
	cancel() // SIGTERM
	a := <-paid
	require.NoError(t, <-done, out.String())
	assert.Equal(t, 200, a.status, a.body)
	assert.Contains(t, a.body, `"decline_code":"acquirer_timeout"`)

	p, err := gw.Get(context.Background(), creds["merchant_id"], id)
	require.NoError(t, err)
	assert.Equal(t, service.StatusFailed, p.Status)
	assert.Empty(t, p.Compensation, "the payment still owes a reversal or a hold release")
	logs := out.String()
	assert.NotContains(t, logs, "connection refused")
	assert.False(t, strings.Contains(logs, "not released") || strings.Contains(logs, "compensation not done"), "a compensation failed during the shutdown:\n%s", logs)

	ls, err := sqlite.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	require.NoError(t, err)
	defer ls.Close()
	bal, err := book.New(ls, &book.Config{}).Balances(context.Background(), creds["merchant_id"], "USD")
	require.NoError(t, err)
	assert.Zero(t, bal.Held, "the ledger still holds the drained payment")
}
