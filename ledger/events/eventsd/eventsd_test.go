package eventsd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/eventsd"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "events-test-token"

// start runs an embedded (SQLite, obol dev) eventsd and returns a client.
func start(t *testing.T) (eventsv1.EventLogServiceClient, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in, err := eventsd.Start(ctx, eventsd.Config{SQLitePath: filepath.Join(t.TempDir(), "events.db"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Token: token, SealKey: bytes.Repeat([]byte{7}, 32), DevLoopback: true})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		in.Close()
	})
	conn, err := grpc.NewClient(in.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return eventsv1.NewEventLogServiceClient(conn), metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// nodeReceiver starts testdata/receiver.js (the official standardwebhooks
// library) on a free loopback port with the given secrets.
func nodeReceiver(t *testing.T, port int, secrets ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs node with the standardwebhooks npm package")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is required (apt-get install nodejs npm; test.sh installs it)")
	}
	out, err := exec.Command("../../../deploy/scripts/standardwebhooks.sh").Output()
	require.NoError(t, err, "installing standardwebhooks")
	dir := strings.TrimSpace(string(out))
	cmd := exec.Command("node", "testdata/receiver.js")
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"), "PORT="+strconv.Itoa(port), "SECRETS="+strings.Join(secrets, ","))
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		_, err := results(base)
		return err
	}))
	return base
}

type result struct {
	ID, Error, Type string
	OK              bool
}

func results(base string) ([]result, error) {
	resp, err := http.Get(base + "/results")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rs []result
	return rs, json.NewDecoder(resp.Body).Decode(&rs)
}

// TestOfficialLibraryVerifiesDeliveries: a receiver built on the official
// standardwebhooks npm package verifies every delivery (signed with both
// secrets during a rotation's overlap), and rejects a tampered body, a
// wrong secret and an old timestamp.
func TestOfficialLibraryVerifiesDeliveries(t *testing.T) {
	client, ctx := start(t)
	port := testenv.FreePort(t)
	ep, err := client.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1",
		Request: &eventsv1.CreateWebhookEndpointRequest{Url: fmt.Sprintf("http://127.0.0.1:%d/hook", port), Events: []string{"*"}}})
	require.NoError(t, err)
	rot, err := client.RotateWebhookEndpointSecret(ctx, &eventsv1.EventLogRotateWebhookEndpointSecretRequest{MerchantId: "m1",
		Request: &eventsv1.RotateWebhookEndpointSecretRequest{Id: ep.Id, OverlapSeconds: proto.Int64(3600)}})
	require.NoError(t, err)
	base := nodeReceiver(t, port, ep.Secret, rot.Secret)

	const n = 20
	var evs []*eventsv1.PublishedEvent
	for i := range n {
		evs = append(evs, &eventsv1.PublishedEvent{Id: fmt.Sprintf("evt_node_%d", i), Type: "payment.captured", MerchantId: "m1", CreatedAt: timestamppb.Now(),
			ObjectType: "payment", ObjectId: fmt.Sprintf("pay_%d", i), ObjectVersion: 2, Data: []byte(fmt.Sprintf(`{"id":"pay_%d","amount":%d,"note":"ünïcode"}`, i, 1000+i))})
	}
	_, err = client.PublishEvents(ctx, &eventsv1.PublishEventsRequest{Events: evs})
	require.NoError(t, err)
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		rs, err := results(base)
		if err != nil {
			return err
		}
		if len(rs) < n {
			return fmt.Errorf("%d of %d delivered", len(rs), n)
		}
		return nil
	}))
	rs, err := results(base)
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, r := range rs {
		assert.True(t, r.OK, "%s: %s", r.ID, r.Error)
		assert.Equal(t, "payment.captured", r.Type)
		ids[r.ID] = true
	}
	assert.Len(t, ids, n)

	key, err := webhook.SecretKey(rot.Secret)
	require.NoError(t, err)
	oldKey, _ := webhook.SecretKey(ep.Secret)
	wrong, _ := webhook.SecretKey(webhook.NewSecret())
	body := []byte(`{"id":"evt_x","type":"payment.captured","data":{}}`)
	now := time.Now()
	cases := []struct {
		name   string
		ts     time.Time
		keys   [][]byte
		body   []byte
		status int
	}{
		{"valid", now, [][]byte{key, oldKey}, body, 204},
		{"tampered body", now, [][]byte{key, oldKey}, []byte(`{"id":"evt_x","type":"payment.captured","data":{"amount":1}}`), 400},
		{"wrong secret", now, [][]byte{wrong}, body, 400},
		{"old timestamp", now.Add(-10 * time.Minute), [][]byte{key, oldKey}, body, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+"/hook", bytes.NewReader(c.body))
			require.NoError(t, err)
			req.Header.Set("webhook-id", "evt_x")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(c.ts.Unix(), 10))
			req.Header.Set("webhook-signature", webhook.SignatureHeader(c.keys, "evt_x", c.ts, body))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, c.status, resp.StatusCode)
		})
	}
}
