package db

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

var roleCounter atomic.Int64

// env is one test's database, owned by a login role whose password has every
// character that breaks URLs, and the step binaries.
type env struct {
	t       *testing.T
	srv     *pgenv.Server
	db      string
	role    string
	pw      string
	url     string // the role's URL
	bins    map[string]string
	secrets *kit.Secrets
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test against a real PostgreSQL (skipped with -short)")
	}
	srv := pgenv.Shared(t)
	e := &env{t: t, srv: srv, secrets: kit.NewSecrets(t)}
	e.role = fmt.Sprintf("fault_%d_%d", os.Getpid(), roleCounter.Add(1))
	e.pw = "Fa:ult@/%?pw#" + strconv.Itoa(int(roleCounter.Load())) + " x'y"
	e.secrets.Add(e.pw)
	e.secrets.Add(srv.Password)
	ctx := context.Background()
	if err := srv.Exec(ctx, "postgres", "CREATE ROLE "+pgx.Identifier{e.role}.Sanitize()+" LOGIN PASSWORD "+literal(e.pw)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.ensureUp()
		_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{e.role}.Sanitize())
	})
	e.bins = stepbin.Binaries(t, "migrate", "wait-for-db")
	return e
}

// newDB creates a fresh database owned by the role, with the side-effect table
// every generated migration writes to.
func (e *env) newDB() {
	e.t.Helper()
	_, e.db = pgenv.NewDatabase(e.t)
	e.t.Cleanup(e.ensureUp) // runs before the database is dropped
	ctx := context.Background()
	e.super("ALTER DATABASE " + pgx.Identifier{e.db}.Sanitize() + " OWNER TO " + pgx.Identifier{e.role}.Sanitize())
	if err := e.srv.Exec(ctx, e.db, "CREATE TABLE effects (version int NOT NULL, at timestamptz DEFAULT clock_timestamp()); ALTER TABLE effects OWNER TO "+pgx.Identifier{e.role}.Sanitize()); err != nil {
		e.t.Fatal(err)
	}
	e.url = e.srv.UserURL(e.role, e.pw, e.db)
}

// ensureUp restarts the shared server if a test stopped it and failed before
// starting it again, so the following tests still have a server.
func (e *env) ensureUp() {
	if e.srv.PID() == 0 {
		if err := e.srv.StartServer(); err != nil {
			e.t.Errorf("restarting PostgreSQL: %v", err)
		}
	}
}

func (e *env) super(sql string) {
	e.t.Helper()
	if err := e.srv.Exec(context.Background(), "postgres", sql); err != nil {
		e.t.Fatal(err)
	}
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// migrations writes n migrations into a new directory. Each creates a table and
// records itself in effects in the same transaction; sleepEvery > 0 adds
// pg_sleep(sleep) to every sleepEvery-th one, so a run lasts long enough to be
// interrupted at many distinct points.
func migrations(t *testing.T, n, sleepEvery int, sleep time.Duration) string {
	return writeMigrations(t, n, sleepEvery, sleep, true)
}

// dataMigrations are like migrations without the CREATE TABLE: data changes only,
// which nothing in the catalog stops from happening twice.
func dataMigrations(t *testing.T, n, sleepEvery int, sleep time.Duration) string {
	return writeMigrations(t, n, sleepEvery, sleep, false)
}

func writeMigrations(t *testing.T, n, sleepEvery int, sleep time.Duration, ddl bool) string {
	t.Helper()
	dir := t.TempDir()
	for v := 1; v <= n; v++ {
		up := fmt.Sprintf("INSERT INTO effects (version) VALUES (%d);\n", v)
		if ddl {
			up = fmt.Sprintf("CREATE TABLE t_%04d (id int);\n", v) + up
		}
		if sleepEvery > 0 && v%sleepEvery == 0 {
			up += fmt.Sprintf("SELECT pg_sleep(%g);\n", sleep.Seconds())
		}
		down := fmt.Sprintf("DELETE FROM effects WHERE version = %d;\n", v)
		if ddl {
			down = fmt.Sprintf("DROP TABLE t_%04d;\n", v) + down
		}
		body := "-- +goose Up\n" + up + "-- +goose Down\n" + down
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d_m%d.sql", v, v)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (e *env) stepEnv(extra ...string) []string {
	return append([]string{"CHARTREUSE_DATABASE_URL=" + e.url, "CHARTREUSE_SKIP_VERSION_CHECK=true"}, extra...)
}

// startMigrate starts the migrate binary on the test's database.
func (e *env) startMigrate(dir string, args ...string) *stepbin.Proc {
	e.t.Helper()
	p, err := stepbin.Start(e.bins["migrate"], e.stepEnv(), append([]string{"--dir", dir}, args...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if p.Running() {
			p.Kill()
		}
	})
	return p
}

// finish waits for p and records its output for the secret scan.
func (e *env) finish(p *stepbin.Proc, label string, timeout time.Duration) stepbin.Result {
	e.t.Helper()
	code, timedOut := p.Wait(context.Background(), timeout)
	r := p.Result(code)
	e.secrets.Record(label, r.Output())
	if timedOut {
		e.t.Fatalf("%s did not finish within %s:\n%s", label, timeout, r.Stderr)
	}
	return r
}

// runMigrate runs migrate to completion.
func (e *env) runMigrate(label, dir string, args ...string) stepbin.Result {
	e.t.Helper()
	return e.finish(e.startMigrate(dir, args...), label, 3*time.Minute)
}

// state is what the database says was applied.
type state struct {
	effects map[int]int // version → times its side effect happened
	rows    map[int]int // version → rows in goose_db_version (applied ones)
	notApp  int         // rows with is_applied = false
	tables  int         // t_NNNN tables
}

func (e *env) state() state {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL(e.db))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	st := state{effects: map[int]int{}, rows: map[int]int{}}
	count := func(q string, into map[int]int) {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			e.t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var v, n int
			if err := rows.Scan(&v, &n); err != nil {
				e.t.Fatal(err)
			}
			into[v] = n
		}
	}
	count("SELECT version, count(*) FROM effects GROUP BY version", st.effects)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&exists); err != nil {
		e.t.Fatal(err)
	}
	if exists {
		count("SELECT version_id, count(*) FROM goose_db_version WHERE is_applied AND version_id > 0 GROUP BY version_id", st.rows)
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE NOT is_applied").Scan(&st.notApp); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname ~ '^t_[0-9]{4}$' AND relkind = 'r'`).Scan(&st.tables); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// applied is the number of migrations applied.
func (s state) applied() int { return len(s.rows) }

// consistent checks that every migration's side effect and version row went
// together, each at most once, and (complete) that all n are there.
func (s state) check(n int, complete bool) error {
	var problems []string
	for v, c := range s.effects {
		if c != 1 {
			problems = append(problems, fmt.Sprintf("version %d's side effect happened %d times", v, c))
		}
		if s.rows[v] == 0 {
			problems = append(problems, fmt.Sprintf("version %d's side effect happened but it is not recorded", v))
		}
	}
	for v, c := range s.rows {
		if c != 1 {
			problems = append(problems, fmt.Sprintf("version %d has %d version rows", v, c))
		}
		if s.effects[v] == 0 {
			problems = append(problems, fmt.Sprintf("version %d is recorded but its side effect is missing", v))
		}
	}
	if s.notApp > 0 {
		problems = append(problems, fmt.Sprintf("%d version rows with is_applied=false", s.notApp))
	}
	if s.tables != len(s.rows) {
		problems = append(problems, fmt.Sprintf("%d tables for %d applied migrations", s.tables, len(s.rows)))
	}
	if complete && len(s.rows) != n {
		problems = append(problems, fmt.Sprintf("%d of %d migrations applied", len(s.rows), n))
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
		}
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// lockHolders counts sessions holding the migration lock on the test's database.
func (e *env) lockHolders() int {
	n, _ := e.lock()
	return n
}

// lockHolderPID is the backend holding the migration lock, 0 when none.
func (e *env) lockHolderPID() int {
	_, pid := e.lock()
	return pid
}

// lock reads pg_locks for the migration lock on the test's database: how many
// sessions hold it, and the highest pid among them (0 when none).
func (e *env) lock() (holders, pid int) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(max(l.pid), 0) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
		WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1
		  AND l.classid::bigint = ($2::bigint >> 32) AND l.objid::bigint = ($2::bigint & 4294967295) AND l.objsubid = 1`,
		e.db, migrate.LockID).Scan(&holders, &pid)
	if err != nil {
		e.t.Fatal(err)
	}
	return holders, pid
}
