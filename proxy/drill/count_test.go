package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/reconcile"
	"github.com/obolpay/obol/proxy/simulator"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
)

// side is one party's totals: the acquirer simulator, the gateway's
// database or the ledger's journal.
type side struct {
	payments, authorizations, captures, refunds, voids int
	captured, refunded                                 int64
}

// view is one party's view of one payment.
type view struct {
	rows               int // gateway rows, acquirer authorizations, ledger authorize transactions
	approved           int // acquirer: approved authorizations (not reversed, declined or canceled)
	captures, refunds  int
	voids              int // acquirer reversals/cancels, gateway failed/canceled, ledger cancels
	captured, refunded int64
	status             string // gateway status, acquirer status, ledger hold status
	token              string // gateway: the payment's token
	noCVC              int    // acquirer: authorizations sent without a CVC
}

// census is what the three parties hold after a drill.
type census struct {
	acq, gw, led          side
	acqBy, gwBy, ledBy    map[string]*view // by gateway payment id
	keyPayments           map[string][]string
	left                  leftovers
	verifyOK              bool
	verify                string
	reconcile             *reconcile.Report
	reconcileErr          error
	acqErr, gwErr, ledErr error
	// The vault's side: the merchant's tokens, and the token each tokenize
	// idempotency record answers with (count per token).
	tokens, idemTokens map[string]int
	vaultErr           error
}

// leftovers is what the gateway still has to resolve: payments and
// operations processing, compensations owed, and ledger outbox entries
// (pending or dead). The columns and tables that a schema does not have
// count as zero.
type leftovers struct {
	processing, operations, compensations, outbox, dead int
	outboxIDs                                           string
}

func (l leftovers) zero() bool { return l.settled() && l.outbox == 0 }

// settled: nothing the sweeper will still change (dead outbox entries wait
// for an operator).
func (l leftovers) settled() bool {
	return l.processing == 0 && l.operations == 0 && l.compensations == 0 && l.outbox == l.dead
}

func (l leftovers) String() string {
	return fmt.Sprintf("processing payments %d, processing operations %d, compensations owed %d; outbox entries %d (dead %d)",
		l.processing, l.operations, l.compensations, l.outbox, l.dead)
}

func hasColumn(ctx context.Context, conn *pgx.Conn, table, column string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)`, table, column).Scan(&ok)
	return ok, err
}

func (s *stack) leftovers(ctx context.Context) (leftovers, error) {
	var l leftovers
	conn, err := pgx.Connect(ctx, s.gwDB)
	if err != nil {
		return l, err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM payments WHERE status = 'processing'`).Scan(&l.processing); err != nil {
		return l, err
	}
	if ok, err := hasColumn(ctx, conn, "payment_operations", "state"); err != nil {
		return l, err
	} else if ok {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM payment_operations WHERE state = 'processing'`).Scan(&l.operations); err != nil {
			return l, err
		}
	}
	if ok, err := hasColumn(ctx, conn, "payments", "compensation"); err != nil {
		return l, err
	} else if ok {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM payments WHERE compensation <> ''`).Scan(&l.compensations); err != nil {
			return l, err
		}
	}
	state := `'pending'`
	if ok, err := hasColumn(ctx, conn, "ledger_outbox", "state"); err != nil {
		return l, err
	} else if ok {
		state = "state"
	}
	rows, err := conn.Query(ctx, `SELECT id, attempts, `+state+` FROM ledger_outbox ORDER BY id`)
	if err != nil {
		return l, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id, st string
		var attempts int64
		if err := rows.Scan(&id, &attempts, &st); err != nil {
			return l, err
		}
		if len(ids) < 4 {
			ids = append(ids, fmt.Sprintf("%s (%s, %d attempts)", id, st, attempts))
		}
		l.outbox++
		if st == "dead" {
			l.dead++
		}
	}
	l.outboxIDs = strings.Join(ids, ", ")
	return l, rows.Err()
}

// count reads the three parties (and the vault's tokens), leaving out what
// s.before holds: the records of earlier drills on the same deployment.
// full also runs obol ledger verify and the reconciliation.
func (s *stack) count(ctx context.Context, full bool) *census {
	c := &census{acqBy: map[string]*view{}, gwBy: map[string]*view{}, ledBy: map[string]*view{}, keyPayments: map[string][]string{}}
	get := func(m map[string]*view, id string) *view {
		if m[id] == nil {
			m[id] = &view{}
		}
		return m[id]
	}
	c.gwErr = s.countGateway(ctx, c, get)
	if c.gwErr == nil {
		c.left, c.gwErr = s.leftovers(ctx)
	}
	c.acqErr = s.countAcquirer(ctx, c, get)
	c.ledErr = s.countLedger(ctx, c, get)
	c.vaultErr = s.countVault(ctx, c)
	c.exclude(s.before)
	c.acq, c.gw, c.led = total(c.acqBy, false), total(c.gwBy, false), total(c.ledBy, true)
	if !full {
		return c
	}

	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c.reconcile, c.reconcileErr = s.reconcile(vctx)
	out, err := exec.CommandContext(vctx, s.obol, "ledger", "verify", "--postgres-url", s.ledgerDB).CombinedOutput()
	c.verifyOK, c.verify = err == nil, strings.TrimSpace(string(out))
	if err != nil && c.verify == "" {
		c.verify = err.Error()
	}
	return c
}

// exclude drops the payments and tokens that before holds (nil: none).
func (c *census) exclude(before *census) {
	if before == nil {
		return
	}
	for _, pair := range [][2]map[string]*view{{c.acqBy, before.acqBy}, {c.gwBy, before.gwBy}, {c.ledBy, before.ledBy}} {
		for id := range pair[1] {
			delete(pair[0], id)
		}
	}
	for k := range before.keyPayments {
		delete(c.keyPayments, k)
	}
	for tok := range before.tokens {
		delete(c.tokens, tok)
	}
	for tok := range before.idemTokens {
		delete(c.idemTokens, tok)
	}
}

// total sums one party's views. The ledger's authorizations are its
// authorize transactions (rows); the others' are the approved ones.
func total(by map[string]*view, ledger bool) side {
	t := side{payments: len(by)}
	for _, v := range by {
		if ledger {
			t.authorizations += v.rows
		} else {
			t.authorizations += v.approved
		}
		t.captures += v.captures
		t.refunds += v.refunds
		t.voids += v.voids
		t.captured += v.captured
		t.refunded += v.refunded
	}
	return t
}

// reconcile runs the gateway↔ledger reconciliation (proxy/reconcile): the
// gateway's store read-only, the ledger over gRPC with mTLS.
func (s *stack) reconcile(ctx context.Context) (*reconcile.Report, error) {
	gw, err := paypg.OpenReadOnly(ctx, s.gwDB)
	if err != nil {
		return nil, err
	}
	defer gw.Close()
	tc, err := s.ledgerTLS()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(s.ledgerGRPC, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return reconcile.Run(ctx, gw, ledgerv1.NewLedgerServiceClient(conn), reconcile.Options{LedgerToken: s.ledgerToken})
}

func (s *stack) countGateway(ctx context.Context, c *census, get func(map[string]*view, string) *view) error {
	conn, err := pgx.Connect(ctx, s.gwDB)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, status, amount_captured, amount_refunded, refunds, metadata, acquirer_reference, token FROM payments`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, status, refunds, meta, ref, token string
		var captured, refunded int64
		if err := rows.Scan(&id, &status, &captured, &refunded, &refunds, &meta, &ref, &token); err != nil {
			rows.Close()
			return err
		}
		var rs []json.RawMessage
		_ = json.Unmarshal([]byte(refunds), &rs)
		var md map[string]string
		_ = json.Unmarshal([]byte(meta), &md)
		if k := md["drill_key"]; k != "" {
			c.keyPayments[k] = append(c.keyPayments[k], id)
		}
		v := get(c.gwBy, id)
		v.rows++
		v.status, v.captured, v.refunded, v.refunds, v.token = status, captured, refunded, len(rs), token
		switch status {
		case "authorized", "captured", "partially_refunded", "refunded":
			v.approved++
		case "failed", "canceled":
			v.voids++
		}
		if captured > 0 {
			v.captures++
		}
	}
	rows.Close()
	return rows.Err()
}

func (s *stack) countAcquirer(ctx context.Context, c *census, get func(map[string]*view, string) *view) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.simURL+"/v1/authorizations", nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulator list: HTTP %d", resp.StatusCode)
	}
	var l simulator.Listing
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return err
	}
	for _, a := range l.Authorizations {
		v := get(c.acqBy, a.Reference)
		v.rows++
		v.status = a.Status
		switch a.Status {
		case "approved":
			v.approved++
		case "reversed", "canceled":
			v.voids++
		}
		if a.Captured > 0 {
			v.captures++
		}
		v.captured += a.Captured
		v.refunded += a.Refunded
		v.refunds += a.RefundCount
		if !a.CVCProvided {
			v.noCVC++
		}
	}
	return nil
}

func (s *stack) countLedger(ctx context.Context, c *census, get func(map[string]*view, string) *view) error {
	conn, err := pgx.Connect(ctx, s.ledgerDB)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT t.metadata->>'type', t.metadata->>'payment_id', coalesce(t.metadata->>'amount', '0'),
		       coalesce((SELECT sum(p.amount) FROM postings p WHERE p.seq = t.seq AND p.amount > 0 AND p.account_id LIKE 'platform:%:refunds'), 0),
		       coalesce((SELECT pt.status FROM pending_transfers pt WHERE pt.id = t.id), '')
		  FROM transactions t WHERE t.metadata ? 'payment_id' ORDER BY t.seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var typ, pay, amount, hold string
		var refunded int64
		if err := rows.Scan(&typ, &pay, &amount, &refunded, &hold); err != nil {
			return err
		}
		v := get(c.ledBy, pay)
		switch typ {
		case "authorization":
			v.rows++
			v.status = hold
		case "capture":
			var n int64
			_, _ = fmt.Sscan(amount, &n)
			v.captures++
			v.captured += n
		case "refund":
			v.refunds++
			v.refunded += refunded
		case "cancel":
			v.voids++
		}
	}
	return rows.Err()
}

// countVault reads the drill merchant's tokens and tokenize idempotency
// records from the vault's database (the records' answers are the Token
// messages a retry replays).
func (s *stack) countVault(ctx context.Context, c *census) error {
	c.tokens, c.idemTokens = map[string]int{}, map[string]int{}
	conn, err := pgx.Connect(ctx, s.vaultDB)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT token FROM tokens WHERE merchant_id = $1`, s.merchant)
	if err != nil {
		return err
	}
	for rows.Next() {
		var tok string
		if err := rows.Scan(&tok); err != nil {
			rows.Close()
			return err
		}
		c.tokens[tok]++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = conn.Query(ctx, `SELECT response FROM idempotency_keys WHERE merchant_id = $1 AND operation = 'tokenize'`, s.merchant)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return err
		}
		var tok vaultv1.Token
		if err := proto.Unmarshal(b, &tok); err != nil {
			return fmt.Errorf("a tokenize idempotency record does not decode: %w", err)
		}
		c.idemTokens[tok.GetToken()]++
	}
	return rows.Err()
}

// flow is one payment of the load: four writes (tokenize, authorize,
// capture, refund), each with its own key.
type flow struct {
	key            string
	amount, refund int64
	token          string
	paymentID      string
	ans            [4]answer
}

var opNames = [4]string{"tokenize", "authorize", "capture", "refund"}

// want is what every flow must end as.
var want = [4]string{"200 tokenized", "200 authorized", "200 captured", "200 partially_refunded"}

// violations checks the invariants: per key exactly one payment,
// authorization, capture and refund at each party with the right amounts
// and final answers; equal totals; ledger verify clean; nothing processing
// and no outbox entry left after the sweeper's interval.
func (c *census) violations(flows []flow) []string {
	var v, perKey []string
	add := func(format string, a ...any) { v = append(v, fmt.Sprintf(format, a...)) }
	for _, err := range []error{c.acqErr, c.gwErr, c.ledErr, c.vaultErr} {
		if err != nil {
			add("counting failed: %v", err)
		}
	}
	key := func(format string, a ...any) { perKey = append(perKey, fmt.Sprintf(format, a...)) }
	known, tokensOfKeys := map[string]bool{}, map[string]bool{}
	var wantCaptured, wantRefunded int64
	for _, f := range flows {
		wantCaptured += f.amount
		wantRefunded += f.refund
		for i, a := range f.ans {
			if a.label != want[i] {
				key("%s: %s answered %q after %d attempt(s), want %q", f.key, opNames[i], a.label, a.attempts, want[i])
			}
		}
		if f.token != "" {
			if c.tokens[f.token] != 1 || c.idemTokens[f.token] != 1 {
				key("%s: token %s: %d in the vault, %d tokenize idempotency record(s), want 1 and 1", f.key, f.token, c.tokens[f.token], c.idemTokens[f.token])
			}
			tokensOfKeys[f.token] = true
		}
		ids := c.keyPayments[f.key]
		if len(ids) != 1 {
			key("%s: %d gateway payments, want 1", f.key, len(ids))
			continue
		}
		id := ids[0]
		known[id] = true
		check := func(party string, got *view, status string, rows, approved int) {
			if got == nil {
				key("%s (%s): nothing at the %s", f.key, id, party)
				return
			}
			switch {
			case got.rows != rows || got.approved != approved:
				key("%s (%s): %s has %d record(s), %d approved, want %d and %d", f.key, id, party, got.rows, got.approved, rows, approved)
			case got.captures != 1 || got.captured != f.amount:
				key("%s (%s): %s has %d capture(s) totalling %d, want 1 of %d", f.key, id, party, got.captures, got.captured, f.amount)
			case got.refunds != 1 || got.refunded != f.refund:
				key("%s (%s): %s has %d refund(s) totalling %d, want 1 of %d", f.key, id, party, got.refunds, got.refunded, f.refund)
			case got.voids != 0:
				key("%s (%s): %s has %d void(s)/reversal(s)", f.key, id, party, got.voids)
			case got.status != status:
				key("%s (%s): %s status %q, want %q", f.key, id, party, got.status, status)
			}
		}
		if g := c.gwBy[id]; g != nil && g.token != f.token {
			key("%s (%s): the gateway's payment is by token %q, the key's token is %q", f.key, id, g.token, f.token)
		}
		check("acquirer", c.acqBy[id], "approved", 1, 1)
		check("gateway", c.gwBy[id], "partially_refunded", 1, 1)
		check("ledger", c.ledBy[id], "posted", 1, 0)
	}
	for name, m := range map[string]map[string]*view{"acquirer": c.acqBy, "gateway": c.gwBy, "ledger": c.ledBy} {
		var extra []string
		for id := range m {
			if !known[id] {
				extra = append(extra, id)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			add("%s: %d record(s) of no drill key: %s", name, len(extra), strings.Join(extra[:min(len(extra), 3)], ", "))
		}
	}
	if c.vaultErr == nil {
		var extra []string
		for tok := range c.tokens {
			if !tokensOfKeys[tok] {
				extra = append(extra, tok)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			add("vault: %d token(s) of no drill key (a tokenize made twice?): %s", len(extra), strings.Join(extra[:min(len(extra), 3)], ", "))
		}
		if n := sumCounts(c.idemTokens); n != len(tokensOfKeys) {
			add("vault: %d tokenize idempotency record(s), want %d (one per key)", n, len(tokensOfKeys))
		}
	}
	for _, t := range []struct {
		what         string
		acq, gw, led int64
		want         int64
	}{{"captured total", c.acq.captured, c.gw.captured, c.led.captured, wantCaptured}, {"refunded total", c.acq.refunded, c.gw.refunded, c.led.refunded, wantRefunded}} {
		if t.acq != t.want || t.gw != t.want || t.led != t.want {
			add("%s: acquirer %d, gateway %d, ledger %d, want %d each", t.what, t.acq, t.gw, t.led, t.want)
		}
	}
	if !c.verifyOK {
		add("obol ledger verify: %s", c.verify)
	}
	switch {
	case c.reconcileErr != nil:
		add("reconciliation failed: %v", c.reconcileErr)
	case len(c.reconcile.Differences) > 0:
		for i, d := range c.reconcile.Differences {
			if i == 5 {
				add("reconciliation: … %d difference(s) in all", len(c.reconcile.Differences))
				break
			}
			add("reconciliation: %s", d)
		}
	}
	if !c.left.zero() {
		add("left after the sweeper's interval: %s %s", c.left, c.left.outboxIDs)
	}
	return append(v, perKey...)
}

// noCVC is how many of the drill's acquirer authorizations carried no CVC.
func (c *census) noCVC() int {
	n := 0
	for _, v := range c.acqBy {
		n += v.noCVC
	}
	return n
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// table is the drill's one-table summary.
func (c *census) table(title string, l *load, flows []flow, faults, timings, recoveries []string, v []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== drill %s\n", title)
	for _, f := range faults {
		fmt.Fprintf(&b, "fault: %s\n", f)
	}
	l.mu.Lock()
	fmt.Fprintf(&b, "payments %d (%d clients); requests %d = %d first attempts + %d retries; took %s\n", len(flows), clients, l.requests, l.requests-l.retries, l.retries, strings.Join(timings, ", "))
	l.mu.Unlock()
	finals := map[string]int{}
	for _, f := range flows {
		for i, a := range f.ans {
			finals[opNames[i]+" "+a.label]++
		}
	}
	var fl []string
	for k, n := range finals {
		fl = append(fl, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(fl)
	fmt.Fprintf(&b, "final answers: %s\n", strings.Join(fl, "; "))
	fmt.Fprintf(&b, "attempts by answer:\n")
	for _, line := range l.outcomeLines() {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	var wc, wr int64
	for _, f := range flows {
		wc += f.amount
		wr += f.refund
	}
	for _, r := range recoveries {
		fmt.Fprintf(&b, "recovery: %s\n", r)
	}
	fmt.Fprintf(&b, "tokens: vault %d, tokenize idempotency records %d, expected %d each\n", len(c.tokens), sumCounts(c.idemTokens), len(flows))
	fmt.Fprintf(&b, "  %-20s %10s %10s %10s %10s\n", "", "acquirer", "gateway", "ledger", "expected")
	row := func(name string, a, g, l, want int64) {
		fmt.Fprintf(&b, "  %-20s %10d %10d %10d %10d\n", name, a, g, l, want)
	}
	n := int64(len(flows))
	row("payments", int64(c.acq.payments), int64(c.gw.payments), int64(c.led.payments), n)
	row("authorizations", int64(c.acq.authorizations), int64(c.gw.authorizations), int64(c.led.authorizations), n)
	row("captures", int64(c.acq.captures), int64(c.gw.captures), int64(c.led.captures), n)
	row("refunds", int64(c.acq.refunds), int64(c.gw.refunds), int64(c.led.refunds), n)
	row("voids/reversals", int64(c.acq.voids), int64(c.gw.voids), int64(c.led.voids), 0)
	row("captured total", c.acq.captured, c.gw.captured, c.led.captured, wc)
	row("refunded total", c.acq.refunded, c.gw.refunded, c.led.refunded, wr)
	verify := "clean"
	if !c.verifyOK {
		verify = "FAILED"
	}
	last := c.verify
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	fmt.Fprintf(&b, "acquirer authorizations without a CVC: %d (every card was tokenized with one; a CVC taken by an attempt that failed, or lost, is not sent again)\n", c.noCVC())
	fmt.Fprintf(&b, "ledger verify: %s (%s)\n", verify, last)
	switch {
	case c.reconcileErr != nil:
		fmt.Fprintf(&b, "reconciliation gateway↔ledger: FAILED to run: %v\n", c.reconcileErr)
	default:
		r := c.reconcile
		fmt.Fprintf(&b, "reconciliation gateway↔ledger: %d gateway payments, %d ledger payments, %d difference(s) (%d unexplained)\n",
			r.GatewayPayments, r.LedgerPayments, len(r.Differences), r.Unexplained())
	}
	fmt.Fprintf(&b, "left: %s\n", c.left)
	if len(v) == 0 {
		fmt.Fprintf(&b, "violations: none\n")
	} else {
		fmt.Fprintf(&b, "violations: %d\n", len(v))
		for i, s := range v {
			if i == 15 {
				fmt.Fprintf(&b, "  … and %d more\n", len(v)-i)
				break
			}
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	return b.String()
}
