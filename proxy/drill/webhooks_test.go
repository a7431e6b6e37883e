package drill

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/deploy/topology"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
)

// webhooks is the merchant's webhook receiver on the topology: an HTTPS
// endpoint (certificate of the topology's CA) registered for every event
// type, recording each delivery by its webhook-id. Standard Webhooks
// delivery is at least once: a webhook-id may come again (a crashed
// eventsd's lease runs out, a lost answer), always with the same body; an
// event of the log that never arrives is lost.
type webhooks struct {
	srv      *httptest.Server
	endpoint string

	mu     sync.Mutex
	got    map[string]int    // deliveries by webhook-id
	body   map[string]string // sha256 of the first body by webhook-id
	differ map[string]bool   // a redelivery with another body
}

// startWebhooks starts the receiver and registers it through the gateway
// (retrying a 503 while a replica starts).
func startWebhooks(tp *topology.Topology, s *stack) (*webhooks, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(filepath.Dir(tp.CACert), devpki.ServerCert), filepath.Join(filepath.Dir(tp.CACert), devpki.ServerKey))
	if err != nil {
		return nil, err
	}
	w := &webhooks{got: map[string]int{}, body: map[string]string{}, differ: map[string]bool{}}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	w.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	w.srv.StartTLS()
	body := fmt.Sprintf(`{"url":%q,"events":["*"],"description":"topology drills"}`, w.srv.URL+"/hook")
	var last string
	err = testenv.WaitFor(60*time.Second, func() error {
		req, err := http.NewRequest(http.MethodPost, s.gwURL+"/v1/webhook_endpoints", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+s.sk)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = fmt.Sprintf("HTTP %d %.300s", resp.StatusCode, b)
		if resp.StatusCode != http.StatusOK {
			return errors.New(last)
		}
		var e struct{ ID string }
		if err := json.Unmarshal(b, &e); err != nil || e.ID == "" {
			return fmt.Errorf("no endpoint id in %s", last)
		}
		w.endpoint = e.ID
		return nil
	})
	if err != nil {
		w.srv.Close()
		return nil, fmt.Errorf("register the webhook endpoint: %w (%s)", err, last)
	}
	return w, nil
}

func (w *webhooks) serve(rw http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	id := r.Header.Get("webhook-id")
	if err != nil || id == "" {
		http.Error(rw, "bad delivery", http.StatusBadRequest)
		return
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(b))
	w.mu.Lock()
	w.got[id]++
	if prev, ok := w.body[id]; !ok {
		w.body[id] = sum
	} else if prev != sum {
		w.differ[id] = true
	}
	w.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
}

func (w *webhooks) close() { w.srv.Close() }

// logEvent is one event of eventsd's log.
type logEvent struct{ id, typ, object string }

// pollDB is a connection to one database, opened on first use and again
// after a failure (a drill may have failed the database over).
type pollDB struct {
	url  string
	conn *pgx.Conn
}

func (d *pollDB) get(ctx context.Context) (*pgx.Conn, error) {
	if d.conn != nil {
		return d.conn, nil
	}
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return nil, err
	}
	d.conn = conn
	return conn, nil
}

// failed drops the connection after err (nil: kept).
func (d *pollDB) failed(ctx context.Context, err error) error {
	if err != nil && d.conn != nil {
		d.conn.Close(ctx)
		d.conn = nil
	}
	return err
}

func (d *pollDB) close(ctx context.Context) {
	if d.conn != nil {
		d.conn.Close(ctx)
		d.conn = nil
	}
}

// eventLog is the merchant's events in eventsd's database.
func eventLog(ctx context.Context, db *pollDB, merchant string) (map[string]logEvent, error) {
	conn, err := db.get(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]logEvent{}
	rows, err := conn.Query(ctx, `SELECT id, type, object_id FROM events WHERE merchant_id = $1`, merchant)
	if err != nil {
		return nil, db.failed(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e logEvent
		if err := rows.Scan(&e.id, &e.typ, &e.object); err != nil {
			return nil, db.failed(ctx, err)
		}
		out[e.id] = e
	}
	return out, db.failed(ctx, rows.Err())
}

// producers are the databases whose event outboxes feed eventsd: the
// gateway's (column state) and the ledger's (column status).
type producers struct{ gateway, ledger *pollDB }

func newProducers(tp *topology.Topology) producers {
	return producers{gateway: &pollDB{url: tp.PostgresURLs["gateway"]}, ledger: &pollDB{url: tp.PostgresURLs["ledger"]}}
}

func (p producers) close(ctx context.Context) { p.gateway.close(ctx); p.ledger.close(ctx) }

// undelivered counts the merchant's events still pending in the
// producers' outboxes (backing off while eventsd was unavailable: they
// reach the log later) and lists the dead ones (eventsd refused them).
func (p producers) undelivered(ctx context.Context, merchant string) (pending int64, dead []string, err error) {
	for _, q := range []struct {
		db  *pollDB
		col string
	}{{p.gateway, "state"}, {p.ledger, "status"}} {
		conn, err := q.db.get(ctx)
		if err != nil {
			return 0, nil, err
		}
		rows, err := conn.Query(ctx, `SELECT id, `+q.col+` FROM event_outbox WHERE merchant_id = $1 AND `+q.col+` IN ('pending', 'dead')`, merchant)
		if err != nil {
			return 0, nil, q.db.failed(ctx, err)
		}
		for rows.Next() {
			var id, state string
			if err := rows.Scan(&id, &state); err != nil {
				rows.Close()
				return 0, nil, q.db.failed(ctx, err)
			}
			if state == "pending" {
				pending++
			} else {
				dead = append(dead, id)
			}
		}
		rows.Close()
		if err := q.db.failed(ctx, rows.Err()); err != nil {
			return 0, nil, err
		}
	}
	return pending, dead, nil
}

// webhookCheck wraps a drill's check: before the load it notes the events
// already in the log and the dead ones in the producers' outboxes; after,
// once the outboxes hold none of the merchant's events pending (an event
// whose relay met eventsd down backs off before it reaches the log), every
// event the drill added must have reached the receiver (none lost),
// redeliveries must carry the same body, none may have gone dead in an
// outbox, and each payment must have exactly one payment.authorized and
// payment.captured event in the log. Duplicated deliveries are counted
// (allowed by webhook-id).
func webhookCheck(w *webhooks, tp *topology.Topology, d drill) drill {
	var before map[string]logEvent
	deadBefore := map[string]bool{}
	setup := d.setup
	d.setup = func(s *stack) error {
		ctx := context.Background()
		events, prod := &pollDB{url: tp.PostgresURLs["events"]}, newProducers(tp)
		defer events.close(ctx)
		defer prod.close(ctx)
		var err error
		if before, err = eventLog(ctx, events, tp.MerchantID); err != nil {
			return fmt.Errorf("read the event log: %w", err)
		}
		_, dead, err := prod.undelivered(ctx, tp.MerchantID)
		if err != nil {
			return fmt.Errorf("read the producers' event outboxes: %w", err)
		}
		for _, id := range dead {
			deadBefore[id] = true
		}
		if setup != nil {
			return setup(s)
		}
		return nil
	}
	check := d.check
	d.check = func(s *stack, c *census, flows []flow) []string {
		var v []string
		if check != nil {
			v = append(v, check(s, c, flows)...)
		}
		ctx := context.Background()
		events, prod := &pollDB{url: tp.PostgresURLs["events"]}, newProducers(tp)
		defer events.close(ctx)
		defer prod.close(ctx)
		var added map[string]logEvent
		var missing, newDead []string
		var pending int64
		firstPending := int64(-1) // at the first poll that read the outboxes (-1: none did)
		waited := time.Now()
		err := testenv.WaitFor(90*time.Second, func() error {
			p, dead, err := prod.undelivered(ctx, tp.MerchantID)
			if err != nil {
				return err
			}
			all, err := eventLog(ctx, events, tp.MerchantID)
			if err != nil {
				return err
			}
			pending, newDead = p, newDead[:0]
			if firstPending < 0 {
				firstPending = p
			}
			for _, id := range dead {
				if !deadBefore[id] {
					newDead = append(newDead, id)
				}
			}
			added = map[string]logEvent{}
			for id, e := range all {
				if _, ok := before[id]; !ok {
					added[id] = e
				}
			}
			w.mu.Lock()
			missing = missing[:0]
			for id := range added {
				if w.got[id] == 0 {
					missing = append(missing, id)
				}
			}
			w.mu.Unlock()
			switch {
			case pending > 0:
				return fmt.Errorf("%d events still pending in the producers' outboxes", pending)
			case len(missing) > 0:
				return fmt.Errorf("%d of %d events not delivered yet", len(missing), len(added))
			}
			return nil
		})
		if err != nil {
			sort.Strings(missing)
			msg := fmt.Sprintf("webhooks: %v", err)
			if len(missing) > 0 {
				msg += fmt.Sprintf(" (in the log, not delivered: %d, e.g. %s)", len(missing), strings.Join(missing[:min(len(missing), 3)], ", "))
			}
			v = append(v, msg)
		}
		if len(newDead) > 0 {
			sort.Strings(newDead)
			v = append(v, fmt.Sprintf("webhooks: %d events went dead in the producers' outboxes (eventsd refused them), e.g. %s", len(newDead), strings.Join(newDead[:min(len(newDead), 3)], ", ")))
		}
		types := map[string]int{}
		byPayment := map[string]map[string]int{}
		for _, e := range added {
			types[e.typ]++
			if byPayment[e.object] == nil {
				byPayment[e.object] = map[string]int{}
			}
			byPayment[e.object][e.typ]++
		}
		w.mu.Lock()
		deliveries, dups, differ := 0, 0, 0
		for id := range added {
			deliveries += w.got[id]
			if w.got[id] > 1 {
				dups += w.got[id] - 1
			}
			if w.differ[id] {
				differ++
			}
		}
		w.mu.Unlock()
		refunds := 0
		for _, f := range flows {
			if f.ans[3].label == want[3] {
				refunds++
			}
			if f.paymentID == "" {
				continue
			}
			got := byPayment[f.paymentID]
			if got["payment.authorized"] != 1 || got["payment.captured"] != 1 {
				v = append(v, fmt.Sprintf("webhooks: payment %s has %d payment.authorized and %d payment.captured event(s), want 1 each", f.paymentID, got["payment.authorized"], got["payment.captured"]))
			}
		}
		if types["refund.created"] != refunds {
			v = append(v, fmt.Sprintf("webhooks: %d refund.created events for %d refunds", types["refund.created"], refunds))
		}
		if differ > 0 {
			v = append(v, fmt.Sprintf("webhooks: %d webhook-id(s) delivered again with another body", differ))
		}
		var tl []string
		for t, n := range types {
			tl = append(tl, fmt.Sprintf("%s ×%d", t, n))
		}
		sort.Strings(tl)
		pendingAt := "unknown"
		if firstPending >= 0 {
			pendingAt = strconv.FormatInt(firstPending, 10)
		}
		reached := "every event at least once after"
		if err != nil {
			reached = "not every event, waited"
		}
		s.note("webhooks: %d events added to the log (%s), %s of the merchant's still pending in the producers' outboxes when the check began; %d deliveries received, %s %s; %d redelivered webhook-id(s) (same body: receivers dedupe on webhook-id)",
			len(added), strings.Join(tl, ", "), pendingAt, deliveries, reached, time.Since(waited).Round(100*time.Millisecond), dups)
		return v
	}
	return d
}
