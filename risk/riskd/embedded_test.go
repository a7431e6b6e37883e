package riskd_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/riskd"
)

const reviewRules = `rules:
  - name: big-amount-review
    expression: payment.amount > 100000
    action: review
    priority: 10
`

// startEmbedded runs the embedded riskd (obol dev's) on a state file.
func startEmbedded(t *testing.T, statePath string) (riskv1.RiskServiceClient, *grpc.ClientConn, func()) {
	t.Helper()
	in, err := riskd.StartEmbedded(context.Background(), riskd.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: token, StatePath: statePath,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx) }()
	conn, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	return riskv1.NewRiskServiceClient(conn), conn, func() {
		conn.Close()
		cancel()
		assert.NoError(t, <-done)
		in.Close()
	}
}

// TestEmbeddedStateSurvivesRestart: in obol dev, rule-set versions and lists
// outlive a restart (they were in memory only, and vanished).
func TestEmbeddedStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "risk-state.json")
	c, _, stop := startEmbedded(t, path)
	def, err := c.GetRuleSet(authed(), &riskv1.GetRuleSetRequest{})
	require.NoError(t, err)
	put, err := c.PutRuleSet(authed(), &riskv1.PutRuleSetRequest{Yaml: reviewRules})
	require.NoError(t, err)
	_, err = c.AddListEntries(authed(), &riskv1.ListEntriesRequest{List: "block_ips", Values: []string{"203.0.113.9", "198.51.100.7"}})
	require.NoError(t, err)
	_, err = c.RemoveListEntries(authed(), &riskv1.ListEntriesRequest{List: "block_ips", Values: []string{"198.51.100.7"}})
	require.NoError(t, err)
	stop()

	c, _, stop = startEmbedded(t, path)
	defer stop()
	active, err := c.GetRuleSet(authed(), &riskv1.GetRuleSetRequest{})
	require.NoError(t, err)
	assert.Equal(t, put.GetVersion(), active.GetVersion(), "the rule set put before the restart is active after it")
	assert.Equal(t, reviewRules, active.GetYaml())
	hist, err := c.ListRuleSets(authed(), &riskv1.ListRuleSetsRequest{Limit: 10})
	require.NoError(t, err)
	var versions []string
	for _, r := range hist.GetRuleSets() {
		versions = append(versions, r.GetVersion())
	}
	assert.Equal(t, []string{put.GetVersion(), def.GetVersion()}, versions, "the history survives too")
	l, err := c.GetList(authed(), &riskv1.GetListRequest{List: "block_ips"})
	require.NoError(t, err)
	assert.Equal(t, []string{"203.0.113.9"}, l.GetValues())
	d, err := c.DryRun(authed(), &riskv1.EvaluateRequest{Payment: payment("fp_restart_1", "203.0.113.9", 100)})
	require.NoError(t, err)
	assert.Equal(t, "allow", d.GetAction(), "the new rule set (no blocklist rule) decides")
}

// TestEmbeddedHealth: gRPC health names obol.risk.v1.RiskService, like the
// other daemons name theirs (it was NotFound).
func TestEmbeddedHealth(t *testing.T) {
	_, conn, stop := startEmbedded(t, "")
	defer stop()
	h := healthpb.NewHealthClient(conn)
	for _, name := range []string{"", riskv1.RiskService_ServiceDesc.ServiceName} {
		r, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
		require.NoError(t, err, "service %q", name)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, r.GetStatus(), "service %q", name)
	}
}
