package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/obolpay/obol/internal/redisconn"
)

// The cost model of a suite: what one operation costs, by component. All
// Obol services run inside the obol-load process; each is started with a
// pprof label (component=…) that the goroutines it starts inherit, so a CPU
// profile of the measured window splits the process's CPU by component.
// PostgreSQL, Redis and Vault are separate processes, read from /proc.

// componentLabel is the pprof label key naming the component a goroutine
// works for.
const componentLabel = "component"

// as runs f with the goroutine labelled component; goroutines f starts
// (servers' accept loops, pools, batch writers) inherit the label.
func as(component string, f func()) {
	pprof.Do(context.Background(), pprof.Labels(componentLabel, component), func(context.Context) { f() })
}

// costProbe knows where to read the counters of one run.
type costProbe struct {
	// pgAdminURL connects to the test cluster (pg_stat_database); empty
	// when the suite runs without PostgreSQL.
	pgAdminURL string
	// databases names the databases of the suite: database name → component.
	databases map[string]string
	// servers lists the Obol servers whose /metrics count gRPC calls:
	// component → HTTP address.
	servers map[string]string
	// rdb reads redis-server's INFO; nil without Redis.
	rdb *redis.Client
	// postmaster is the test cluster's postmaster PID (0: none).
	postmaster int
	// statements: pg_stat_statements answers (rankStatements); stmtNote
	// says why not.
	statements bool
	stmtNote   string
}

// analyze runs ANALYZE in each of the suite's databases at the end of the
// warm-up, so that the measured window runs on the plans a database in
// service has (autovacuum analyzes a table once about a tenth of it
// changed). Without it the window ran on generic plans made while the
// tables were empty and never analyzed, which chose by default
// selectivities: a payment read by id and merchant scanned the merchant's
// index (payments_merchant_created) instead of the primary key, and an
// operation's finish scanned the in-flight operations' partial index; runs
// of one build then differed by half their PostgreSQL CPU, depending on
// which plans the first statements got.
func (p *costProbe) analyze(t *tb) {
	if p.pgAdminURL == "" || len(p.databases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := make([]string, 0, len(p.databases))
	for db := range p.databases {
		names = append(names, db)
	}
	sort.Strings(names)
	for _, db := range names {
		conn, err := p.connectDB(ctx, db)
		if err != nil {
			t.Fatalf("ANALYZE %s: %v", db, err)
		}
		_, err = conn.Exec(ctx, "ANALYZE")
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("ANALYZE %s: %v", db, err)
		}
	}
	fmt.Printf("ANALYZE of the suite's databases (%s) after the warm-up\n", strings.Join(names, ", "))
}

// costSnap is one reading of the counters.
type costSnap struct {
	self     time.Duration
	procs    map[string]time.Duration // other processes' CPU: PostgreSQL, Vault, redis-server
	xacts    map[string]int64         // committed transactions by component's database
	calls    map[string]int64         // gRPC calls served, "component Method"
	redis    costSample
	hasRedis bool
	pg       pgSnap // statements, tables, WAL and processes (pgstats.go)
	hasPG    bool
	pgNote   string // why no statements are ranked
}

// newCostProbe finds the postmaster of the cluster at pgAdminURL (the
// parent of a backend of ours). databases maps database URLs to components.
func newCostProbe(t *tb, pgAdminURL string, databases map[string]string, servers map[string]string, redisURL string) *costProbe {
	p := &costProbe{pgAdminURL: pgAdminURL, databases: map[string]string{}, servers: servers}
	for url, comp := range databases {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatalf("%v", err)
		}
		p.databases[cfg.Database] = comp
	}
	if pgAdminURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgAdminURL)
		if err != nil {
			t.Fatalf("%v", err)
		}
		var backend int
		err = conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend)
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if st, ok := readStat(backend); ok {
			p.postmaster = st.ppid
		}
	}
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			t.Fatalf("%v", err)
		}
		opt.MaintNotificationsConfig = redisconn.NoMaintNotifications()
		p.rdb = redis.NewClient(opt)
		t.Cleanup(func() { p.rdb.Close() })
	}
	return p
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	comm                       string
	ppid                       int
	utime, stime, cutime, cstm time.Duration
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid … ; comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return procStat{}, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	// f[0] is the state (field 3); utime is field 14, so f[11].
	return procStat{comm: string(b[open+1 : end]), ppid: int(n(1)),
		utime: time.Duration(n(11)) * clockTick, stime: time.Duration(n(12)) * clockTick,
		cutime: time.Duration(n(13)) * clockTick, cstm: time.Duration(n(14)) * clockTick}, true
}

// procCPU sums the CPU of the processes the suite started: PostgreSQL (the
// postmaster, its live children and those it reaped), and this process's
// children by name (vault, redis-server).
func (p *costProbe) procCPU() map[string]time.Duration {
	out := map[string]time.Duration{}
	self := os.Getpid()
	if st, ok := readStat(p.postmaster); ok && p.postmaster > 0 {
		out["PostgreSQL (all backends)"] += st.utime + st.stime + st.cutime + st.cstm
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok {
			continue
		}
		switch {
		case p.postmaster > 0 && st.ppid == p.postmaster:
			out["PostgreSQL (all backends)"] += st.utime + st.stime
		case st.ppid == self && strings.HasPrefix(st.comm, "vault"):
			out["Vault"] += st.utime + st.stime + st.cutime + st.cstm
		case st.ppid == self && st.comm == "redis-server":
			out["redis-server"] += st.utime + st.stime + st.cutime + st.cstm
		}
	}
	return out
}

func (p *costProbe) snap(t *tb) costSnap {
	s := costSnap{self: selfCPU(), procs: p.procCPU(), xacts: map[string]int64{}, calls: map[string]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.pgAdminURL != "" {
		conn, err := pgx.Connect(ctx, p.pgAdminURL)
		if err != nil {
			t.Fatalf("%v", err)
		}
		rows, err := conn.Query(ctx, `SELECT datname, xact_commit FROM pg_stat_database WHERE datname IS NOT NULL`)
		if err != nil {
			t.Fatalf("%v", err)
		}
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				t.Fatalf("%v", err)
			}
			comp, ok := p.databases[name]
			if !ok {
				comp = "other (the load tool's own reads, templates)"
			}
			s.xacts[comp] += n
		}
		rows.Close()
		if len(p.databases) > 0 {
			if s.pg, err = p.snapPG(ctx, conn); err != nil {
				t.Fatalf("PostgreSQL statistics: %v", err)
			}
			s.hasPG, s.pgNote = true, p.stmtNote
		}
		conn.Close(ctx)
	}
	for comp, addr := range p.servers {
		if err := scrapeCalls(ctx, comp, addr, s.calls); err != nil {
			t.Fatalf("metrics of %s: %v", comp, err)
		}
	}
	if p.rdb != nil {
		r, err := sampleCost(p.rdb)
		if err != nil {
			t.Fatalf("redis INFO: %v", err)
		}
		s.redis, s.hasRedis = r, true
	}
	return s
}

// scrapeCalls adds the gRPC calls a server counted (obol_*_requests_total
// with transport="grpc") to calls, by "component Method".
func scrapeCalls(ctx context.Context, comp, addr string, calls map[string]int64) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "obol_") || !strings.Contains(line, "_requests_total{") || !strings.Contains(line, `transport="grpc"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `method="`)
		method, _, _ := strings.Cut(rest, `"`)
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil || method == "" {
			continue
		}
		calls[comp+" "+method] += int64(v)
	}
	return sc.Err()
}

// cpuByLabel reads a CPU profile (gzipped profile.proto) and sums its CPU
// samples by the value of label key ("" for unlabelled samples).
func cpuByLabel(path, key string) (map[string]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var strs []string
	type label struct{ key, str int64 }
	type sample struct {
		values []int64
		labels []label
	}
	var samples []sample
	var types int // number of sample types; the last is CPU nanoseconds
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1: // sample_type
			types++
		case 2: // sample
			s, err := parseSample(v)
			if err != nil {
				return nil, err
			}
			var ls []label
			for _, l := range s.labels {
				ls = append(ls, label{l[0], l[1]})
			}
			samples = append(samples, sample{values: s.values, labels: ls})
		case 6: // string_table
			strs = append(strs, string(v))
		}
	}
	out := map[string]time.Duration{}
	for _, s := range samples {
		if types == 0 || len(s.values) < types {
			continue
		}
		name := ""
		for _, l := range s.labels {
			if int(l.key) < len(strs) && strs[l.key] == key && int(l.str) < len(strs) {
				name = strs[l.str]
			}
		}
		out[name] += time.Duration(s.values[types-1])
	}
	return out, nil
}

type rawSample struct {
	values []int64
	labels [][2]int64
}

// parseSample reads a profile.proto Sample: value (2, packed or not) and
// label (3: key 1, str 2).
func parseSample(b []byte) (rawSample, error) {
	var s rawSample
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.values = append(s.values, int64(v))
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			for len(v) > 0 {
				x, m := protowire.ConsumeVarint(v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				v = v[m:]
				s.values = append(s.values, int64(x))
			}
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			var l [2]int64
			for len(v) > 0 {
				lnum, ltyp, m := protowire.ConsumeTag(v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				v = v[m:]
				if ltyp == protowire.VarintType && (lnum == 1 || lnum == 2) {
					x, m := protowire.ConsumeVarint(v)
					if m < 0 {
						return s, protowire.ParseError(m)
					}
					v = v[m:]
					l[lnum-1] = int64(x)
					continue
				}
				m = protowire.ConsumeFieldValue(lnum, ltyp, v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				v = v[m:]
			}
			s.labels = append(s.labels, l)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return s, nil
}

// measure runs a phase (see runMarked) and prints its cost model. The
// phase is always CPU-profiled, to cpuprofile when given, else to a
// temporary file.
func measure(t *tb, name string, op func() error, conc int, warmup, dur time.Duration, cpuprofile string, probe *costProbe) (result, costSnap, costSnap) {
	path := cpuprofile
	if path == "" {
		path = filepath.Join(t.TempDir(), "cpu.pprof")
	}
	prof, err := os.Create(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var snaps []costSnap
	res := runMarked(name, op, conc, warmup, dur, prof, func() {
		if len(snaps) == 0 {
			probe.analyze(t)
		}
		snaps = append(snaps, probe.snap(t))
	})
	byLabel, err := cpuByLabel(path, componentLabel)
	if err != nil {
		t.Fatalf("read CPU profile: %v", err)
	}
	printCostModel(name, res.ops, snaps[0], snaps[1], byLabel)
	return res, snaps[0], snaps[1]
}

// printCostModel prints one table: CPU-ms per operation by component
// (the process's CPU from getrusage, split by the profile's shares), by
// other process, gRPC calls, PostgreSQL transactions and Redis round trips.
func printCostModel(name string, ops int64, a, b costSnap, byLabel map[string]time.Duration) {
	if ops <= 0 {
		fmt.Printf("\ncost model, %s: no operations\n", name)
		return
	}
	fops := float64(ops)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / fops }
	load := ""
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(l))[:3], " ")
	}
	fmt.Printf("\ncost model, %s, per operation (%d operations in the measured window; load average %s):\n", name, ops, load)
	row := func(k string, v string) { fmt.Printf("  %-52s %10s\n", k, v) }
	self := b.self - a.self
	var sampled time.Duration
	var comps []string
	for c, d := range byLabel {
		sampled += d
		comps = append(comps, c)
	}
	sort.Slice(comps, func(i, j int) bool { return byLabel[comps[i]] > byLabel[comps[j]] })
	row("CPU-ms, obol-load process (getrusage), by component:", fmt.Sprintf("%.3f", ms(self)))
	for _, c := range comps {
		share := float64(byLabel[c]) / float64(sampled)
		label := c
		if c == "" {
			label = "unlabelled (GC workers, runtime, timers)"
		}
		row("    "+label, fmt.Sprintf("%.3f", ms(time.Duration(share*float64(self)))))
	}
	total := self
	var procs []string
	for p := range b.procs {
		procs = append(procs, p)
	}
	sort.Strings(procs)
	for _, p := range procs {
		d := b.procs[p] - a.procs[p]
		total += d
		row("CPU-ms, "+p, fmt.Sprintf("%.3f", ms(d)))
	}
	row("CPU-ms, total", fmt.Sprintf("%.3f", ms(total)))
	if len(b.calls) > 0 {
		var keys []string
		var all int64
		for k, v := range b.calls {
			if v-a.calls[k] > 0 {
				keys = append(keys, k)
				all += v - a.calls[k]
			}
		}
		sort.Strings(keys)
		row("gRPC calls served, by server and method:", fmt.Sprintf("%.2f", float64(all)/fops))
		for _, k := range keys {
			row("    "+k, fmt.Sprintf("%.2f", float64(b.calls[k]-a.calls[k])/fops))
		}
	}
	if len(b.xacts) > 0 {
		var keys []string
		var all int64
		for k, v := range b.xacts {
			if v-a.xacts[k] > 0 {
				keys = append(keys, k)
				all += v - a.xacts[k]
			}
		}
		sort.Strings(keys)
		row("PostgreSQL transactions committed, by database:", fmt.Sprintf("%.2f", float64(all)/fops))
		for _, k := range keys {
			row("    "+k, fmt.Sprintf("%.2f", float64(b.xacts[k]-a.xacts[k])/fops))
		}
	}
	if a.hasRedis && b.hasRedis {
		row("Redis round trips (socket reads by redis-server)", fmt.Sprintf("%.2f", float64(b.redis.reads-a.redis.reads)/fops))
		row("Redis commands executed (inside scripts included)", fmt.Sprintf("%.2f", float64(b.redis.commands-a.redis.commands)/fops))
	}
	if a.hasPG && b.hasPG {
		printPG(a.pg, b.pg, ops, b.pgNote)
	}
}
