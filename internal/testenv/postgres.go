package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDirs are where Debian's postgresql packages keep initdb and pg_ctl.
var pgBinDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"}

// Postgres is a PostgreSQL server the tests may create databases on.
type Postgres struct {
	// AdminURL connects to the maintenance database as a superuser.
	AdminURL string
	host     string
	port     int
	dir      string
	owned    bool
	// options are extra server settings (-c name=value …) of an owned
	// cluster, given at every start.
	options string

	// StatStatements reports that the cluster preloads pg_stat_statements
	// (StartPostgresWith asked for it and this PostgreSQL has it);
	// StatStatementsNote says why not when it was asked for.
	StatStatements     bool
	StatStatementsNote string

	mu        sync.Mutex
	templates map[string]string
}

// URL returns a connection URL for database db.
func (p *Postgres) URL(db string) string {
	u, _ := pgx.ParseConfig(p.AdminURL)
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", u.User, u.Host, u.Port, db)
}

var sharedPostgres = sync.OnceValues(func() (*Postgres, error) {
	if url := os.Getenv("OBOL_TEST_POSTGRES_URL"); url != "" {
		return &Postgres{AdminURL: url, templates: map[string]string{}}, nil
	}
	dir, err := sharedDir()
	if err != nil {
		return nil, err
	}
	p, err := startPostgres(filepath.Join(dir, "pg"), PostgresOptions{})
	if err != nil {
		return nil, err
	}
	atExit(func() { _ = p.pgctl("stop", "-m", "immediate") })
	return p, nil
})

// SharedPostgres returns the PostgreSQL shared by this test binary:
// OBOL_TEST_POSTGRES_URL, or a throwaway cluster started once.
func SharedPostgres(tb TB) *Postgres {
	tb.Helper()
	p, err := sharedPostgres()
	if err != nil {
		tb.Fatalf("shared postgres: %v", err)
	}
	return p
}

// StartPostgres starts a dedicated throwaway cluster that the test may stop
// and start (outage tests). It is removed at cleanup.
func StartPostgres(tb TB) *Postgres {
	tb.Helper()
	return StartPostgresWith(tb, PostgresOptions{})
}

// PostgresOptions are what a dedicated cluster runs with beyond the
// durable defaults (fsync and synchronous_commit on).
type PostgresOptions struct {
	// StatStatements preloads pg_stat_statements (tracking nested
	// statements too: triggers, functions) when this machine's PostgreSQL
	// ships it; Postgres.StatStatements reports whether it does. The load
	// tool's cost model ranks statements with it.
	StatStatements bool
}

// StartPostgresWith is StartPostgres with options.
func StartPostgresWith(tb TB, o PostgresOptions) *Postgres {
	tb.Helper()
	p, err := startPostgres(filepath.Join(tb.TempDir(), "pg"), o)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { _ = p.pgctl("stop", "-m", "immediate") })
	return p
}

// asPostgresUser runs a PostgreSQL server binary, as the postgres user when
// we are root (initdb and postgres refuse to run as root).
func asPostgresUser(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err == nil {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
		}
	}
	return exec.Command(bin, args...)
}

func chownPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres user to own the cluster: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// statStatementsLib is where a PostgreSQL whose initdb is at initdb keeps
// the pg_stat_statements library: bin/../lib (Debian's
// /usr/lib/postgresql/N/lib, a source build's /usr/local/pgsql/lib), bin
// being where initdb is once symlinks (/usr/local/bin/initdb) are resolved.
func statStatementsLib(initdb string) string {
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	return filepath.Join(filepath.Dir(filepath.Dir(initdb)), "lib", "pg_stat_statements.so")
}

func startPostgres(dir string, o PostgresOptions) (*Postgres, error) {
	initdb, err := findBin("initdb", pgBinDirs...)
	if err != nil {
		return nil, fmt.Errorf("%w: install the PostgreSQL server (apt-get install -y postgresql) or set OBOL_TEST_POSTGRES_URL", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The parent temp dirs must be traversable by the postgres user.
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 && os.Geteuid() == 0 {
			_ = os.Chmod(d, st.Mode().Perm()|0o011)
		}
	}
	if err := chownPostgres(dir); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgresUser(initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, lastLines(string(out), 20))
	}
	p := &Postgres{host: "127.0.0.1", dir: dir, owned: true, templates: map[string]string{}}
	if o.StatStatements {
		if lib := statStatementsLib(initdb); fileExists(lib) {
			p.options = " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
			p.StatStatements = true
		} else {
			p.StatStatementsNote = "pg_stat_statements is not installed (no " + lib + ")"
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		p.port = freePortNoTB()
		if err = p.pgctl("start"); err == nil {
			p.AdminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
			return p, nil
		}
	}
	return nil, err
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// pgctl runs pg_ctl against the owned cluster.
func (p *Postgres) pgctl(action string, extra ...string) error {
	if !p.owned {
		return fmt.Errorf("postgres at %s is not owned by the harness", p.AdminURL)
	}
	pgctl, err := findBin("pg_ctl", pgBinDirs...)
	if err != nil {
		return err
	}
	args := []string{action, "-D", filepath.Join(p.dir, "data"), "-w", "-t", "30", "-l", filepath.Join(p.dir, "log")}
	if action == "start" {
		// Durable settings, as in production: fsync and synchronous commit on.
		args = append(args, "-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=300%s", p.port, p.dir, p.options))
	}
	args = append(args, extra...)
	if out, err := asPostgresUser(pgctl, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		return fmt.Errorf("pg_ctl %s: %w\n%s\n%s", action, err, out, lastLines(string(log), 20))
	}
	return nil
}

// Stop stops an owned cluster (fast shutdown: connections are closed).
func (p *Postgres) Stop(tb TB) {
	tb.Helper()
	if err := p.pgctl("stop", "-m", "fast"); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Start starts a stopped owned cluster on the same port.
func (p *Postgres) Start(tb TB) {
	tb.Helper()
	if err := p.pgctl("start"); err != nil {
		tb.Fatalf("%v", err)
	}
}

// NewDatabase creates a fresh database for this test from a template that
// migrate has been applied to once per binary, and drops it at cleanup
// (unless OBOL_TEST_KEEP_DB is set). template names the schema (e.g. "vault").
func (p *Postgres) NewDatabase(tb TB, template string, migrate func(ctx context.Context, url string) error) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmpl, err := p.template(ctx, template, migrate)
	if err != nil {
		tb.Fatalf("template %s: %v", template, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "obol_test_" + template + "_" + hex.EncodeToString(b[:])
	if err := p.exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tmpl)); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		if os.Getenv("OBOL_TEST_KEEP_DB") != "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	})
	return p.URL(name)
}

func (p *Postgres) template(ctx context.Context, name string, migrate func(ctx context.Context, url string) error) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.templates[name]; ok {
		return t, nil
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	t := "obol_tmpl_" + name + "_" + hex.EncodeToString(b[:])
	if err := p.exec(ctx, `CREATE DATABASE `+t); err != nil {
		return "", err
	}
	if err := migrate(ctx, p.URL(t)); err != nil {
		return "", err
	}
	p.templates[name] = t
	atExit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, t))
	})
	return t, nil
}

// Exec runs a statement on the maintenance database.
func (p *Postgres) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.AdminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Dump returns `pg_dump` of a database (schema and data, plain SQL).
func (p *Postgres) Dump(tb TB, url string) []byte {
	tb.Helper()
	bin, err := findBin("pg_dump", pgBinDirs...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	out, err := exec.Command(bin, "--no-owner", "--dbname", url).Output()
	if err != nil {
		tb.Fatalf("pg_dump: %v", err)
	}
	return out
}
