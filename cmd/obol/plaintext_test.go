package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVerbsRefusePlaintextBeyondLoopback: a verb that dials a daemon
// (obol ledger, obol events) without the daemon's CA spoke plaintext gRPC to
// any address, sending the ledger's service token or the merchant's secret
// key in clear across the network (an operator who forgot OBOL_LEDGER_CA).
// Plaintext is for loopback only, as the daemons' own listeners: beyond it
// the verb refuses before dialling, naming the CA flag.
func TestVerbsRefusePlaintextBeyondLoopback(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"ledger verb to a remote ledgerd", []string{"ledger", "balances", "--merchant", "mer_x", "--ledger-addr", "ledgerd.example.internal:9092"}, map[string]string{"OBOL_LEDGER_TOKEN": "t"}, "--ledger-ca"},
		{"ledger verb to a remote IP", []string{"ledger", "balances", "--merchant", "mer_x"}, map[string]string{"OBOL_LEDGER_TOKEN": "t", "OBOL_LEDGER_ADDR": "10.1.2.3:9092"}, "--ledger-ca"},
		{"events verb to a remote gatewayd", []string{"events", "list", "--gateway-addr", "gatewayd.example.internal:9093"}, map[string]string{"OBOL_SECRET_KEY": "sk_test_x"}, "--gateway-ca"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OBOL_LEDGER_TOKEN", "OBOL_LEDGER_ADDR", "OBOL_LEDGER_CA", "OBOL_SECRET_KEY", "OBOL_GATEWAY_ADDR", "OBOL_GATEWAY_CA"} {
				t.Setenv(k, tt.env[k])
			}
			err := run(context.Background(), append(tt.args, "--data-dir", t.TempDir()), &bytes.Buffer{})
			require.ErrorIs(t, err, errPlaintextRemote)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	t.Run("loopback without a CA is allowed (dev)", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:1", "localhost:1", "[::1]:1"} {
			_, err := (tlsFiles{caFlag: "--ledger-ca"}).credentials(addr)
			assert.NoError(t, err, addr)
		}
	})
}
