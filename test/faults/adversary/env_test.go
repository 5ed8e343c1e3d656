package adversary

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

// run is one test's fresh database on a server of its own, and the migrations
// it applies.
type run struct {
	t     *testing.T
	srv   *server
	db    string
	url   string // owner's URL
	table string // --table; "" leaves migrate's default
	dir   string
	migs  []migration
	bin   string
	// secrets fails the test if any output shows a password, faults or not.
	secrets *kit.Secrets

	mu    sync.Mutex
	procs []*proc
}

// schema holds what every run's database starts with: the log every migration
// statement writes to (a plain table: it survives crashes, and without a unique
// key a statement run twice leaves two rows), a schema for a custom version
// table, and what TestStoppedPartway's stoppers use.
const schema = `
CREATE TABLE adv_log (version bigint NOT NULL, stmt int NOT NULL, pid int NOT NULL, app text NOT NULL,
	at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE SCHEMA adv;
CREATE TABLE adv_blocked (id int);
INSERT INTO adv_blocked VALUES (1);
CREATE TABLE adv_rows (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO adv_rows VALUES (1, 0), (2, 0);
CREATE FUNCTION adv_deadlock(v bigint, s int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE adv_rows SET n = n + 1 WHERE id = 2;
	UPDATE adv_rows SET n = n + 1 WHERE id = 1;
	INSERT INTO adv_log (version, stmt, pid, app) VALUES (v, s, pg_backend_pid(), current_setting('application_name'));
END $$;
`

// newRun creates the database (owned by owner, dropped when the test ends) and
// writes the migrations.
func newRun(t *testing.T, srv *server, table string, migs []migration) *run {
	t.Helper()
	ctx := context.Background()
	name, err := srv.CreateDatabase(ctx, "adv")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, srv: srv, db: name, table: table, migs: migs, secrets: kit.NewSecrets(t)}
	r.secrets.Add(srv.password)
	r.secrets.Add(srv.Password)
	t.Cleanup(func() {
		r.killAll()
		if srv.PID() == 0 {
			if err := srv.StartServer(); err != nil {
				t.Errorf("restarting PostgreSQL: %v", err)
				return
			}
		}
		if err := srv.DropDatabase(context.Background(), name); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	r.super("postgres", "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" OWNER TO "+owner)
	// As the owner, so that everything belongs to it.
	if err := r.exec(ctx, srv.UserURL(owner, srv.password, name), schema); err != nil {
		t.Fatalf("preparing the database: %v", err)
	}
	r.url = srv.UserURL(owner, srv.password, name)
	r.dir = writeMigrations(t, migs)
	r.bin = stepbin.Binaries(t, "migrate")["migrate"]
	return r
}

// useProxy sends the migrators' connections (not the attacker's) through a TCP
// proxy, whose Down resets them all as a network cut would.
func (r *run) useProxy() *kit.Proxy {
	r.t.Helper()
	px, err := kit.NewProxy(net.JoinHostPort(r.srv.Host, strconv.Itoa(r.srv.Port)))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(px.Close)
	u, err := url.Parse(r.url)
	if err != nil {
		r.t.Fatal(err)
	}
	u.Host = px.Addr
	r.url = u.String()
	return px
}

func (r *run) exec(ctx context.Context, url, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// super runs SQL as the superuser on db, failing the test on error.
func (r *run) super(db, sql string, args ...any) {
	r.t.Helper()
	if err := r.exec(context.Background(), r.srv.URL(db), sql, args...); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// connect opens a superuser session on the run's database (the attacker's and
// the operator's; never handed to the product).
func (r *run) connect() *pgx.Conn {
	r.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.srv.URL(r.db))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// app is how a migrator names its sessions.
type app int

const (
	appDefault app = iota // migrate's own application_name
	appURL                // application_name in the URL
	appEnv                // PGAPPNAME
)

func (a app) String() string {
	return [...]string{"default", "url", "PGAPPNAME"}[a]
}

// proc is one migrate process.
type proc struct {
	*stepbin.Proc
	label  string
	app    app
	mu     sync.Mutex
	signal string // the signal the attacker sent, if any
	result *stepbin.Result
}

func (p *proc) signalled() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signal
}

// send signals the process (at most once recorded; SIGKILL overrides).
func (p *proc) send(sig syscall.Signal) {
	name := "SIGTERM"
	if sig == syscall.SIGKILL {
		name = "SIGKILL"
	}
	p.mu.Lock()
	if p.signal == "" || sig == syscall.SIGKILL {
		p.signal = name
	}
	p.mu.Unlock()
	_ = p.Cmd.Process.Signal(sig)
}

// start runs migrate on the run's database with the run's directory and table.
func (r *run) start(label string, a app, args ...string) *proc {
	r.t.Helper()
	url := r.url
	env := []string{"CHARTREUSE_SKIP_VERSION_CHECK=true"}
	switch a {
	case appURL:
		url += "&application_name=adversary_url"
	case appEnv:
		env = append(env, "PGAPPNAME=adversary_env")
	}
	env = append(env, "CHARTREUSE_DATABASE_URL="+url)
	full := []string{"--dir", r.dir}
	if r.table != "" {
		full = append(full, "--table", r.table)
	}
	p, err := stepbin.Start(r.bin, env, append(full, args...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	mp := &proc{Proc: p, label: label, app: a}
	r.mu.Lock()
	r.procs = append(r.procs, mp)
	r.mu.Unlock()
	return mp
}

// finish waits for p (killing it after timeout) and keeps its result.
func (r *run) finish(p *proc, timeout time.Duration) (stepbin.Result, bool) {
	code, timedOut := p.Wait(context.Background(), timeout)
	res := p.Result(code)
	r.secrets.Record(p.label, res.Output())
	p.mu.Lock()
	p.result = &res
	p.mu.Unlock()
	return res, timedOut
}

// migrate runs one migrate process to completion.
func (r *run) migrate(label string, a app, args ...string) stepbin.Result {
	r.t.Helper()
	res, timedOut := r.finish(r.start(label, a, args...), 3*time.Minute)
	if timedOut {
		r.t.Fatalf("%s did not finish within 3m:\n%s", label, tail(res.Stderr, 10))
	}
	return res
}

func (r *run) running() []*proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*proc
	for _, p := range r.procs {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

func (r *run) killAll() {
	for _, p := range r.running() {
		p.Kill()
	}
}

// versionTable and dirtyTable are the qualified names migrate uses.
func (r *run) versionTable() string {
	t := r.table
	if t == "" {
		t = migrate.DefaultTable
	}
	if !strings.Contains(t, ".") {
		t = "public." + t
	}
	return t
}

func (r *run) dirtyTable() string { return r.versionTable() + "_dirty" }

// stmtKey names one statement of one migration; statements count from 1.
type stmtKey struct {
	version int64
	stmt    int
}

// execs are the times one statement ran.
type execs struct {
	pids []int32
	apps []string
}

// dirtyRow is one row of the dirty record.
type dirtyRow struct {
	Version     int64
	Direction   string
	File        string
	Done, Total int
	LastError   string
}

// snapshot is what the database says happened.
type snapshot struct {
	ran        map[stmtKey]execs
	rows       map[int64]int // version → applied rows in the version table
	dirty      map[int64]dirtyRow
	dirtyTable bool
	lockPIDs   []int32
}

func (r *run) snapshot() snapshot {
	r.t.Helper()
	s, err := r.trySnapshot()
	if err != nil {
		r.t.Fatalf("reading the database: %v", err)
	}
	return s
}

func (r *run) trySnapshot() (snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.srv.URL(r.db))
	if err != nil {
		return snapshot{}, err
	}
	defer conn.Close(ctx)
	s := snapshot{ran: map[stmtKey]execs{}, rows: map[int64]int{}, dirty: map[int64]dirtyRow{}}
	rows, err := conn.Query(ctx, `SELECT version, stmt, pid, app FROM adv_log ORDER BY at`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var k stmtKey
		var pid int32
		var a string
		if err := rows.Scan(&k.version, &k.stmt, &pid, &a); err != nil {
			return s, err
		}
		e := s.ran[k]
		e.pids, e.apps = append(e.pids, pid), append(e.apps, a)
		s.ran[k] = e
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	var vt, dt bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL`,
		r.versionTable(), r.dirtyTable()).Scan(&vt, &dt); err != nil {
		return s, err
	}
	if vt {
		rows, err := conn.Query(ctx, `SELECT version_id, count(*) FROM `+r.versionTable()+` WHERE is_applied AND version_id > 0 GROUP BY 1`)
		if err != nil {
			return s, err
		}
		for rows.Next() {
			var v int64
			var n int
			if err := rows.Scan(&v, &n); err != nil {
				return s, err
			}
			s.rows[v] = n
		}
		if err := rows.Err(); err != nil {
			return s, err
		}
	}
	s.dirtyTable = dt
	if dt {
		rows, err := conn.Query(ctx, `SELECT version, direction, file, statements_done, statements_total, coalesce(last_error, '') FROM `+r.dirtyTable())
		if err != nil {
			return s, fmt.Errorf("reading the dirty record: %w", err)
		}
		for rows.Next() {
			var d dirtyRow
			if err := rows.Scan(&d.Version, &d.Direction, &d.File, &d.Done, &d.Total, &d.LastError); err != nil {
				return s, fmt.Errorf("reading the dirty record: %w", err)
			}
			s.dirty[d.Version] = d
		}
		if err := rows.Err(); err != nil {
			return s, err
		}
	}
	s.lockPIDs, err = lockHolders(ctx, conn)
	return s, err
}

// lockHolders are the backends holding the migration lock on conn's database.
func lockHolders(ctx context.Context, conn *pgx.Conn) ([]int32, error) {
	return pids(ctx, conn, `SELECT l.pid FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
		ORDER BY l.pid`, migrate.LockID)
}

// sessions are the backends the migrators have open on the run's database,
// whatever their application_name, ordered by pid.
func sessions(ctx context.Context, conn *pgx.Conn) ([]int32, error) {
	return pids(ctx, conn, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND usename = $1 AND backend_type = 'client backend' ORDER BY pid`, owner)
}

func pids(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]int32, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

// tail is the last n lines of s, each cut to 300 bytes.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "..."
		}
	}
	return strings.Join(lines, "\n")
}

// writeMigrations writes the migration files into a new directory.
func writeMigrations(t *testing.T, migs []migration) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range migs {
		if err := os.WriteFile(filepath.Join(dir, m.file()), []byte(m.source()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sortedVersions[V any](m map[int64]V) []int64 {
	out := make([]int64, 0, len(m))
	for v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
