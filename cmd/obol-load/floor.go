package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/testenv"
)

// The floor suite measures, on this machine, what the building blocks of an
// Obol operation cost when they do nothing else: a loopback round trip, an
// HTTPS request, a gRPC call over mTLS, a durable PostgreSQL commit, a row
// inside a batched commit, a Redis round trip, and the disk's flush rate
// (pg_test_fsync). Each primitive is driven like the other suites (N
// clients, a warm-up, a measured window) and its cost is the CPU of every
// process involved (this one, PostgreSQL's backends, redis-server) divided
// by the operations in the window. Multiplied by the counts an operation
// needs (the other suites' cost models), they give the machine's ceiling
// for that operation before any of Obol's own work is done.

// batch is the rows of the batched-commit primitive.
const batch = 32

// primitive is one building block and the CPU it costs.
type primitive struct {
	name string
	// unit names what one operation is ("request", "row", …).
	unit  string
	one   result // at 1 client: latency
	many  result // at N clients: throughput
	cpuMs float64
	// perOp is the number of units one op of many counts (rows per batch).
	perOp int
}

// runFloor measures the primitives at 1 client (a closed loop: their
// latency alone) and at conc clients: a closed loop when rate is 0 (their
// throughput and CPU at saturation), else an open loop of rate units a
// second (their latency at that rate on this machine).
func runFloor(dur, warmup time.Duration, conc, rate int) {
	dir, err := os.MkdirTemp("", "obol-load-")
	if err != nil {
		panic(err)
	}
	t := &tb{dir: dir}
	defer t.cleanup()
	fmt.Println("starting PostgreSQL (fsync=on, synchronous_commit=on) and Redis …")
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	pki, err := devpki.Ensure(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	var pgSync string
	if err := pgSyncSetting(pg.AdminURL, &pgSync); err != nil {
		t.Fatalf("read postgres settings: %v", err)
	}
	probe := newCostProbe(t, pg.AdminURL, nil, nil, rd.URL)
	fmt.Printf("postgres synchronous_commit=%s; 1 and %d clients; %s measured per phase after %s warm-up; %d CPUs\n\n", pgSync, conc, dur, warmup, numCPU())

	var prims []primitive
	add := func(name, unit string, perOp int, op func() error) {
		p := primitive{name: name, unit: unit, perOp: perOp}
		p.one = runAt(name+", 1 client", op, 1, warmup/2, dur/2, nil, nil, 0, 1)
		var snaps []costSnap
		p.many = runAt(fmt.Sprintf("%s, %d clients", name, conc), op, conc, warmup, dur, nil, func() { snaps = append(snaps, probe.snap(t)) }, rate, perOp)
		if len(snaps) == 2 && p.many.ops > 0 {
			p.cpuMs = cpuOf(snaps[0], snaps[1]) / float64(p.many.ops*int64(perOp))
		}
		prims = append(prims, p)
	}

	// A TCP round trip of 64 bytes on loopback.
	echo := echoServer(t)
	conns := make(chan net.Conn, conc)
	for i := 0; i < conc; i++ {
		c, err := net.Dial("tcp", echo)
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Cleanup(func() { c.Close() })
		conns <- c
	}
	add("loopback TCP round trip (64 B)", "round trip", 1, func() error {
		c := <-conns
		defer func() { conns <- c }()
		var b [64]byte
		if _, err := c.Write(b[:]); err != nil {
			return err
		}
		_, err := io.ReadFull(c, b[:])
		return err
	})

	// An HTTPS request (HTTP/1.1, TLS 1.3, keep-alive) with a small JSON
	// body and answer: what a merchant's REST call and the gateway's call to
	// an acquirer cost at the least.
	answer := []byte(`{"id":"auth_0123456789","status":"approved","amount":1500,"currency":"EUR"}`)
	httpsURL := "https://" + serveTLS(t, "upstream", pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})) + "/v1/floor"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12},
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	body := []byte(`{"amount":1500,"currency":"EUR","token":"tok_0123456789abcdef0123456789","capture":true}`)
	add("HTTPS request (HTTP/1.1, TLS, keep-alive)", "request", 1, func() error {
		req, _ := http.NewRequest(http.MethodPost, httpsURL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk_test_floor")
		return do(hc, req)
	})

	// A unary gRPC call over mTLS (the health service: no work in it).
	gc := grpcServer(t, pki)
	health := healthpb.NewHealthClient(gc)
	add("gRPC unary call (mTLS)", "call", 1, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	})

	// PostgreSQL: a durable one-row INSERT per transaction; one-row reads;
	// 32 rows per transaction, counted per row.
	pool := floorPool(t, pg.AdminURL, conc)
	payload := make([]byte, 200)
	_, _ = rand.Read(payload)
	add("PostgreSQL commit of a one-row INSERT", "transaction", 1, func() error {
		_, err := pool.Exec(context.Background(), `INSERT INTO floor (v) VALUES ($1)`, payload)
		return err
	})
	add("PostgreSQL one-row read by primary key", "read", 1, func() error {
		var n int
		return pool.QueryRow(context.Background(), `SELECT length(v) FROM floor WHERE id = 1`).Scan(&n)
	})
	rows := make([][]byte, batch)
	for i := range rows {
		rows[i] = payload
	}
	add(fmt.Sprintf("PostgreSQL row in a %d-row committed INSERT", batch), "row", batch, func() error {
		_, err := pool.Exec(context.Background(), `INSERT INTO floor (v) SELECT unnest($1::bytea[])`, rows)
		return err
	})

	// A Redis round trip.
	ropt, err := redis.ParseURL(rd.URL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	ropt.PoolSize = conc
	ropt.MaintNotificationsConfig = redisconn.NoMaintNotifications()
	rc := redis.NewClient(ropt)
	t.Cleanup(func() { rc.Close() })
	add("Redis round trip (PING)", "round trip", 1, func() error {
		return rc.Ping(context.Background()).Err()
	})

	fsync, fsyncErr := pgTestFsync(t.TempDir())
	budget := float64(numCPU()) * 1000 // CPU-ms a second on this machine

	printFloor(os.Stdout, prims, conc, rate, budget)
	if fsyncErr != nil {
		fmt.Printf("\npg_test_fsync: %v\n", fsyncErr)
	} else {
		fmt.Printf("\npg_test_fsync, one 8 kB write then fdatasync: %.0f flushes/s (%.0f µs each)\n", fsync, 1e6/fsync)
	}

	if rate > 0 {
		fmt.Printf("\nCeilings of this machine: from a closed-loop run (without --rate); at a fixed rate a primitive's CPU per unit holds the fixed costs of a process that is not saturated (the pacer's 5,000 wake-ups a second among them).\n")
		return
	}
	cost := map[string]float64{}
	for _, p := range prims {
		cost[p.name] = p.cpuMs
	}
	https, grpcCall, commit, row := cost["HTTPS request (HTTP/1.1, TLS, keep-alive)"], cost["gRPC unary call (mTLS)"], cost["PostgreSQL commit of a one-row INSERT"], cost[fmt.Sprintf("PostgreSQL row in a %d-row committed INSERT", batch)]
	fmt.Printf("\nCeilings of this machine for the issue's operations, from the primitives alone (no JSON, crypto, rules or Obol code):\n")
	for _, c := range []struct {
		name  string
		parts string
		ms    float64
	}{
		{"payment at the target's shape", "2 REST requests + 2 acquirer requests + 5 gRPC calls + 4 commits", 4*https + 5*grpcCall + 4*commit},
		{"payment, every write group-committed", "2 REST + 2 acquirer + 5 gRPC + 8 batched rows", 4*https + 5*grpcCall + 8*row},
		{"forward (one revealed field)", "1 REST + 1 upstream request + 1 gRPC + 1 batched row", 2*https + grpcCall + row},
		{"riskd Evaluate", "1 gRPC call", grpcCall},
		{"tokenize (durable)", "1 REST + 1 batched row", https + row},
	} {
		fmt.Printf("  %-38s %-66s %6.3f CPU-ms  ≤ %6.0f/s\n", c.name, c.parts, c.ms, budget/c.ms)
	}
}

// cpuOf is the CPU every counted process spent between two snapshots, in ms.
func cpuOf(a, b costSnap) float64 {
	d := b.self - a.self
	for k, v := range b.procs {
		d += v - a.procs[k]
	}
	return float64(d) / float64(time.Millisecond)
}

func echoServer(t *tb) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { ln.Close() })
	as("upstream", func() {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = io.Copy(c, c)
				}()
			}
		}()
	})
	return ln.Addr().String()
}

func grpcServer(t *tb, pki *devpki.PKI) *grpc.ClientConn {
	srvTLS, err := pki.ServerTLS()
	if err != nil {
		t.Fatalf("%v", err)
	}
	srvTLS.ClientAuth = tls.RequireAndVerifyClientCert
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	as("upstream", func() { go func() { _ = s.Serve(ln) }() })
	t.Cleanup(s.Stop)
	cert, err := pki.ClientCert("floor-client", "spiffe://obol.local/floor")
	if err != nil {
		t.Fatalf("%v", err)
	}
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert))))
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func floorPool(t *tb, adminURL string, conc int) *pgxpool.Pool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE floor (id bigserial PRIMARY KEY, v bytea NOT NULL); INSERT INTO floor (v) VALUES ('\x00')`)
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("%v", err)
	}
	cfg, err := pgxpool.ParseConfig(adminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	cfg.MaxConns = int32(conc)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// pgTestFsync runs PostgreSQL's pg_test_fsync on dir's file system (the
// one the test clusters live on) and returns fdatasync's flushes a second.
func pgTestFsync(dir string) (float64, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_test_fsync")
	sort.Strings(bins)
	if len(bins) == 0 {
		p, err := exec.LookPath("pg_test_fsync")
		if err != nil {
			return 0, errors.New("not found (it comes with the PostgreSQL server package)")
		}
		bins = []string{p}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins[len(bins)-1], "-s", "2", "-f", filepath.Join(dir, "pg_test_fsync.out")).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, lastLine(out))
	}
	return parseFdatasync(out)
}

var fdatasyncLine = regexp.MustCompile(`^\s*fdatasync\s+([0-9][0-9.,]*)\s+ops/sec`)

// parseFdatasync reads the first "fdatasync N ops/sec" line of
// pg_test_fsync's output: the one-8kB-write comparison.
func parseFdatasync(out []byte) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := fdatasyncLine.FindStringSubmatch(sc.Text()); m != nil {
			v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("pg_test_fsync: unreadable rate %q", m[1])
			}
			return v, nil
		}
	}
	return 0, errors.New("pg_test_fsync printed no fdatasync line")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// printFloor prints the primitives' table: at a fixed rate (rate > 0) the
// N-client column is the latency at that rate, and no ceiling is drawn
// from its CPU.
func printFloor(w io.Writer, prims []primitive, conc, rate int, budget float64) {
	loop := fmt.Sprintf("%d clients: p50 / p99", conc)
	thr := fmt.Sprintf("%d clients, units/s", conc)
	if rate > 0 {
		loop = fmt.Sprintf("%d units/s: p50 / p99", rate)
		thr = "units/s done"
	}
	lw, tw := max(len(loop), 21), max(len(thr), 11)
	header := fmt.Sprintf("\n%-46s %12s %*s %*s %12s", "primitive (client and server both counted)", "1 client p50", tw, thr, lw, loop, "CPU-ms/unit")
	if rate == 0 {
		header += fmt.Sprintf(" %s", fmt.Sprintf("units/s at %.0f CPU-ms/s", budget))
	}
	fmt.Fprintln(w, header)
	for _, p := range prims {
		per := max(1, p.perOp)
		oneV, thrV, latV, cpuV, capV := "n/a", "n/a", "n/a", "n/a", "n/a"
		if p.one.ops > 0 {
			oneV = p.one.p50.Round(time.Microsecond).String()
		}
		if p.many.ops > 0 {
			thrV = fmt.Sprintf("%.0f", p.many.rps*float64(per))
			latV = fmt.Sprintf("%s / %s", p.many.p50.Round(time.Microsecond), p.many.p99.Round(time.Microsecond))
		}
		if p.cpuMs > 0 {
			cpuV, capV = fmt.Sprintf("%.4f", p.cpuMs), fmt.Sprintf("%.0f", budget/p.cpuMs)
		}
		line := fmt.Sprintf("%-46s %12s %*s %*s %12s", p.name, oneV, tw, thrV, lw, latV, cpuV)
		if rate == 0 {
			line += fmt.Sprintf(" %10s", capV)
		}
		fmt.Fprintln(w, line)
		if p.many.errors+p.one.errors > 0 {
			fmt.Fprintf(w, "    (%d errors)\n", p.many.errors+p.one.errors)
		}
		if p.many.missed > 0 {
			fmt.Fprintf(w, "    (%d units not sent: the primitive did not hold the rate, see the WARNING above)\n", p.many.missed*int64(per))
		}
	}
	if rate > 0 {
		fmt.Fprintf(w, "(at %d units/s a latency counts from the moment its operation was due, less up to %s of the tool's own lateness; a batch of rows is one operation, %d units, its latency the batch's; the CPU-ms per unit include the fixed costs of a process that is not saturated)\n", rate, graceLate, batch)
	}
}
