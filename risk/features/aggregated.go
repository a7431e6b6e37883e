package features

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/redisconn"
)

//go:embed sync.lua
var syncLua string

var syncScript = redis.NewScript(syncLua)

// Defaults of the aggregated store.
const (
	// DefaultSyncInterval is how often a replica syncs with Redis.
	DefaultSyncInterval = 20 * time.Millisecond
	// DefaultMaxStale is how long before an evaluation arrived the
	// replica's last successful sync may have begun; otherwise the
	// evaluation waits for a new one (and fails if Redis does not answer).
	DefaultMaxStale = 250 * time.Millisecond
)

// SeenLocally is how long a replica remembers the payment ids it and the
// other replicas counted, at least (at most twice as long): a retry within
// it is not counted again in the local view either.
const SeenLocally = 30 * time.Second

// ErrStale: the velocity counters could not be synced with Redis.
var ErrStale = errors.New("features: velocity counters could not be synced with Redis")

// AggregatedOptions tune an aggregated store; zero values take defaults.
type AggregatedOptions struct {
	// Interval is the period of Run's syncs (DefaultSyncInterval).
	Interval time.Duration
	// MaxStale bounds how old the other replicas' counts may be in a
	// decision, and how long a payment counted here may wait to reach
	// Redis while this replica answers (DefaultMaxStale).
	MaxStale time.Duration
	// Now is the store's clock, for staleness (time.Now); observations
	// carry their own time for the windows.
	Now func() time.Time
	// MaxBatch caps the payments sent in one sync (500); Run syncs again
	// at once while a full batch waits.
	MaxBatch int
	// StreamLen caps the change stream in Redis (approximately, 20,000
	// entries); a replica that falls further behind reloads its cache.
	StreamLen int
}

// AggregatedStats count what the store did, for tests and metrics.
type AggregatedStats struct {
	// Syncs and SyncErrors count round trips to Redis and the failed ones;
	// SyncNanos is their total time, Synced the payments they sent.
	Syncs, SyncErrors, SyncNanos, Synced atomic.Int64
	// Waits counts observations that waited for a sync (a key not cached
	// yet, or the last sync too old).
	Waits atomic.Int64
	// Duplicates counts payments another replica had counted already.
	Duplicates atomic.Int64
	// Resets counts cache reloads (after an outage, or too far behind).
	Resets atomic.Int64
}

// Aggregated is riskd's feature store: each replica counts payments in
// memory and answers from its cache of the shared Redis counters plus its
// own not-yet-synced counts. One script call per sync (every Interval, or
// sooner when an observation needs a key that may exist in Redis and is
// not cached) applies the local counts to Redis and reads back every key
// another replica changed since (a change stream in Redis names them); a
// scan at the first sync and the stream since tell which keys exist, so a
// new card needs no round trip. So Redis is off the evaluation's critical
// path, and the shared totals in a decision are at most MaxStale older
// than the evaluation: when the last successful sync began earlier, or
// failed, the evaluation waits for a sync, and fails when Redis does not
// answer (riskd then applies the merchant's fallback). Payment ids dedupe
// exactly in Redis (a payment retried on two replicas counts once in the
// shared totals) and locally for SeenLocally; see the README's risk
// section for the bounds.
type Aggregated struct {
	rdb   redis.UniversalClient
	opt   AggregatedOptions
	pre   string
	id    string
	Stats AggregatedStats

	ioMu sync.Mutex // one sync at a time, in order

	mu       sync.Mutex
	counters map[string]*counterEntry
	hlls     map[string]*setEntry
	firsts   map[string]*firstEntry
	pending  []pendingPayment
	inflight *syncBatch // sent, not yet acknowledged (retried as is)
	seq      int64
	seen     [2]map[string]struct{}
	rotateAt time.Time
	sweepAt  time.Time
	lastOK   time.Time
	failed   bool
	synced   bool
	streamID string
	epoch    string
	waiting  []*syncWaiter
	running  *syncRun // the sync in progress, if any
	// maybe holds every key that may exist in Redis without being cached
	// (found by the scan at the first sync, or evicted since); a key in
	// neither is known to be absent, so it needs no round trip. Valid once
	// scanned, for as long as the change stream is read without a gap.
	maybe    *bloom
	scanned  bool
	needScan bool
}

var _ Store = (*Aggregated)(nil)

// field names one Redis hash field: window index (into Windows), bucket,
// and count or sum.
type field struct {
	wi  int
	b   int64
	sum bool
}

// slot is one bucket's count and sum; buckets keeps up to three buckets of
// one window (the current, the previous and one being retired).
type slot struct{ b, c, s int64 }

type buckets [3]slot

// at returns the slot of bucket b (nil if absent).
func (bs *buckets) at(b int64) *slot {
	for i := range bs {
		if bs[i].b == b && (bs[i].c != 0 || bs[i].s != 0) {
			return &bs[i]
		}
	}
	return nil
}

// slot returns bucket b's slot, taking an empty one or the oldest.
func (bs *buckets) slot(b int64) *slot {
	free := -1
	for i := range bs {
		if bs[i].b == b {
			return &bs[i]
		}
		if free < 0 && bs[i].c == 0 && bs[i].s == 0 {
			free = i
		}
	}
	if free < 0 {
		free = 0
		for i := range bs {
			if bs[i].b < bs[free].b {
				free = i
			}
		}
	}
	bs[free] = slot{b: b}
	return &bs[free]
}

func (bs *buckets) get(b int64) (c, s int64) {
	if sl := bs.at(b); sl != nil {
		return sl.c, sl.s
	}
	return 0, 0
}

func (bs *buckets) empty() bool {
	for _, sl := range bs {
		if sl.c != 0 || sl.s != 0 {
			return false
		}
	}
	return true
}

type counterEntry struct {
	loaded bool
	shared [3]buckets
	delta  [3]buckets // counted here, not yet acknowledged by Redis
	used   time.Time
}

func (e *counterEntry) deltaEmpty() bool {
	return e.delta[0].empty() && e.delta[1].empty() && e.delta[2].empty()
}

// setField stores one field read from Redis.
func (e *counterEntry) setField(f field, v int64) {
	sl := e.shared[f.wi].slot(f.b)
	if f.sum {
		sl.s = v
	} else {
		sl.c = v
	}
}

// setEntry is one distinct-card set (a key and bucket): its size in
// Redis, its members while there are at most maxMembers (nil above), and
// the cards counted here that it did not hold, not yet acknowledged.
type setEntry struct {
	loaded           bool
	shared           int64
	members, pending map[string]struct{}
	used             time.Time
}

type firstEntry struct {
	loaded bool
	shared int64
	local  int64
	used   time.Time
}

type pendingPayment struct {
	pid, fp, merchant, ip, email, device string
	now, amount                          int64
	at                                   time.Time // the store's clock when counted
	// the keys and entries it was counted in, to send and acknowledge
	keys     obsKeys
	counters [numDims]*counterEntry
	sets     [4]*setEntry
	first    *firstEntry
}

type syncBatch struct {
	id       string
	payments []pendingPayment
}

type syncRun struct {
	start time.Time
	done  chan struct{}
}

type syncWaiter struct {
	loads []string
	done  chan struct{}
	err   error
}

// maxMembers is the largest distinct-card set read back whole (as in
// sync.lua): up to it, counts are exact; above it, a card this replica
// has not synced yet counts as new until the next sync.
const maxMembers = 256

// NewAggregated uses rdb with keys under prefix (the same keys as Redis, so
// both can share counters during an upgrade). Start Run for the periodic
// syncs.
func NewAggregated(rdb redis.UniversalClient, prefix string, opt AggregatedOptions) *Aggregated {
	if opt.Interval <= 0 {
		opt.Interval = DefaultSyncInterval
	}
	if opt.MaxStale <= 0 {
		opt.MaxStale = DefaultMaxStale
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 500
	}
	if opt.StreamLen <= 0 {
		opt.StreamLen = 20_000
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Aggregated{
		rdb: rdb, opt: opt, pre: prefix, id: hex.EncodeToString(b[:]),
		counters: map[string]*counterEntry{}, hlls: map[string]*setEntry{}, firsts: map[string]*firstEntry{},
		seen: [2]map[string]struct{}{{}, {}}, streamID: "$", maybe: newBloom(),
	}
}

// Ping checks Redis answers.
func (s *Aggregated) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Run syncs every Interval until ctx ends.
func (s *Aggregated) Run(ctx context.Context) {
	t := time.NewTicker(s.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Keep syncs short (MaxBatch payments each): a long one
			// would age the view of the other replicas.
			for i := 0; i < 64; i++ {
				if s.Sync(ctx) != nil || !s.backlog() {
					break
				}
			}
		}
	}
}

// backlog reports whether a full batch is waiting.
func (s *Aggregated) backlog() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) >= s.opt.MaxBatch
}

// Sync runs one sync now (Run's tick): it sends what was counted here and
// reads what the other replicas changed.
func (s *Aggregated) Sync(ctx context.Context) error { return s.roundTrip(ctx, nil, time.Time{}) }

// obsKeys are the cache keys one observation reads.
type obsKeys struct {
	counters [numDims]string
	hlls     [2][2][2]string // ip/device x 1h/24h x current/previous
	first    string
}

func (s *Aggregated) keys(o Observation, now int64) obsKeys {
	var k obsKeys
	vals := o.values()
	for d := 0; d < numDims; d++ {
		if vals[d] != "" {
			k.counters[d] = "v:" + dimNames[d] + ":" + vals[d]
		}
	}
	if o.Fingerprint != "" {
		for di, d := range []int{DimIP, DimDevice} {
			if vals[d] == "" {
				continue
			}
			for wi, w := range Windows[1:] {
				base := "ds:" + dimNames[d] + ":" + vals[d] + ":" + strconv.FormatInt(w, 10) + ":"
				k.hlls[di][wi][0] = base + strconv.FormatInt(now/w, 10)
				k.hlls[di][wi][1] = base + strconv.FormatInt(now/w-1, 10)
			}
		}
		k.first = "fs:" + o.Merchant + ":" + o.Fingerprint
	}
	return k
}

// obsEntries are the cache entries of an observation's keys, as missing
// found them (nil: not cached).
type obsEntries struct {
	counters [numDims]*counterEntry
	hlls     [2][2][2]*setEntry
	first    *firstEntry
}

// missing lists the keys not cached that may exist in Redis; a key known
// to be absent gets an empty entry instead (s.mu held). It fills en with
// the entries found, for observeLocked (valid while s.mu is held).
func (s *Aggregated) missing(k *obsKeys, en *obsEntries, at time.Time) []string {
	var out []string
	absent := func(key string) bool { return s.scanned && !s.maybe.has(key) }
	for d, c := range k.counters {
		if c == "" {
			continue
		}
		e := s.counters[c]
		if e == nil && absent(c) {
			e = &counterEntry{loaded: true, used: at}
			s.counters[c] = e
		}
		if e == nil || !e.loaded {
			out = append(out, c)
		}
		en.counters[d] = e
	}
	for di, byW := range k.hlls {
		for wi, pair := range byW {
			for pi, h := range pair {
				if h == "" {
					continue
				}
				e := s.hlls[h]
				if e == nil && absent(h) {
					e = &setEntry{loaded: true, members: map[string]struct{}{}, used: at}
					s.hlls[h] = e
				}
				if e == nil || !e.loaded {
					out = append(out, h)
				}
				en.hlls[di][wi][pi] = e
			}
		}
	}
	if k.first != "" {
		e := s.firsts[k.first]
		if e == nil && absent(k.first) {
			e = &firstEntry{loaded: true, used: at}
			s.firsts[k.first] = e
		}
		if e == nil || !e.loaded {
			out = append(out, k.first)
		}
		en.first = e
	}
	return out
}

// freshFor reports whether the view may answer an evaluation that arrived
// at t0: the last sync succeeded and began at most MaxStale before t0, and
// no payment counted here has waited for Redis for more than MaxStale (so
// the other replicas have it within MaxStale too, once they sync).
func (s *Aggregated) freshFor(t0 time.Time) bool {
	if !s.synced || s.failed || t0.Sub(s.lastOK) > s.opt.MaxStale {
		return false
	}
	oldest := s.pending
	if s.inflight != nil && len(s.inflight.payments) > 0 {
		oldest = s.inflight.payments
	}
	return len(oldest) == 0 || t0.Sub(oldest[0].at) <= s.opt.MaxStale
}

// Observe answers from the local view; it waits for a sync only when a
// key is not cached yet or the last sync is too old or failed.
func (s *Aggregated) Observe(ctx context.Context, o Observation, record bool) (Result, error) {
	now := o.Now.Unix()
	k := s.keys(o, now)
	t0 := s.opt.Now()
	loads := 0
	for attempt := 0; ; attempt++ {
		var en obsEntries
		s.mu.Lock()
		miss := s.missing(&k, &en, t0)
		if len(miss) == 0 && s.freshFor(t0) {
			r := s.observeLocked(&k, &en, o, now, record, t0)
			s.mu.Unlock()
			return r, nil
		}
		s.mu.Unlock()
		// Keys not loaded after five syncs fail the evaluation. A view
		// that is only stale is fresh after one successful sync, unless
		// this replica's syncs fell behind: then each sync sends the
		// oldest payments, those counted before t0-MaxStale are a fixed
		// set that shrinks, and the evaluation waits (the caller's
		// deadline bounds it) so that evaluations slow to the syncs' pace.
		if len(miss) > 0 {
			if loads == 5 {
				return Result{}, fmt.Errorf("%w: keys not loaded after %d syncs", ErrStale, loads)
			}
			loads++
		}
		if attempt == 0 {
			s.Stats.Waits.Add(1)
		}
		if err := s.roundTrip(ctx, miss, t0); err != nil {
			return Result{}, err
		}
	}
}

// observeLocked answers from the entries missing found (every one
// cached), counting the observation when record (s.mu held); at is the
// store's time of the evaluation.
func (s *Aggregated) observeLocked(k *obsKeys, en *obsEntries, o Observation, now int64, record bool, at time.Time) Result {
	if record && o.PaymentID != "" {
		for _, g := range s.seen {
			if _, ok := g[o.PaymentID]; ok {
				record = false
			}
		}
		if record {
			s.seen[0][o.PaymentID] = struct{}{}
		}
	}
	var pp *pendingPayment
	if record {
		s.pending = append(s.pending, pendingPayment{pid: o.PaymentID, fp: o.Fingerprint, merchant: o.Merchant, ip: o.IP, email: o.EmailHash, device: o.Device, now: now, amount: o.Amount, at: at, keys: *k})
		pp = &s.pending[len(s.pending)-1]
	}
	var present [numDims]bool
	var raw [numDims][3]bucketCounts
	for d, key := range k.counters {
		if key == "" {
			continue
		}
		present[d] = true
		e := en.counters[d]
		e.used = at
		if pp != nil {
			pp.counters[d] = e
		}
		for wi, w := range Windows {
			b := now / w
			if record {
				sl := e.delta[wi].slot(b)
				sl.c++
				sl.s += o.Amount
			}
			cc, cs := e.get(wi, b)
			pc, ps := e.get(wi, b-1)
			raw[d][wi] = bucketCounts{curCount: cc, curSum: cs, prevCount: pc, prevSum: ps}
		}
	}
	var distinct [2][2]int64
	for di, byW := range k.hlls {
		for wi, pair := range byW {
			if pair[0] == "" {
				continue
			}
			cur, prev := en.hlls[di][wi][0], en.hlls[di][wi][1]
			cur.used, prev.used = at, at
			if pp != nil {
				pp.sets[di*2+wi] = cur
			}
			if _, ok := cur.members[o.Fingerprint]; record && !ok {
				if cur.pending == nil {
					cur.pending = map[string]struct{}{}
				}
				cur.pending[o.Fingerprint] = struct{}{}
			}
			distinct[di][wi], _ = estimate(bucketCounts{curCount: cur.count(), prevCount: prev.count()}, Windows[wi+1], now)
		}
	}
	var first int64
	if k.first != "" {
		e := en.first
		e.used = at
		if pp != nil {
			pp.first = e
		}
		if record && e.shared == 0 && (e.local == 0 || now < e.local) {
			e.local = now
		}
		first = e.shared
		if first == 0 {
			first = e.local
		}
	}
	return assemble(raw, distinct, first, now, present)
}

func (e *counterEntry) get(wi int, b int64) (c, s int64) {
	c1, s1 := e.shared[wi].get(b)
	c2, s2 := e.delta[wi].get(b)
	return c1 + c2, s1 + s2
}

func (e *setEntry) count() int64 { return e.shared + int64(len(e.pending)) }

// roundTrip joins the next sync (loading keys too) and waits for it: the
// first waiter to get ioMu runs one sync for everyone queued, like a group
// commit, so concurrent evaluations that miss share one round trip.
//
// An evaluation that only needs freshness (no keys to load) and arrived at
// t0 joins the sync in progress when that one began at most MaxStale
// before t0; a zero t0 (Sync) always runs a new one.
func (s *Aggregated) roundTrip(ctx context.Context, loads []string, t0 time.Time) error {
	w := &syncWaiter{loads: loads, done: make(chan struct{})}
	s.mu.Lock()
	if r := s.running; len(loads) == 0 && r != nil && !t0.IsZero() && t0.Sub(r.start) <= s.opt.MaxStale {
		// A sync recent enough is on its way: its end makes the view fresh.
		s.mu.Unlock()
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.waiting = append(s.waiting, w)
	s.mu.Unlock()
	s.ioMu.Lock()
	s.mu.Lock()
	batch := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	if len(batch) > 0 {
		var all []string
		for _, b := range batch {
			all = append(all, b.loads...)
		}
		// One caller's cancellation must not fail the others' sync.
		err := s.syncOnce(context.WithoutCancel(ctx), all)
		for _, b := range batch {
			b.err = err
			close(b.done)
		}
	}
	s.ioMu.Unlock()
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// syncOnce runs the script once (ioMu held).
func (s *Aggregated) syncOnce(ctx context.Context, loads []string) error {
	return s.syncPass(ctx, loads, true)
}

// syncPass runs the script once; with flush, it sends the next batch.
func (s *Aggregated) syncPass(ctx context.Context, loads []string, flush bool) error {
	s.mu.Lock()
	s.housekeep()
	if flush && s.inflight == nil && len(s.pending) > 0 {
		n := min(len(s.pending), s.opt.MaxBatch)
		s.seq++
		s.inflight = &syncBatch{id: s.id + ":" + strconv.FormatInt(s.seq, 10), payments: s.pending[:n:n]}
		s.pending = s.pending[n:] // no copy: appends move it when they must
	}
	b := s.inflight
	run := &syncRun{start: s.opt.Now(), done: make(chan struct{})}
	s.running = run
	defer func() {
		s.mu.Lock()
		s.running = nil
		s.mu.Unlock()
		close(run.done)
	}()
	first := !s.synced
	last := s.streamID
	if first {
		last = "$"
	}
	s.mu.Unlock()

	start := run.start
	began := time.Now()
	defer func() { s.Stats.SyncNanos.Add(int64(time.Since(began))) }()
	s.Stats.Synced.Add(int64(len(b.paymentsOrNil())))
	var res []any
	var err error
	var sent *sentCounters
	for try := 0; ; try++ {
		s.Stats.Syncs.Add(1)
		var args []any
		args, sent = s.args(b, last, loads)
		res, err = s.runSync(ctx, []string{s.pre + "vstream"}, args)
		if err == nil && len(res) != 10 {
			err = fmt.Errorf("sync script returned %d values", len(res))
		}
		if err != nil || try == 3 {
			break
		}
		if flag, _ := res[1].(int64); flag != 2 {
			break
		}
		// Payments another replica counted: drop them (and their local
		// counts) from the batch and send it again under a new id.
		dups, _ := res[2].([]any)
		s.mu.Lock()
		b = s.dropDuplicates(b, dups)
		s.inflight = b
		s.mu.Unlock()
	}
	if err == nil {
		if flag, _ := res[1].(int64); flag == 2 {
			err = errors.New("payments counted elsewhere kept arriving")
		}
	}
	// Parse before taking the lock: evaluations go on meanwhile.
	var ps *parsedSync
	if err == nil {
		ps, err = parseSync(res, sent)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.Stats.SyncErrors.Add(1)
		s.failed = true
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	streamID, _ := res[0].(string)
	epoch, _ := res[7].(string)
	gap, _ := res[1].(int64)
	if wiped := s.epoch != "" && epoch != s.epoch; first || wiped || gap == 1 {
		// Start over from this stream position: forget what is cached
		// and scan for what exists.
		if !first {
			s.Stats.Resets.Add(1)
		}
		s.resetCache()
		s.needScan = true
	}
	s.epoch = epoch
	if b != nil {
		s.acknowledge(b)
		s.inflight = nil
	}
	s.apply(ps)
	for _, id := range ps.pids {
		s.seen[0][id] = struct{}{}
	}
	s.streamID, s.synced = streamID, true
	if s.needScan {
		s.mu.Unlock()
		names, err := s.scan(ctx)
		s.mu.Lock()
		if err != nil {
			s.failed = true
			return fmt.Errorf("%w: scan: %w", ErrStale, err)
		}
		for _, n := range names {
			s.maybe.add(n)
		}
		s.needScan, s.scanned = false, true
	}
	s.lastOK, s.failed = start, false
	return nil
}

// runSync runs the sync script. On a Redis Cluster it runs on the slot's
// primary followed by WAIT for its replica, on the same connection: the
// counts a sync applied must survive a failover (Redis replicates
// asynchronously), or a promoted replica would silently have lost them
// while this replica had dropped them as acknowledged. A sync not
// acknowledged fails; the batch is sent again under the same id, which the
// script applies at most once.
func (s *Aggregated) runSync(ctx context.Context, keys []string, args []any) ([]any, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return syncScript.Run(ctx, s.rdb, keys, args...).Slice()
	}
	node, err := cc.MasterForKey(ctx, keys[0])
	if err != nil {
		return nil, err
	}
	conn := node.Conn()
	defer conn.Close()
	var ev *redis.Cmd
	var info *redis.StringCmd
	for try := 0; try < 2; try++ {
		_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			ev = p.EvalSha(ctx, syncScript.Hash(), keys, args...)
			info = p.Info(ctx, "replication")
			return nil
		})
		if err == nil || try > 0 || !redis.HasErrorPrefix(ev.Err(), "NOSCRIPT") {
			break
		}
		if err = syncScript.Load(ctx, conn).Err(); err != nil {
			break
		}
	}
	if err != nil {
		if redisconn.TopologyError(err) {
			cc.ReloadState(ctx)
		}
		return nil, err
	}
	res, err := ev.Slice()
	if err != nil {
		return nil, err
	}
	if err := redisconn.Replicate(ctx, conn, info); err != nil {
		return nil, err
	}
	return res, nil
}

// scan lists the feature keys in Redis (without the prefix). On Redis
// Cluster the prefix's hash tag keeps them on one node.
func (s *Aggregated) scan(ctx context.Context) ([]string, error) {
	var out []string
	pattern := globEscape(s.pre) + "*"
	var scanner redis.Cmdable = s.rdb
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// A cluster client's SCAN goes to any one node: ask the primary
		// of the prefix's slot (where every feature key is).
		node, err := cc.MasterForKey(ctx, s.pre+"vstream")
		if err != nil {
			return nil, err
		}
		scanner = node
	}
	iter := scanner.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		k := strings.TrimPrefix(iter.Val(), s.pre)
		if strings.HasPrefix(k, "v:") || strings.HasPrefix(k, "ds:") || strings.HasPrefix(k, "fs:") {
			out = append(out, k)
		}
	}
	return out, iter.Err()
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (b *syncBatch) paymentsOrNil() []pendingPayment {
	if b == nil {
		return nil
	}
	return b.payments
}

// sentCounters are the counter fields a sync sent, in order: the script
// answers their new values in the same order (a key whose payments span
// two minutes comes twice).
// firstKnown reports whether the card's first-seen time at the merchant
// is known to be in Redis (read or written there, and not near its 90-day
// expiry): the sync need not send it again.
func firstKnown(p *pendingPayment) bool {
	return p.first != nil && p.first.loaded && p.first.shared > 0 && p.first.shared > p.now-89*86400
}

type sentCounters struct {
	keys   []string
	fields [][]field
	// computed: the new values this replica sent (the script writes them
	// without reading the key unless another replica changed it)
	computed []bool
	vals     [][6]int64
}

// newest is the latest bucket with a count or a sum (MinInt64 if none).
func (bs *buckets) newest() int64 {
	n := int64(math.MinInt64)
	for _, sl := range bs {
		if (sl.c != 0 || sl.s != 0) && sl.b > n {
			n = sl.b
		}
	}
	return n
}

// counterRun follows one counter key through the batch: its shared
// buckets as Redis holds them once the batch's earlier minutes are
// applied, while the view is known to be Redis's (ok).
type counterRun struct {
	ok  bool
	run [3]buckets
}

// compute returns the new values of the six fields of minute m's buckets
// after adding c and s, and the script's flags (1: the day bucket is new,
// set the expiry; 2, 4, 8: drop the bucket before the previous of that
// window; args adds 16 when the values are sent), or ok false when the view cannot tell (a bucket older than one
// it holds, or the key not loaded).
func (r *counterRun) compute(m, c, s int64) (vals [6]int64, flags int64, ok bool) {
	if !r.ok {
		return vals, -1, false
	}
	for wi, w := range Windows {
		if m*Windows[0]/w < r.run[wi].newest() {
			r.ok = false
			return vals, -1, false
		}
	}
	for wi, w := range Windows {
		b := m * Windows[0] / w
		cc, cs := r.run[wi].get(b)
		if cc == 0 {
			if wi == 2 {
				flags |= 1
			}
			if r.run[wi].at(b-2) != nil {
				flags |= 2 << wi
			}
		}
		vals[wi*2], vals[wi*2+1] = cc+c, cs+s
		sl := r.run[wi].slot(b)
		sl.c, sl.s = cc+c, cs+s
	}
	return vals, flags, true
}

// args are the script's arguments: the batch aggregated by key, its
// counters grouped by minute (every payment of one minute shares its three
// buckets, so a key sends one count and one sum per minute and the script
// names the fields once per minute).
func (s *Aggregated) args(b *syncBatch, last string, loads []string) ([]any, *sentCounters) {
	ps := b.paymentsOrNil()
	batchID := ""
	if b != nil {
		batchID = b.id
	}
	type ctr struct{ c, s int64 }
	type minute struct {
		m    int64
		keys []string
		ctrs map[string]*ctr
	}
	var (
		pids     []string
		ctrKeys  []string
		isCtr    = map[string]bool{}
		minutes  []*minute
		setKeys  []string
		sets     = map[string]map[string]bool{}
		setFps   = map[string][]string{}
		setKnown = map[string]int64{}
		fsKeys   []string
		fs       = map[string]int64{}
		runs     = map[string]*counterRun{}
	)
	var mm *minute
	for i := range ps {
		p := &ps[i]
		if p.pid != "" {
			pids = append(pids, p.pid)
		}
		if m := p.now / Windows[0]; mm == nil || mm.m != m {
			mm = nil
			for _, x := range minutes {
				if x.m == m {
					mm = x
				}
			}
			if mm == nil {
				mm = &minute{m: m, ctrs: map[string]*ctr{}}
				minutes = append(minutes, mm)
			}
		}
		for d, key := range p.keys.counters {
			if key == "" {
				continue
			}
			if _, ok := runs[key]; !ok {
				r := &counterRun{}
				if e := p.counters[d]; e != nil && e.loaded {
					r.ok, r.run = true, e.shared
				}
				runs[key] = r
			}
			c := mm.ctrs[key]
			if c == nil {
				c = &ctr{}
				mm.ctrs[key] = c
				mm.keys = append(mm.keys, key)
				if !isCtr[key] {
					isCtr[key] = true
					ctrKeys = append(ctrKeys, key)
				}
			}
			c.c++
			c.s += p.amount
		}
		for di, byW := range p.keys.hlls {
			for wi, pair := range byW {
				key := pair[0]
				if key == "" {
					continue
				}
				m := sets[key]
				if m == nil {
					m = map[string]bool{}
					sets[key] = m
					setKeys = append(setKeys, key)
					setKnown[key] = -1
					if e := p.sets[di*2+wi]; e != nil && e.loaded {
						setKnown[key] = e.shared
					}
				}
				if !m[p.fp] {
					m[p.fp] = true
					setFps[key] = append(setFps[key], p.fp)
				}
			}
		}
		if key := p.keys.first; key != "" && !firstKnown(p) {
			if t, ok := fs[key]; !ok {
				fs[key] = p.now
				fsKeys = append(fsKeys, key)
			} else if p.now < t {
				fs[key] = p.now
			}
		}
	}
	n := 17 + len(pids) + len(setKeys)*5 + len(fsKeys)*2 + len(loads)
	for _, m := range minutes {
		n += 13 + len(m.keys)*10
	}
	args := make([]any, 0, n)
	// The epoch known, for the script to trust this replica's view of the
	// keys no other replica changed: none after a failed sync, which may
	// have written what the view does not hold (ioMu held: only syncs
	// write s.failed and s.epoch).
	epoch := s.epoch
	if s.failed {
		epoch = ""
	}
	args = append(args, s.pre, s.id, batchID, last, int64(SeenFor/time.Second), s.opt.StreamLen, epoch, len(pids))
	for _, p := range pids {
		args = append(args, p)
	}
	sent := &sentCounters{}
	args = append(args, len(minutes))
	for _, m := range minutes {
		fields := minuteFields(m.m)
		// the six fields the payments of this minute add to, then the
		// count field of each window's bucket before the previous (the
		// script drops that bucket when it starts a new one)
		for _, f := range fields {
			args = append(args, fieldName(f))
		}
		for wi, w := range Windows {
			args = append(args, fieldName(field{wi, m.m*Windows[0]/w - 2, false}))
		}
		args = append(args, len(m.keys))
		for _, key := range m.keys {
			c := m.ctrs[key]
			vals, flags, ok := runs[key].compute(m.m, c.c, c.s)
			if ok && vals != [6]int64{c.c, c.s, c.c, c.s, c.c, c.s} {
				flags |= 16 // the values follow (else: new in all three buckets)
			}
			args = append(args, key, c.c, c.s, flags)
			if flags >= 16 {
				for _, v := range vals {
					args = append(args, v)
				}
			}
			sent.keys = append(sent.keys, key)
			sent.fields = append(sent.fields, fields[:])
			sent.computed = append(sent.computed, ok)
			sent.vals = append(sent.vals, vals)
		}
	}
	args = append(args, len(setKeys))
	for _, key := range setKeys {
		ttl := Windows[2]*2 + 60
		if strings.HasSuffix(strings.TrimSuffix(key, key[strings.LastIndexByte(key, ':'):]), ":3600") {
			ttl = Windows[1]*2 + 60
		}
		args = append(args, key, ttl, setKnown[key], len(setFps[key]))
		for _, fp := range setFps[key] {
			args = append(args, fp)
		}
	}
	args = append(args, len(fsKeys))
	for _, key := range fsKeys {
		args = append(args, key, fs[key])
	}
	changed, pj := "", ""
	if all := len(ctrKeys) + len(setKeys) + len(fsKeys); all > 0 {
		ks := make([]string, 0, all)
		ks = append(append(append(ks, ctrKeys...), setKeys...), fsKeys...)
		j, _ := json.Marshal(ks)
		changed = string(j)
	}
	if len(pids) > 0 {
		j, _ := json.Marshal(pids)
		pj = string(j)
	}
	args = append(args, changed, pj, len(loads))
	for _, l := range loads {
		args = append(args, l)
	}
	return args, sent
}

// dropDuplicates removes from a batch the payments whose ids another
// replica counted (and their counts here), under a new batch id (s.mu
// held).
func (s *Aggregated) dropDuplicates(b *syncBatch, dups []any) *syncBatch {
	dup := map[string]bool{}
	for _, d := range dups {
		if id, ok := d.(string); ok {
			dup[id] = true
			s.seen[0][id] = struct{}{}
		}
	}
	keep := make([]pendingPayment, 0, len(b.payments))
	var gone []pendingPayment
	for _, p := range b.payments {
		if p.pid != "" && dup[p.pid] {
			gone = append(gone, p)
		} else {
			keep = append(keep, p)
		}
	}
	s.Stats.Duplicates.Add(int64(len(gone)))
	s.acknowledge(&syncBatch{payments: gone})
	s.seq++
	return &syncBatch{id: s.id + ":" + strconv.FormatInt(s.seq, 10), payments: keep}
}

// acknowledge removes an applied batch's counts from the local deltas:
// the shared values read back hold them now (or, for a payment another
// replica had counted, leave it out).
func (s *Aggregated) acknowledge(b *syncBatch) {
	for i := range b.payments {
		p := &b.payments[i]
		for _, e := range p.counters {
			if e == nil {
				continue
			}
			for wi, w := range Windows {
				if sl := e.delta[wi].at(p.now / w); sl != nil {
					sl.c--
					sl.s -= p.amount
				}
			}
		}
		for _, e := range p.sets {
			if e == nil {
				continue
			}
			delete(e.pending, p.fp)
			if e.members != nil {
				e.members[p.fp] = struct{}{} // in the set now
			}
		}
		if p.first != nil {
			p.first.local = 0
		}
	}
}

type fieldVal struct {
	f field
	v int64
}

type parsedCounter struct {
	key  string
	vals []fieldVal
}

type parsedSet struct {
	key      string
	n        int64
	members  []string
	complete bool // members holds the whole set
}

type parsedInt struct {
	key string
	v   int64
}

// parsedSync is a sync's answer, parsed.
type parsedSync struct {
	counters    []parsedCounter // whole hashes (loads, others' changes)
	sets        []parsedSet
	firsts      []parsedInt
	pids        []string
	partial     []parsedCounter // the fields the batch wrote
	partialSets []parsedInt     // the sizes of the batch's sets
}

func parseSync(res []any, sent *sentCounters) (*parsedSync, error) {
	p := &parsedSync{}
	cs, _ := res[3].([]any)
	for i := 0; i+1 < len(cs); i += 2 {
		key, _ := cs[i].(string)
		flat, _ := cs[i+1].([]any)
		pc := parsedCounter{key: key, vals: make([]fieldVal, 0, len(flat)/2)}
		for j := 0; j+1 < len(flat); j += 2 {
			name, _ := flat[j].(string)
			f, ok := parseField(name)
			if !ok {
				continue
			}
			v, err := toInt(flat[j+1])
			if err != nil {
				return nil, fmt.Errorf("counter %s: %w", name, err)
			}
			pc.vals = append(pc.vals, fieldVal{f, v})
		}
		p.counters = append(p.counters, pc)
	}
	hs, _ := res[4].([]any)
	for i := 0; i+1 < len(hs); i += 2 {
		key, _ := hs[i].(string)
		r, _ := hs[i+1].([]any)
		if len(r) != 2 {
			return nil, fmt.Errorf("set %s: %d values", key, len(r))
		}
		n, err := toInt(r[0])
		if err != nil {
			return nil, err
		}
		ps := parsedSet{key: key, n: n}
		if ms, ok := r[1].([]any); ok {
			ps.complete = true
			for _, m := range ms {
				fp, _ := m.(string)
				ps.members = append(ps.members, fp)
			}
		}
		p.sets = append(p.sets, ps)
	}
	fs, _ := res[5].([]any)
	for i := 0; i+1 < len(fs); i += 2 {
		key, _ := fs[i].(string)
		v, err := toInt(fs[i+1])
		if err != nil {
			return nil, err
		}
		p.firsts = append(p.firsts, parsedInt{key, v})
	}
	ids, _ := res[6].([]any)
	for _, x := range ids {
		if id, ok := x.(string); ok {
			p.pids = append(p.pids, id)
		}
	}
	pcs, _ := res[8].([]any)
	for i := 0; i+1 < len(pcs); i += 2 {
		key, _ := pcs[i].(string)
		vals, _ := pcs[i+1].([]any)
		// in the order sent
		j := i / 2
		if sent == nil || j >= len(sent.keys) || sent.keys[j] != key {
			return nil, fmt.Errorf("counter %s: the answer does not match what was sent", key)
		}
		if z, ok := pcs[i+1].(int64); ok && z == 0 && sent.computed[j] {
			// written as this replica computed them
			pc := parsedCounter{key: key, vals: make([]fieldVal, len(sent.fields[j]))}
			for k, f := range sent.fields[j] {
				pc.vals[k] = fieldVal{f, sent.vals[j][k]}
			}
			p.partial = append(p.partial, pc)
			continue
		}
		if len(vals) != len(sent.fields[j]) {
			return nil, fmt.Errorf("counter %s: the answer does not match what was sent", key)
		}
		pc := parsedCounter{key: key, vals: make([]fieldVal, len(vals))}
		for k, x := range vals {
			v, err := toInt(x)
			if err != nil {
				return nil, err
			}
			pc.vals[k] = fieldVal{sent.fields[j][k], v}
		}
		p.partial = append(p.partial, pc)
	}
	pss, _ := res[9].([]any)
	for i := 0; i+1 < len(pss); i += 2 {
		key, _ := pss[i].(string)
		v, err := toInt(pss[i+1])
		if err != nil {
			return nil, err
		}
		p.partialSets = append(p.partialSets, parsedInt{key, v})
	}
	return p, nil
}

// apply stores a sync's answer (s.mu held): the keys loaded, the batch's
// and the ones other replicas changed (cached from now on, so a replica
// keeps every key changed lately, wherever); then merges what the batch
// wrote: the counter fields it changed, the sizes of its sets (whose
// members it knows).
func (s *Aggregated) apply(p *parsedSync) {
	at := s.opt.Now()
	for _, pc := range p.counters {
		e := s.counters[pc.key]
		if e == nil {
			e = &counterEntry{used: at}
			s.counters[pc.key] = e
		}
		e.shared, e.loaded = [3]buckets{}, true
		for _, fv := range pc.vals {
			e.setField(fv.f, fv.v)
		}
	}
	for _, ps := range p.sets {
		e := s.hlls[ps.key]
		if e == nil {
			e = &setEntry{used: at}
			s.hlls[ps.key] = e
		}
		e.shared, e.loaded, e.members = ps.n, true, nil
		if ps.complete {
			e.members = make(map[string]struct{}, len(ps.members))
			for _, fp := range ps.members {
				e.members[fp] = struct{}{}
				delete(e.pending, fp) // counted in shared now
			}
		}
	}
	for _, f := range p.firsts {
		e := s.firsts[f.key]
		if e == nil {
			e = &firstEntry{used: at}
			s.firsts[f.key] = e
		}
		e.shared, e.loaded = f.v, true
	}
	for _, pc := range p.partial {
		if e := s.counters[pc.key]; e != nil && e.loaded {
			for _, fv := range pc.vals {
				e.setField(fv.f, fv.v)
			}
		}
	}
	for _, ps := range p.partialSets {
		if e := s.hlls[ps.key]; e != nil && e.loaded {
			e.shared = ps.v
			if ps.v > maxMembers {
				e.members = nil
			}
		}
	}
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	default:
		return 0, fmt.Errorf("unexpected %T", v)
	}
}

// minuteFields are the fields a payment of minute m adds to, in the
// script's order: count and sum of each window's bucket.
func minuteFields(m int64) [6]field {
	var out [6]field
	for wi, w := range Windows {
		b := m * Windows[0] / w
		out[wi*2], out[wi*2+1] = field{wi, b, false}, field{wi, b, true}
	}
	return out
}

// fieldName is "<window>:<bucket>:c|s".
func fieldName(f field) string {
	kind := ":c"
	if f.sum {
		kind = ":s"
	}
	return windowNames[f.wi] + ":" + strconv.FormatInt(f.b, 10) + kind
}

// parseField reads "<window>:<bucket>:c|s".
func parseField(s string) (field, bool) {
	ws, rest, ok := strings.Cut(s, ":")
	if !ok {
		return field{}, false
	}
	bs, kind, ok := strings.Cut(rest, ":")
	if !ok || (kind != "c" && kind != "s") {
		return field{}, false
	}
	wi := -1
	for i, w := range windowNames {
		if w == ws {
			wi = i
		}
	}
	b, err := strconv.ParseInt(bs, 10, 64)
	if wi < 0 || err != nil {
		return field{}, false
	}
	return field{wi, b, kind == "s"}, true
}

var windowNames = [3]string{"60", "3600", "86400"}

func init() {
	for i, w := range Windows {
		if strconv.FormatInt(w, 10) != windowNames[i] {
			panic("features: windowNames out of step with Windows")
		}
	}
}

// resetCache forgets every shared value (after an outage, or when the
// change stream was trimmed past the last entry seen): keys are loaded
// again on use. Local counts not yet acknowledged stay.
func (s *Aggregated) resetCache() {
	s.maybe, s.scanned = newBloom(), false
	for k, e := range s.counters {
		if e.deltaEmpty() {
			delete(s.counters, k)
		} else {
			e.loaded, e.shared = false, [3]buckets{}
		}
	}
	for k, e := range s.hlls {
		if len(e.pending) == 0 {
			delete(s.hlls, k)
		} else {
			e.loaded, e.shared, e.members = false, 0, nil
		}
	}
	for k, e := range s.firsts {
		if e.local == 0 {
			delete(s.firsts, k)
		} else {
			e.loaded, e.shared = false, 0
		}
	}
}

// housekeep rotates the local payment-id memory (30 to 60 s) and
// drops cache entries unused for five minutes (s.mu held).
func (s *Aggregated) housekeep() {
	now := s.opt.Now()
	if now.After(s.rotateAt) {
		s.seen[1], s.seen[0] = s.seen[0], map[string]struct{}{}
		s.rotateAt = now.Add(SeenLocally)
	}
	if now.Before(s.sweepAt) {
		return
	}
	s.sweepAt = now.Add(30 * time.Second)
	old := now.Add(-5 * time.Minute)
	for k, e := range s.counters {
		if e.used.Before(old) && e.deltaEmpty() {
			delete(s.counters, k)
			s.maybe.add(k)
		}
	}
	for k, e := range s.hlls {
		if e.used.Before(old) && len(e.pending) == 0 {
			delete(s.hlls, k)
			s.maybe.add(k)
		}
	}
	for k, e := range s.firsts {
		if e.used.Before(old) && e.local == 0 {
			delete(s.firsts, k)
			s.maybe.add(k)
		}
	}
}
