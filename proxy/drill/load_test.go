package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Load shape: a bounded number of concurrent clients, each request with a
// timeout, every unanswered or 5xx request retried with the same
// Idempotency-Key until a final answer or the phase's deadline.
const (
	clients        = 8
	requestTimeout = 15 * time.Second
	retryFirst     = 50 * time.Millisecond
	retryMax       = 500 * time.Millisecond
)

// request is one merchant write. base, when set, replaces the load's base
// URL (the tokenize requests go to vaultd, the others to the gateway).
type request struct {
	op, base, path, body, key string
}

// answer is the final answer to a request (or the last one seen when the
// deadline passed).
type answer struct {
	status   int    // 0: no answer
	label    string // "200 authorized", "503 vault_unavailable", "no answer (connection refused)"
	final    bool
	attempts int
	body     []byte
	at       time.Time // when the last attempt was answered
}

// load drives the gateway's REST API and counts every attempt.
type load struct {
	base, sk string
	client   *http.Client

	sent      atomic.Int64 // first attempts in the current phase
	failures  atomic.Int64 // attempts without a final answer, all phases
	mu        sync.Mutex
	outcomes  map[string]int // "op label" -> attempts
	retries   int
	requests  int
	sentHooks []hook
	failHooks []hook
	attempts  []attempt // every attempt, all phases, in the order answered
}

// attempt is one attempt as the client saw it, for the time to recover.
type attempt struct {
	op         string
	start, end time.Time
	ok         bool   // a 2xx answer
	label      string // as in answer
}

type hook struct {
	at int64
	ch chan struct{}
}

func newLoad(base, sk string) *load {
	return &load{base: base, sk: sk, outcomes: map[string]int{},
		client: &http.Client{Timeout: requestTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: 30 * time.Second}}}
}

// afterSent returns a channel closed once n first attempts of the current
// phase have been sent.
func (l *load) afterSent(n int64) <-chan struct{} { return l.addHook(&l.sentHooks, l.sent.Load, n) }

// afterFailures returns a channel closed once n more attempts (from now)
// got no final answer: how the merchants feel an outage.
func (l *load) afterFailures(n int64) <-chan struct{} {
	return l.addHook(&l.failHooks, l.failures.Load, l.failures.Load()+n)
}

func (l *load) addHook(hooks *[]hook, cur func() int64, at int64) <-chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur() >= at {
		close(ch)
		return ch
	}
	*hooks = append(*hooks, hook{at: at, ch: ch})
	return ch
}

func (l *load) fire(hooks *[]hook, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := (*hooks)[:0]
	for _, h := range *hooks {
		if v >= h.at {
			close(h.ch)
		} else {
			kept = append(kept, h)
		}
	}
	*hooks = kept
}

// retryable answers are not final: the merchant retries with the same key.
func retryable(status int, code string) bool {
	switch {
	case status >= 500, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusConflict && (code == "idempotency_request_in_progress" || code == "payment_busy"):
		return true
	}
	return false
}

func noAnswer(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "no answer (connection refused)"
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer (timeout)"
	case errors.Is(err, syscall.ECONNRESET):
		return "no answer (connection reset)"
	}
	return "no answer (connection closed)"
}

// once sends one attempt.
func (l *load) once(ctx context.Context, r request) answer {
	base := l.base
	if r.base != "" {
		base = r.base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+r.path, strings.NewReader(r.body))
	if err != nil {
		return answer{label: "bad request " + err.Error(), final: true}
	}
	req.Header.Set("Authorization", "Bearer "+l.sk)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", r.key)
	resp, err := l.client.Do(req)
	if err != nil {
		return answer{label: noAnswer(err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m struct {
		Status string `json:"status"`
		Token  string `json:"token"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &m)
	code := m.Error.Code
	if resp.StatusCode/100 == 2 {
		code = m.Status
		if code == "" && m.Token != "" {
			code = "tokenized" // a token has no status
		}
	}
	return answer{status: resp.StatusCode, label: strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, code)), final: !retryable(resp.StatusCode, code), body: b}
}

// send sends r until a final answer or ctx ends, retrying with the same
// Idempotency-Key after a growing pause.
func (l *load) send(ctx context.Context, r request) answer {
	l.fire(&l.sentHooks, l.sent.Add(1))
	pause := retryFirst
	var a answer
	for n := 1; ; n++ {
		began := time.Now()
		a = l.once(ctx, r)
		a.attempts, a.at = n, time.Now()
		if ctx.Err() != nil && !a.final {
			a.label = "unfinished at the deadline (last: " + a.label + ")"
			return a
		}
		l.mu.Lock()
		l.attempts = append(l.attempts, attempt{op: r.op, start: began, end: time.Now(), ok: a.status/100 == 2, label: a.label})
		l.outcomes[r.op+" "+a.label]++
		l.requests++
		if n > 1 {
			l.retries++
		}
		l.mu.Unlock()
		if a.final {
			return a
		}
		l.fire(&l.failHooks, l.failures.Add(1))
		select {
		case <-ctx.Done():
			a.label = "unfinished at the deadline (last: " + a.label + ")"
			return a
		case <-time.After(pause):
		}
		pause = min(2*pause, retryMax)
	}
}

// newPhase starts counting first attempts from zero.
func (l *load) newPhase() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent.Store(0)
	l.sentHooks = nil
}

// phase sends one request per item (nil: skipped) from `clients` workers,
// and returns the final answers by item.
func (l *load) phase(ctx context.Context, reqs []*request) []answer {
	out := make([]answer, len(reqs))
	next := make(chan int, len(reqs))
	for i, r := range reqs {
		if r != nil {
			next <- i
		}
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = l.send(ctx, *reqs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// outcomeLines lists the attempts by operation and answer, most frequent
// first within each operation.
func (l *load) outcomeLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	order := map[string]int{"tokenize": 0, "authorize": 1, "capture": 2, "refund": 3}
	var all []kv
	for k, n := range l.outcomes {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool {
		oi, oj := order[strings.Fields(all[i].k)[0]], order[strings.Fields(all[j].k)[0]]
		if oi != oj {
			return oi < oj
		}
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].k < all[j].k
	})
	out := make([]string, len(all))
	for i, e := range all {
		out[i] = fmt.Sprintf("%-58s %6d", e.k, e.n)
	}
	return out
}

// recovery is how the clients lived through one fault, from their own
// timestamps: the failed attempts answered between the fault and `until`
// (the next fault, or the end of the load), and the time from the first
// of them to the first success of an attempt sent after it.
type recovery struct {
	failed      int
	firstFail   time.Duration // fault → first failed attempt answered
	lastFail    time.Duration // fault → last failed attempt answered before until
	toRecover   time.Duration // first failed attempt → first success after it
	recovered   bool
	unrecovered string // the last failure's label when nothing succeeded after it
}

func (l *load) recovery(at, until time.Time) recovery {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r recovery
	var first, last time.Time
	lastLabel := ""
	for _, a := range l.attempts {
		if a.ok || a.end.Before(at) || !a.end.Before(until) {
			continue
		}
		r.failed++
		if first.IsZero() || a.end.Before(first) {
			first = a.end
		}
		if a.end.After(last) {
			last, lastLabel = a.end, a.label
		}
	}
	if r.failed == 0 {
		r.recovered = true
		return r
	}
	r.firstFail, r.lastFail = first.Sub(at), last.Sub(at)
	var ok time.Time
	for _, a := range l.attempts {
		// A success sent after the first failure: a request already in
		// flight that completes after it says nothing of recovery.
		if a.ok && a.start.After(first) && (ok.IsZero() || a.end.Before(ok)) {
			ok = a.end
		}
	}
	if ok.IsZero() {
		r.unrecovered = lastLabel
		return r
	}
	r.recovered, r.toRecover = true, ok.Sub(first)
	return r
}

func (r recovery) String() string {
	switch {
	case r.failed == 0:
		return "time to recover 0s (no client saw a failure)"
	case !r.recovered:
		return fmt.Sprintf("NOT RECOVERED: %d failed attempts from %s after the fault, no success after them (last: %s)", r.failed, r.firstFail.Round(time.Millisecond), r.unrecovered)
	}
	return fmt.Sprintf("time to recover %s (first failed attempt %s after the fault; %d failed attempts, the last %s after the fault)",
		r.toRecover.Round(time.Millisecond), r.firstFail.Round(time.Millisecond), r.failed, r.lastFail.Round(time.Millisecond))
}

// clientErrors lists the answers a client must never see, with their
// counts: anything but a 2xx, a 503 with an error code, or the
// idempotency protocol's 409s (a retry that met its first request still
// running). noAnswerOK lets connection failures pass too: the single-node
// drills kill the very process the clients talk to, with no load balancer
// in front of it.
func (l *load) clientErrors(noAnswerOK bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, n := range l.outcomes {
		op, label, _ := strings.Cut(k, " ")
		if !allowedAnswer(label, noAnswerOK) {
			out = append(out, fmt.Sprintf("%s %q ×%d", op, label, n))
		}
	}
	sort.Strings(out)
	return out
}

func allowedAnswer(label string, noAnswerOK bool) bool {
	status, code, _ := strings.Cut(label, " ")
	switch {
	case strings.HasPrefix(label, "no answer"):
		return noAnswerOK
	case len(status) == 3 && status[0] == '2':
		return true
	case status == "503":
		return code != "" && !strings.Contains(code, " ")
	case status == "409":
		return code == "idempotency_request_in_progress" || code == "payment_busy"
	}
	return false
}
