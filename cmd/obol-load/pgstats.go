package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/testenv"
)

// Where PostgreSQL's time goes in a measured window: its statements
// (pg_stat_statements, when the cluster preloads it), its tables
// (pg_stat_user_tables: scans, row writes, autovacuum, growth), its WAL
// (pg_stat_wal) and its processes (the CPU of each backend by database,
// of autovacuum and of the background processes, from /proc).

// pgStmtKey names one pg_stat_statements entry.
type pgStmtKey struct {
	db       string
	queryid  int64
	toplevel bool
}

// pgStmt is one entry's counters (cumulative).
type pgStmt struct {
	query          string
	calls, rows    int64
	execMs, planMs float64
	hit, read      int64 // shared blocks
	dirtied        int64
	walBytes       int64
	jitFunctions   int64
	jitMs          float64
}

// pgTable is one table's counters (cumulative) and size.
type pgTable struct {
	seqScan, seqTupRead, idxScan, idxTupFetch int64
	ins, upd, hotUpd, del                     int64
	live, dead                                int64
	autovacuum, autoanalyze                   int64
	bytes                                     int64 // table, indexes and TOAST
}

// pgWAL is pg_stat_wal (cumulative).
type pgWAL struct {
	records, fpi, bytes, writes, syncs int64
	ok                                 bool
}

// pgProc is one PostgreSQL process: what it works for and its CPU.
type pgProc struct {
	class string
	cpu   time.Duration
}

// pgSnap is what pgStats reads at one mark.
type pgSnap struct {
	stmts  map[pgStmtKey]pgStmt
	tables map[string]pgTable // "component table"
	wal    pgWAL
	procs  map[int]pgProc
	reaped time.Duration // the postmaster's reaped children (cutime+cstime)
}

// rankStatements makes the probe read pg_stat_statements of pg's
// cluster, or note why it cannot (the cost model then says so).
func (p *costProbe) rankStatements(pg *testenv.Postgres) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	note := ""
	if !pg.StatStatements {
		note = pg.StatStatementsNote
		if note == "" {
			note = "the cluster does not preload pg_stat_statements"
		}
	}
	p.stmtNote = pgStatsReady(ctx, p.pgAdminURL, note)
	p.statements = p.stmtNote == ""
}

// pgStatsReady creates pg_stat_statements in the maintenance database
// and checks it answers. It returns "" when it does, else a note saying
// why the cost model ranks no statements.
func pgStatsReady(ctx context.Context, adminURL, note string) string {
	if note != "" {
		return note
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "pg_stat_statements: " + err.Error()
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return "pg_stat_statements is not available: " + err.Error()
	}
	if _, err := conn.Exec(ctx, `SELECT 1 FROM pg_stat_statements LIMIT 1`); err != nil {
		return "pg_stat_statements is not loaded: " + err.Error()
	}
	return ""
}

// snapPG reads the statements, tables, WAL and processes of the suite's
// databases (dbs: database name → component).
func (p *costProbe) snapPG(ctx context.Context, conn *pgx.Conn) (pgSnap, error) {
	s := pgSnap{stmts: map[pgStmtKey]pgStmt{}, tables: map[string]pgTable{}, procs: map[int]pgProc{}}
	names := make([]string, 0, len(p.databases))
	for name := range p.databases {
		names = append(names, name)
	}
	if p.statements {
		rows, err := conn.Query(ctx, `SELECT d.datname, s.queryid, s.toplevel, s.query, s.calls, s.rows, s.total_exec_time, s.total_plan_time,
			s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.wal_bytes::bigint, s.jit_functions,
			s.jit_generation_time + s.jit_inlining_time + s.jit_optimization_time + s.jit_emission_time
			FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = ANY($1) AND s.queryid IS NOT NULL`, names)
		if err != nil {
			return s, err
		}
		for rows.Next() {
			var k pgStmtKey
			var v pgStmt
			if err := rows.Scan(&k.db, &k.queryid, &k.toplevel, &v.query, &v.calls, &v.rows, &v.execMs, &v.planMs, &v.hit, &v.read, &v.dirtied, &v.walBytes, &v.jitFunctions, &v.jitMs); err != nil {
				rows.Close()
				return s, err
			}
			k.db = p.databases[k.db]
			s.stmts[k] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s, err
		}
	}
	var w pgWAL
	if err := conn.QueryRow(ctx, `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_write, wal_sync FROM pg_stat_wal`).Scan(&w.records, &w.fpi, &w.bytes, &w.writes, &w.syncs); err == nil {
		w.ok = true
		s.wal = w
	}
	// Which process works for which database: pg_stat_activity.
	byPID := map[int]string{}
	rows, err := conn.Query(ctx, `SELECT pid, coalesce(datname, ''), coalesce(backend_type, '') FROM pg_stat_activity`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var pid int
		var db, typ string
		if err := rows.Scan(&pid, &db, &typ); err != nil {
			rows.Close()
			return s, err
		}
		switch comp, ok := p.databases[db]; {
		case typ == "client backend" && ok:
			byPID[pid] = "backends of " + comp
		case typ == "client backend":
			byPID[pid] = "backends of other databases (the tool's reads)"
		case typ == "autovacuum worker":
			byPID[pid] = "autovacuum"
		default:
			byPID[pid] = typ
		}
	}
	rows.Close()
	if st, ok := readStat(p.postmaster); ok && p.postmaster > 0 {
		s.reaped = st.cutime + st.cstm
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok || p.postmaster <= 0 || st.ppid != p.postmaster {
			continue
		}
		class := byPID[pid]
		if class == "" {
			class = pgTitle(pid)
		}
		s.procs[pid] = pgProc{class: class, cpu: st.utime + st.stime}
	}
	for name, comp := range p.databases {
		if err := p.snapTables(ctx, name, comp, s.tables); err != nil {
			return s, err
		}
	}
	return s, nil
}

// pgTitle names a PostgreSQL process pg_stat_activity does not list by
// its process title ("postgres: walwriter").
func pgTitle(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return "other"
	}
	t := string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))
	t = strings.TrimPrefix(t, "postgres: ")
	if t == "" {
		return "other"
	}
	return t
}

// connectDB connects to one of the test cluster's databases as the admin.
func (p *costProbe) connectDB(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.pgAdminURL)
	if err != nil {
		return nil, err
	}
	cfg.Database = db
	return pgx.ConnectConfig(ctx, cfg)
}

// snapTables reads pg_stat_user_tables of one database.
func (p *costProbe) snapTables(ctx context.Context, db, comp string, out map[string]pgTable) error {
	conn, err := p.connectDB(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0),
		n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count,
		pg_total_relation_size(relid) FROM pg_stat_user_tables`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var t pgTable
		if err := rows.Scan(&name, &t.seqScan, &t.seqTupRead, &t.idxScan, &t.idxTupFetch, &t.ins, &t.upd, &t.hotUpd, &t.del, &t.live, &t.dead, &t.autovacuum, &t.autoanalyze, &t.bytes); err != nil {
			return err
		}
		out[comp+" "+name] = t
	}
	return rows.Err()
}

// printPG prints where PostgreSQL's time went between two snaps, per
// operation.
func printPG(a, b pgSnap, ops int64, note string) {
	fops := float64(ops)
	row := func(k string, v string) { fmt.Printf("  %-52s %10s\n", k, v) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)/fops) }

	// CPU by process.
	byClass := map[string]time.Duration{}
	for pid, pb := range b.procs {
		d := pb.cpu
		if pa, ok := a.procs[pid]; ok {
			d -= pa.cpu
		}
		byClass[pb.class] += d
	}
	if d := b.reaped - a.reaped; d > 0 {
		byClass["exited during the window (whole lifetime)"] += d
	}
	var classes []string
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool { return byClass[classes[i]] > byClass[classes[j]] })
	row("CPU-ms, PostgreSQL, by process:", "")
	for _, c := range classes {
		if byClass[c] > 0 {
			row("    "+c, ms(byClass[c]))
		}
	}

	if a.wal.ok && b.wal.ok {
		row("PostgreSQL WAL records / full-page images / bytes", fmt.Sprintf("%.1f / %.2f / %.0f", float64(b.wal.records-a.wal.records)/fops,
			float64(b.wal.fpi-a.wal.fpi)/fops, float64(b.wal.bytes-a.wal.bytes)/fops))
		row("PostgreSQL WAL writes / flushes", fmt.Sprintf("%.2f / %.2f", float64(b.wal.writes-a.wal.writes)/fops, float64(b.wal.syncs-a.wal.syncs)/fops))
	}

	// Tables: scans and row writes per operation, growth, autovacuum.
	var tables []string
	for k, t := range b.tables {
		ta := a.tables[k]
		if t.seqScan != ta.seqScan || t.idxScan != ta.idxScan || t.ins != ta.ins || t.upd != ta.upd || t.del != ta.del || t.autovacuum != ta.autovacuum {
			tables = append(tables, k)
		}
	}
	sort.Strings(tables)
	if len(tables) > 0 {
		fmt.Printf("  PostgreSQL tables, per operation (pg_stat_user_tables; published about once a second):\n")
		fmt.Printf("    %-34s %7s %9s %7s %6s %6s %5s %6s %8s %9s %5s\n", "table", "seqscan", "seq rows", "idxscan", "ins", "upd", "hot", "del", "rows end", "MB end", "vac")
		for _, k := range tables {
			t, ta := b.tables[k], a.tables[k]
			per := func(x, y int64) string { return fmt.Sprintf("%.2f", float64(x-y)/fops) }
			fmt.Printf("    %-34s %7s %9s %7s %6s %6s %5s %6s %8d %9.1f %5d\n", k, per(t.seqScan, ta.seqScan), per(t.seqTupRead, ta.seqTupRead),
				per(t.idxScan, ta.idxScan), per(t.ins, ta.ins), per(t.upd, ta.upd), per(t.hotUpd, ta.hotUpd), per(t.del, ta.del),
				t.live, float64(t.bytes)/(1<<20), t.autovacuum-ta.autovacuum+t.autoanalyze-ta.autoanalyze)
		}
	}

	if note != "" {
		fmt.Printf("  PostgreSQL statements: none ranked (%s)\n", note)
		return
	}
	type stmt struct {
		k pgStmtKey
		d pgStmt
	}
	byDB := map[string][]stmt{}
	totals := map[string]float64{}
	var all float64
	for k, v := range b.stmts {
		u := a.stmts[k]
		d := pgStmt{query: v.query, calls: v.calls - u.calls, rows: v.rows - u.rows, execMs: v.execMs - u.execMs, planMs: v.planMs - u.planMs,
			hit: v.hit - u.hit, read: v.read - u.read, dirtied: v.dirtied - u.dirtied, walBytes: v.walBytes - u.walBytes,
			jitFunctions: v.jitFunctions - u.jitFunctions, jitMs: v.jitMs - u.jitMs}
		if d.calls <= 0 {
			continue
		}
		byDB[k.db] = append(byDB[k.db], stmt{k, d})
		if k.toplevel {
			totals[k.db] += d.execMs
			all += d.execMs
		}
	}
	var dbs []string
	for db := range byDB {
		dbs = append(dbs, db)
	}
	sort.Slice(dbs, func(i, j int) bool { return totals[dbs[i]] > totals[dbs[j]] })
	fmt.Printf("  PostgreSQL statements (pg_stat_statements), per operation: %.3f exec-ms in top-level statements\n", all/fops)
	fmt.Printf("    (exec-ms is time inside the executor, lock and WAL-flush waits included; COMMIT waits for its flush; nested: run by a trigger or function)\n")
	for _, db := range dbs {
		ss := byDB[db]
		sort.Slice(ss, func(i, j int) bool { return ss[i].d.execMs > ss[j].d.execMs })
		fmt.Printf("    %s: %.3f exec-ms\n", db, totals[db]/fops)
		fmt.Printf("      %6s %6s %8s %8s %7s %7s  %s\n", "calls", "rows", "exec-ms", "ms/call", "blk hit", "WAL B", "statement")
		for i, s := range ss {
			if i == 10 {
				break
			}
			q := strings.Join(strings.Fields(s.d.query), " ")
			if len(q) > 110 {
				q = q[:110] + "…"
			}
			if !s.k.toplevel {
				q = "(nested) " + q
			}
			if s.d.jitFunctions > 0 {
				q = fmt.Sprintf("(JIT %.2f ms) ", s.d.jitMs/fops) + q
			}
			fmt.Printf("      %6.2f %6.2f %8.3f %8.3f %7.1f %7.0f  %s\n", float64(s.d.calls)/fops, float64(s.d.rows)/fops, s.d.execMs/fops,
				s.d.execMs/float64(s.d.calls), float64(s.d.hit+s.d.read)/fops, float64(s.d.walBytes)/fops, q)
		}
	}
}
