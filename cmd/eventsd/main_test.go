package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// TestMain doubles as eventsd for the crash test (see clitest.Main).
func TestMain(m *testing.M) { clitest.Main(m, "eventsd", run) }

const token = "events-test-token"

var sealKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))

// TestConfig: -h exits cleanly and a variable that does not parse stops
// eventsd with a message naming it (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Eventsd{}, "OBOL_EVENTSD_", []clitest.BadVar{
		{Name: "bool", Key: "OBOL_EVENTSD_GRPC_REFLECTION", Value: "on-please"},
		{Name: "duration", Key: "OBOL_WEBHOOK_TIMEOUT", Value: "soonish"},
		{Name: "integer", Key: "OBOL_WEBHOOK_CONCURRENCY", Value: "many"},
	})
}

// TestSettingsRefused: settings that parse but cannot be used stop eventsd
// with an error naming them.
func TestSettingsRefused(t *testing.T) {
	cases := []struct{ name, key, value, want string }{
		{"allowlist entry", "OBOL_WEBHOOK_ALLOW_CIDRS", "10.0.0.0/8,nope", "OBOL_WEBHOOK_ALLOW_CIDRS entry 2"},
		{"concurrency", "OBOL_WEBHOOK_CONCURRENCY", "5000", "OBOL_WEBHOOK_CONCURRENCY"},
		{"timeout", "OBOL_WEBHOOK_TIMEOUT", "5m", "OBOL_WEBHOOK_TIMEOUT"},
		{"seal key", "OBOL_EVENTS_SEAL_KEY", "c2hvcnQ=", "OBOL_EVENTS_SEAL_KEY"},
		{"CA file", "OBOL_WEBHOOK_CA", "/nonexistent/ca.pem", "OBOL_WEBHOOK_CA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.key, c.value)
			require.ErrorContains(t, run(context.Background(), nil), c.want)
		})
	}
	t.Run("no token", func(t *testing.T) {
		t.Setenv("OBOL_EVENTS_SEAL_KEY", sealKey)
		require.ErrorContains(t, run(context.Background(), []string{"--postgres-url", "postgres://127.0.0.1:1/x"}), "OBOL_EVENTS_TOKEN")
	})
	t.Run("no seal key", func(t *testing.T) {
		t.Setenv("OBOL_EVENTS_TOKEN", token)
		require.ErrorContains(t, run(context.Background(), []string{"--postgres-url", "postgres://127.0.0.1:1/x"}), "OBOL_EVENTS_SEAL_KEY")
	})
}

// TestTracingSettingRefused: a tracing setting eventsd does not understand
// stops the start with an error naming the variable.
func TestTracingSettingRefused(t *testing.T) {
	t.Setenv("OBOL_EVENTS_TOKEN", token)
	t.Setenv("OBOL_EVENTS_SEAL_KEY", sealKey)
	clitest.Tracing(t, run)
}

// TestListenerMatrix: plaintext beyond loopback is refused unless a
// TLS-terminating proxy is declared.
func TestListenerMatrix(t *testing.T) {
	d := clitest.Daemon{Vars: "OBOL_EVENTSD_", Run: run}
	if !testing.Short() {
		d.Args, d.Serving = []string{"--postgres-url", testenv.SharedPostgres(t).NewDatabase(t, "events", store.MigrateURL)}, true
	}
	t.Setenv("OBOL_EVENTS_TOKEN", token)
	t.Setenv("OBOL_EVENTS_SEAL_KEY", sealKey)
	clitest.EdgeMatrix(t, d, t.TempDir())
}

// crashReceiver is an https endpoint that verifies every delivery and
// counts them per webhook-id; it signals once it has seen trigger ones.
type crashReceiver struct {
	mu      sync.Mutex
	secret  string
	seen    map[string]int
	acked   map[string]bool // answered 204 to a live eventsd
	bodies  map[string][32]byte
	bad     []string
	total   int
	trigger int
	hit     chan struct{}
	// killed: the deliveries seen after the trigger get no answer until
	// eventsd is killed, so the kill lands in the middle of them.
	killed chan struct{}
}

func (r *crashReceiver) ServeHTTP(w http.ResponseWriter, q *http.Request) {
	body, _ := io.ReadAll(q.Body)
	id := q.Header.Get("webhook-id")
	r.mu.Lock()
	if err := webhook.Verify(r.secret, id, q.Header.Get("webhook-timestamp"), q.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, id+": "+err.Error())
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	if old, ok := r.bodies[id]; ok && old != sum {
		r.bad = append(r.bad, id+": a duplicate with another body")
	}
	r.bodies[id] = sum
	r.seen[id]++
	r.total++
	if r.total == r.trigger {
		close(r.hit)
	}
	hold := r.total > r.trigger && !r.isKilled()
	r.mu.Unlock()
	if hold {
		<-r.killed
		w.WriteHeader(http.StatusServiceUnavailable) // to a dead connection
		return
	}
	r.mu.Lock()
	r.acked[id] = true
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *crashReceiver) isKilled() bool {
	select {
	case <-r.killed:
		return true
	default:
		return false
	}
}

// TestCrashSafety SIGKILLs a real eventsd process in the middle of
// delivering a bounded load, restarts it on the same database, and checks
// that every event is delivered at least once, correctly signed, with any
// duplicate sharing its webhook-id and body, and none lost.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	const events = 600
	url := testenv.SharedPostgres(t).NewDatabase(t, "events", store.MigrateURL)
	rcv := &crashReceiver{seen: map[string]int{}, acked: map[string]bool{}, bodies: map[string][32]byte{}, trigger: events / 4, hit: make(chan struct{}), killed: make(chan struct{})}
	srv := httptest.NewTLSServer(rcv)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	grpcAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	logs := &testenv.SyncBuffer{}
	start := func() *exec.Cmd {
		return clitest.StartSelf(t, "eventsd", logs, "OBOL_EVENTS_POSTGRES_URL="+url, "OBOL_EVENTS_TOKEN="+token, "OBOL_EVENTS_SEAL_KEY="+sealKey,
			"OBOL_EVENTSD_GRPC_ADDR="+grpcAddr, "OBOL_EVENTSD_HTTP_ADDR=127.0.0.1:0", "OBOL_WEBHOOK_ALLOW_CIDRS=127.0.0.0/8", "OBOL_WEBHOOK_CA="+ca,
			"OBOL_WEBHOOK_TIMEOUT=1s", "OBOL_WEBHOOK_CONCURRENCY=16", "OBOL_LOG_FORMAT=text")
	}
	proc := start()
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	c := eventsv1.NewEventLogServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	var ep *eventsv1.WebhookEndpoint
	if err := testenv.WaitFor(20*time.Second, func() error {
		ep, err = c.CreateWebhookEndpoint(ctx, &eventsv1.EventLogCreateWebhookEndpointRequest{MerchantId: "m1",
			Request: &eventsv1.CreateWebhookEndpointRequest{Url: srv.URL + "/hook", Events: []string{"*"}}})
		return err
	}); err != nil {
		t.Fatalf("eventsd did not come up: %v\n%s", err, logs.String())
	}
	rcv.mu.Lock()
	rcv.secret = ep.Secret
	rcv.mu.Unlock()
	for b := 0; b < events; b += 100 {
		var evs []*eventsv1.PublishedEvent
		for i := b; i < b+100; i++ {
			evs = append(evs, &eventsv1.PublishedEvent{Id: fmt.Sprintf("evt_crash_%04d", i), Type: "payment.authorized", MerchantId: "m1", CreatedAt: timestamppb.Now(),
				ObjectType: "payment", ObjectId: fmt.Sprintf("pay_%04d", i), ObjectVersion: 1, Data: []byte(fmt.Sprintf(`{"id":"pay_%04d","amount":%d}`, i, 100+i))})
		}
		_, err := c.PublishEvents(ctx, &eventsv1.PublishEventsRequest{Events: evs})
		require.NoError(t, err)
	}
	select {
	case <-rcv.hit:
	case <-time.After(60 * time.Second):
		t.Fatalf("no deliveries:\n%s", logs.String())
	}
	// Wait until eventsd has a full set of deliveries in flight (held by the
	// receiver), then kill it.
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if rcv.total < rcv.trigger+16 {
			return fmt.Errorf("%d in flight", rcv.total-rcv.trigger)
		}
		return nil
	}))
	require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
	_ = proc.Wait()
	close(rcv.killed)
	rcv.mu.Lock()
	atKill := len(rcv.seen)
	rcv.mu.Unlock()
	proc = start()
	if err := testenv.WaitFor(90*time.Second, func() error {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if len(rcv.acked) < events {
			return fmt.Errorf("%d of %d events delivered", len(rcv.acked), events)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Empty(t, rcv.bad)
	dups := 0
	for i := range events {
		n := rcv.seen[fmt.Sprintf("evt_crash_%04d", i)]
		require.GreaterOrEqual(t, n, 1, "event %d lost", i)
		dups += n - 1
	}
	assert.Len(t, rcv.seen, events, "only the published events")
	assert.GreaterOrEqual(t, dups, 16, "the deliveries in flight at the kill are delivered again")
	t.Logf("SIGKILL after %d distinct deliveries; all %d delivered after the restart, %d duplicates (same webhook-id and body)", atKill, events, dups)
}
