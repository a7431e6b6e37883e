package topology

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/testenv"
)

// standbyName is the standby's application_name, which the primary's
// synchronous_standby_names names.
const standbyName = "obol_standby"

// Databases are the topology's PostgreSQL databases, by the key of
// Topology.PostgresURLs.
var Databases = map[string]string{"vault": "obol_vault", "gateway": "obol_gateway", "ledger": "obol_ledger", "events": "obol_events"}

// pgNode is one PostgreSQL server of the primary/standby pair.
type pgNode struct {
	*Process
	port int
	data string
}

func (n *pgNode) adminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=3", n.port)
}

func pgBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, g := range []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"} {
		m, _ := filepath.Glob(filepath.Join(g, name))
		if len(m) > 0 {
			return m[len(m)-1], nil
		}
	}
	return "", fmt.Errorf("%s not found (apt-get install -y postgresql)", name)
}

// pgCredential runs PostgreSQL's binaries as the postgres user when we are
// root (initdb and postgres refuse to run as root).
func pgCredential() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root needs a postgres user to run PostgreSQL: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

func runAs(cred *syscall.Credential, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = os.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	return cmd.CombinedOutput()
}

// startPostgres starts the primary (initdb) and its synchronous streaming
// standby (pg_basebackup -R), and creates the databases on the primary.
func (t *Topology) startPostgres(tb testenv.TB) error {
	initdb, err := pgBin("initdb")
	if err != nil {
		return err
	}
	postgres, err := pgBin("postgres")
	if err != nil {
		return err
	}
	basebackup, err := pgBin("pg_basebackup")
	if err != nil {
		return err
	}
	cred, uid, gid, err := pgCredential()
	if err != nil {
		return err
	}
	root := filepath.Join(t.Dir, "postgres")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	// The postgres user must reach its directories.
	for d := root; d != "/" && d != "."; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && os.Geteuid() == 0 && st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(d, st.Mode().Perm()|0o011)
		}
	}
	mk := func(name string, port int) (*pgNode, error) {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(dir, uid, gid); err != nil {
				return nil, err
			}
		}
		lf, err := logFile(t.logDir, "postgres-"+name)
		if err != nil {
			return nil, err
		}
		t.closers = append(t.closers, func() { lf.Close() })
		n := &pgNode{port: port, data: filepath.Join(dir, "data")}
		n.Process = &Process{Name: "postgres-" + name, Addr: "127.0.0.1:" + strconv.Itoa(port), path: postgres, dir: dir, cred: cred, out: &testenv.SyncBuffer{}, log: lf,
			env: []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"},
			args: []string{"-D", n.data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
				"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=300",
				"-c", "wal_level=replica", "-c", "max_wal_senders=10", "-c", "hot_standby=on", "-c", "wal_keep_size=256MB"}}
		n.ready = func() error { return pgPing(n.adminURL()) }
		return n, nil
	}
	t.pgPrimary, err = mk("a", testenv.FreePort(tb))
	if err != nil {
		return err
	}
	if out, err := runAs(cred, initdb, "-D", t.pgPrimary.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tail(string(out), 20))
	}
	// The standby is named in the primary's configuration (which
	// pg_basebackup copies; see FailoverPostgres).
	if err := appendFile(t.pgPrimary.data+"/postgresql.auto.conf", fmt.Sprintf("synchronous_standby_names = 'FIRST 1 (%s)'\n", standbyName)); err != nil {
		return err
	}
	t.procs = append(t.procs, t.pgPrimary.Process)
	if err := t.pgPrimary.Start(); err != nil {
		return err
	}
	t.pgStandby, err = mk("b", testenv.FreePort(tb))
	if err != nil {
		return err
	}
	if out, err := runAs(cred, basebackup, "-h", "127.0.0.1", "-p", strconv.Itoa(t.pgPrimary.port), "-U", "postgres",
		"-D", t.pgStandby.data, "-R", "-X", "stream", "--no-sync"); err != nil {
		return fmt.Errorf("pg_basebackup: %w\n%s", err, tail(string(out), 20))
	}
	if err := appendFile(t.pgStandby.data+"/postgresql.auto.conf",
		fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n", t.pgPrimary.port, standbyName)); err != nil {
		return err
	}
	t.procs = append(t.procs, t.pgStandby.Process)
	if err := t.pgStandby.Start(); err != nil {
		return err
	}
	if err := testenv.WaitFor(30*time.Second, func() error {
		state, err := t.ReplicationState()
		if err != nil {
			return err
		}
		if state[standbyName] != "sync" {
			return fmt.Errorf("pg_stat_replication: %v", state)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("the standby did not become synchronous: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, t.pgPrimary.adminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	t.PostgresURLs = map[string]string{}
	for key, db := range Databases {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
		t.PostgresURLs[key] = fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
			t.pgPrimary.port, t.pgStandby.port, db)
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pgPing(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// ReplicationState is pg_stat_replication on the current primary:
// application_name → sync_state ("sync", "async", ...).
func (t *Topology) ReplicationState() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, t.PostgresPrimary().adminURL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT application_name, sync_state FROM pg_stat_replication`)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var name, state string
		if err := rows.Scan(&name, &state); err != nil {
			return nil, err
		}
		out[name] = state
	}
	return out, rows.Err()
}

// PostgresPrimary is the server that currently takes writes (the standby
// after FailoverPostgres).
func (t *Topology) PostgresPrimary() *pgNode {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pgFailedOver {
		return t.pgStandby
	}
	return t.pgPrimary
}

// PostgresProcesses are the primary and the standby as started (after a
// failover the first is dead and the second is the primary).
func (t *Topology) PostgresProcesses() []*Process {
	return []*Process{t.pgPrimary.Process, t.pgStandby.Process}
}

// FailoverPostgres is the PostgreSQL drill: SIGKILL the primary, promote
// the standby (pg_ctl promote), and clear synchronous_standby_names on it
// (it inherited the primary's, naming itself: with no standby left every
// commit would wait forever). In production Patroni (or the operator, by
// hand) does these steps; the daemons follow by themselves, as their
// multi-host URLs with target_session_attrs=read-write take the first
// server that accepts writes. It can run once per topology.
func (t *Topology) FailoverPostgres() error {
	t.mu.Lock()
	if t.pgFailedOver {
		t.mu.Unlock()
		return fmt.Errorf("postgres already failed over (there is no standby left)")
	}
	t.mu.Unlock()
	t.pgPrimary.Kill()
	pgctl, err := pgBin("pg_ctl")
	if err != nil {
		return err
	}
	cred, _, _, err := pgCredential()
	if err != nil {
		return err
	}
	if out, err := runAs(cred, pgctl, "promote", "-D", t.pgStandby.data, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl promote: %w\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, t.pgStandby.adminURL())
	if err != nil {
		return fmt.Errorf("connect to the promoted standby: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER SYSTEM SET synchronous_standby_names = ''`); err != nil {
		return fmt.Errorf("clear synchronous_standby_names: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("reload the configuration: %w", err)
	}
	var readOnly string
	if err := conn.QueryRow(ctx, `SHOW transaction_read_only`).Scan(&readOnly); err != nil || strings.TrimSpace(readOnly) != "off" {
		return fmt.Errorf("the promoted standby is not read-write (%q, %v)", readOnly, err)
	}
	t.mu.Lock()
	t.pgFailedOver = true
	t.mu.Unlock()
	return nil
}
