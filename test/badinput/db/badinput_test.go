// Package db runs the bad-input corpus of the database steps (wait-for-db,
// wait-patroni, migrate) as real binaries against a real PostgreSQL: each bad
// input must give a one-line error that names the problem, the documented exit
// code, and no change to the database (catalog, roles, version table and
// advisory locks compared before and after). Every output is scanned for the
// passwords in use. -short skips it.
package db

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

// The login role's password has every character that breaks URLs.
const password = "B@d:in/put%41?#pw x'"

// Passwords that are typed unescaped into a URL or a keyword/value string: a
// leading '/', digits then '/' (taken for a port), a blank then a keyword.
const (
	slashFirst   = "/Tr0ub4dor&3"
	digitsSlash  = "5432/horsebattery"
	blankKeyword = "correct host=staple"
)

// fixture is one case's world: a fresh database owned by the login role, a
// migration directory, and a scratch directory.
type fixture struct {
	t       *testing.T
	srv     *pgenv.Server
	db      string
	role    string
	url     string // the login role's URL
	dir     string // migrations (three valid ones unless the case changes them)
	scratch string
}

func (f *fixture) sql(q string) {
	f.t.Helper()
	if err := f.srv.Exec(context.Background(), f.db, q); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// files replaces the migration directory's content.
func (f *fixture) files(files map[string]string) {
	f.t.Helper()
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		os.Remove(filepath.Join(f.dir, e.Name()))
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(body), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

// file writes a scratch file and returns its path.
func (f *fixture) file(name, content string, mode os.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.scratch, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func mig(up, down string) string {
	s := "-- +goose Up\n" + up + "\n"
	if down != "" {
		s += "-- +goose Down\n" + down + "\n"
	}
	return s
}

var three = map[string]string{
	"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
	"00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;"),
	"00003_c.sql": mig("CREATE TABLE c (id int);", "DROP TABLE c;"),
}

// gooseTable creates goose's version table (as goose does) holding versions.
func (f *fixture) gooseTable(versions ...int) {
	f.t.Helper()
	f.sql(`CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp DEFAULT now());
		INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)`)
	for _, v := range versions {
		f.sql(fmt.Sprintf("INSERT INTO goose_db_version (version_id, is_applied) VALUES (%d, true)", v))
	}
	f.sql("ALTER TABLE goose_db_version OWNER TO " + pgx.Identifier{f.role}.Sanitize())
}

type badCase struct {
	name  string
	step  string
	args  func(f *fixture) []string // flags; --dir is added for migrate unless given
	env   func(f *fixture) []string // replaces CHARTREUSE_DATABASE_URL=<login URL> when set
	setup func(f *fixture)
	// nobody runs the binary as the unprivileged user nobody (root reads any file).
	nobody bool
	code   int
	want   []string // the error line names the problem: each of these, case-insensitive
}

func flags(a ...string) func(*fixture) []string { return func(*fixture) []string { return a } }

func urlEnv(url string) func(*fixture) []string {
	return func(*fixture) []string { return []string{"CHARTREUSE_DATABASE_URL=" + url} }
}

func cases() []badCase {
	migrateUp := func(extra ...string) func(*fixture) []string {
		return func(f *fixture) []string { return append([]string{"--dir", f.dir}, extra...) }
	}
	return []badCase{
		// wait-for-db
		{name: "malformed URL port", step: "wait-for-db", env: urlEnv("postgres://app:secret@db.example:notaport/app"), code: 1, want: []string{"database URL", "not valid"}},
		{name: "URL of another database kind", step: "wait-for-db", env: urlEnv("mysql://app:secret@db.example/app"), code: 1, want: []string{"not valid"}},
		{name: "unknown flag", step: "wait-for-db", args: flags("--nope"), code: 2, want: []string{"nope"}},
		{name: "negative timeout", step: "wait-for-db", args: flags("--timeout", "-5s"), code: 2, want: []string{"--timeout", "-5s"}},
		{name: "absurd timeout", step: "wait-for-db", args: flags("--timeout", "9999h"), code: 2, want: []string{"--timeout"}},
		{name: "sub-second timeout", step: "wait-for-db", args: flags("--timeout", "500ms"), code: 2, want: []string{"--timeout"}},
		{name: "zero connect timeout", step: "wait-for-db", args: flags("--connect-timeout", "0s"), code: 2, want: []string{"--connect-timeout"}},
		{name: "URL and URL file both", step: "wait-for-db", args: func(f *fixture) []string {
			return []string{"--database-url-file", f.file("url", f.url, 0o600)}
		}, code: 2, want: []string{"--database-url", "--database-url-file"}},
		{name: "missing URL file", step: "wait-for-db", env: urlEnv(""), args: flags("--database-url-file", "/run/secrets/nowhere/url"), code: 1, want: []string{"/run/secrets/nowhere/url"}},
		{name: "URL file is a directory", step: "wait-for-db", env: urlEnv(""), args: func(f *fixture) []string { return []string{"--database-url-file", f.scratch} }, code: 1, want: []string{"is a directory"}},
		{name: "unreadable URL file", step: "wait-for-db", env: urlEnv(""), nobody: true, args: func(f *fixture) []string {
			return []string{"--database-url-file", f.file("url", f.url, 0o600)}
		}, code: 1, want: []string{"permission denied"}},
		{name: "empty URL file", step: "wait-for-db", env: urlEnv(""), args: func(f *fixture) []string {
			return []string{"--database-url-file", f.file("url", "\r\n \n", 0o600)}
		}, code: 1, want: []string{"empty"}},
		{name: "wrong password", step: "wait-for-db", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.srv.UserURL(f.role, password+"wrong", f.db)}
		}, code: 1, want: []string{"authentication failed"}},
		{name: "unknown role", step: "wait-for-db", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.srv.UserURL("nobody_here", password, f.db)}
		}, code: 1, want: []string{"authentication failed", "nobody_here"}},
		{name: "role that may not log in", step: "wait-for-db", setup: func(f *fixture) {
			f.sql("ALTER ROLE " + pgx.Identifier{f.role}.Sanitize() + " NOLOGIN")
		}, code: 1, want: []string{"may not connect"}},
		{name: "bad log format", step: "wait-for-db", args: flags("--log-format", "xml"), code: 2, want: []string{"--log-format"}},
		{name: "bad log level", step: "wait-for-db", args: flags("--log-level", "loud"), code: 2, want: []string{"--log-level"}},
		{name: "manifest version mismatch", step: "wait-for-db", args: flags("--manifest-version", "0.9.0"), env: noSkip, code: 1, want: []string{"version mismatch", "0.9.0"}},
		{name: "manifest version missing", step: "wait-for-db", env: noSkip, code: 2, want: []string{"--manifest-version"}},
		{name: "manifest version malformed", step: "wait-for-db", args: flags("--manifest-version", "latest"), env: noSkip, code: 1, want: []string{"latest"}},
		{name: "positional argument", step: "wait-for-db", args: flags("now"), code: 2, want: []string{"unexpected argument"}},
		{name: "results dir is a file", step: "wait-for-db", args: func(f *fixture) []string {
			return []string{"--results-dir", f.file("results", "", 0o644)}
		}, code: 2, want: []string{"--results-dir"}},
		{name: "missing TLS root certificate", step: "wait-for-db", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.url + "&sslmode=verify-full&sslrootcert=/run/secrets/nowhere/ca.crt"}
		}, code: 1, want: []string{"/run/secrets/nowhere/ca.crt"}},

		// wait-patroni
		{name: "patroni URL not http", step: "wait-patroni", args: flags("--patroni-url", "ftp://db-0:8008"), code: 2, want: []string{"--patroni-url"}},
		{name: "blank owner role", step: "wait-patroni", args: flags("--owner-role", "   "), code: 2, want: []string{"--owner-role"}},
		{name: "overlong writer role", step: "wait-patroni", args: flags("--writer-role", strings.Repeat("w", 70)), code: 2, want: []string{"--writer-role"}},
		{name: "zero timeout", step: "wait-patroni", args: flags("--timeout", "0s"), code: 2, want: []string{"--timeout"}},
		{name: "missing operator roles", step: "wait-patroni", args: func(f *fixture) []string {
			return []string{"--timeout", "2s"}
		}, code: 75, want: []string{"roles", "do not exist"}},

		// migrate
		{name: "missing migration directory", step: "migrate", args: flags("--dir", "/migrations-not-here"), code: 1, want: []string{"/migrations-not-here"}},
		{name: "migration directory is a file", step: "migrate", args: func(f *fixture) []string {
			return []string{"--dir", f.file("notadir", "", 0o644)}
		}, code: 1, want: []string{"not a directory"}},
		{name: "empty migration directory", step: "migrate", setup: func(f *fixture) { f.files(nil) }, code: 1, want: []string{"no migrations"}},
		{name: "duplicate versions", step: "migrate", setup: func(f *fixture) {
			f.files(map[string]string{"1_a.sql": mig("SELECT 1;", ""), "001_b.sql": mig("SELECT 2;", "")})
		}, code: 1, want: []string{"both have version 1"}},
		{name: "malformed file name", step: "migrate", setup: func(f *fixture) {
			f.files(map[string]string{"00001_a.sql": mig("SELECT 1;", ""), "add_users.sql": mig("SELECT 2;", "")})
		}, code: 1, want: []string{"add_users.sql"}},
		{name: "file without Up annotation", step: "migrate", setup: func(f *fixture) {
			f.files(map[string]string{"00001_a.sql": "CREATE TABLE a (id int);\n"})
		}, code: 1, want: []string{"00001_a.sql", "+goose Up"}},
		{name: "Go migration", step: "migrate", setup: func(f *fixture) {
			f.files(map[string]string{"00001_a.sql": mig("SELECT 1;", ""), "00002_b.go": "package migrations\n"})
		}, code: 1, want: []string{"00002_b.go", "Go migration"}},
		{name: "--to and --down-to", step: "migrate", args: migrateUp("--to", "2", "--down-to", "1"), code: 2, want: []string{"--to", "--down-to"}},
		{name: "--to not a number", step: "migrate", args: migrateUp("--to", "abc"), code: 2, want: []string{"abc"}},
		{name: "--to 0", step: "migrate", args: migrateUp("--to", "0"), code: 2, want: []string{"--to 0"}},
		{name: "--to unknown version", step: "migrate", args: migrateUp("--to", "99"), code: 1, want: []string{"--to 99"}},
		{name: "bad table name", step: "migrate", args: migrateUp("--table", "Bad-Name"), code: 2, want: []string{"--table", "Bad-Name"}},
		{name: "negative lock wait", step: "migrate", args: migrateUp("--lock-wait", "-1s"), code: 2, want: []string{"--lock-wait"}},
		{name: "absurd lock wait", step: "migrate", args: migrateUp("--lock-wait", "48h"), code: 2, want: []string{"--lock-wait"}},
		{name: "negative statement timeout", step: "migrate", args: migrateUp("--statement-timeout", "-1s"), code: 2, want: []string{"--statement-timeout"}},
		{name: "sub-millisecond lock timeout", step: "migrate", args: migrateUp("--lock-timeout", "500us"), code: 2, want: []string{"--lock-timeout"}},
		{name: "version applied twice in the table", step: "migrate", setup: func(f *fixture) {
			f.sql("CREATE TABLE a (id int)")
			f.gooseTable(1, 1)
		}, code: 1, want: []string{"inconsistent", "version 1 has 2 rows", "DELETE FROM"}},
		{name: "empty version table", step: "migrate", setup: func(f *fixture) {
			f.gooseTable()
			f.sql("DELETE FROM goose_db_version")
		}, code: 1, want: []string{"goose_db_version", "empty"}},
		{name: "version table of another tool", step: "migrate", setup: func(f *fixture) {
			f.sql("CREATE TABLE goose_db_version (version text)")
		}, code: 1, want: []string{"goose_db_version"}},
		{name: "applied version missing from the directory", step: "migrate", setup: func(f *fixture) { f.gooseTable(1, 2, 3, 5) }, code: 1, want: []string{"5"}},
		{name: "pending version below the current one", step: "migrate", setup: func(f *fixture) { f.gooseTable(1, 3) }, code: 1, want: []string{"2", "--allow-out-of-order"}},
		{name: "empty database refused", step: "migrate", args: migrateUp("--allow-empty-database=false"), code: 1, want: []string{"--allow-empty-database"}},
		{name: "rollback of an irreversible migration", step: "migrate", args: migrateUp("--down-to", "0"), setup: func(f *fixture) {
			f.files(map[string]string{"00001_a.sql": mig("CREATE TABLE a (id int);", "")})
			f.sql("CREATE TABLE a (id int)")
			f.gooseTable(1)
		}, code: 1, want: []string{"00001_a.sql", "no Down"}},
		{name: "missing role", step: "migrate", args: migrateUp("--role", "app_owner_missing"), code: 1, want: []string{"app_owner_missing"}},
		{name: "role the login is not a member of", step: "migrate", args: migrateUp("--role", "pg_monitor"), code: 1, want: []string{"pg_monitor", "GRANT"}},
		{name: "no privilege on the version table", step: "migrate", setup: func(f *fixture) {
			f.gooseTable(1)
			f.sql("CREATE TABLE a (id int); ALTER TABLE goose_db_version OWNER TO postgres")
		}, code: 1, want: []string{"goose_db_version", "cannot read", "GRANT"}},
		{name: "SQL error in the only pending migration", step: "migrate", setup: func(f *fixture) {
			f.files(map[string]string{"00001_a.sql": mig("CREATE TABLE a (id int);", ""), "00002_b.sql": mig("CREATE TABLEX b (id int);", "")})
			f.sql("CREATE TABLE a (id int)")
			f.gooseTable(1)
		}, code: 1, want: []string{"00002_b.sql", "syntax error"}},
		{name: "database does not exist", step: "migrate", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.srv.UserURL(f.role, password, f.db+"_missing")}
		}, code: 75, want: []string{"does not exist"}},
		// Checked before any work, so migrate cannot apply migrations and then
		// fail on its results.
		{name: "results dir is a file", step: "migrate", args: func(f *fixture) []string {
			return []string{"--dir", f.dir, "--results-dir", f.file("results", "", 0o644)}
		}, code: 2, want: []string{"--results-dir"}},
		{name: "plan with a missing directory", step: "migrate", args: flags("--plan", "--dir", "/migrations-not-here"), code: 1, want: []string{"/migrations-not-here"}},
		{name: "URL password with a leading slash", step: "wait-for-db", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=postgres://" + f.role + ":" + slashFirst + "@" + fmt.Sprintf("%s:%d", f.srv.Host, f.srv.Port) + "/" + f.db}
		}, code: 1, want: []string{"not valid", "percent-encode", "%2F"}},
		{name: "URL password of digits then a slash", step: "wait-patroni", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=postgres://" + f.role + ":" + digitsSlash + "@" + fmt.Sprintf("%s:%d", f.srv.Host, f.srv.Port) + "/" + f.db}
		}, code: 1, want: []string{"not valid", "percent-encode"}},
		{name: "unquoted keyword/value password with a blank", step: "migrate", env: func(f *fixture) []string {
			return []string{fmt.Sprintf("CHARTREUSE_DATABASE_URL=host=%s port=%d user=%s password=%s dbname=%s", f.srv.Host, f.srv.Port, f.role, blankKeyword, f.db)}
		}, code: 1, want: []string{"keyword/value", "single quotes"}},
		{name: "unescaped slash in the URL password", step: "migrate", env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=postgres://" + f.role + ":" + password + "@" + fmt.Sprintf("%s:%d", f.srv.Host, f.srv.Port) + "/" + f.db}
		}, code: 1, want: []string{"not valid", "percent-encode"}},
	}
}

func noSkip(f *fixture) []string {
	return []string{"CHARTREUSE_DATABASE_URL=" + f.url, "CHARTREUSE_SKIP_VERSION_CHECK=false"}
}

func TestBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("bad-input corpus against a real PostgreSQL (skipped with -short)")
	}
	srv := pgenv.Shared(t)
	bins := stepbin.Binaries(t, "wait-for-db", "wait-patroni", "migrate")
	secrets := kit.NewSecrets(t)
	secrets.Add(password)
	secrets.Add(password + "wrong")
	secrets.Add(srv.Password)
	for _, pw := range []string{slashFirst, digitsSlash, blankKeyword} {
		secrets.Add(pw)
	}
	startGit(t)
	for _, s := range gitSecrets() {
		secrets.Add(s)
	}
	startRegistries(t)
	for _, s := range registrySecrets() {
		secrets.Add(s)
	}
	cs := append(append(cases(), gitCases()...), imageCases()...)
	if len(cs) < 40 {
		t.Fatalf("only %d cases", len(cs))
	}
	for i, c := range cs {
		t.Run(c.step+"/"+c.name, func(t *testing.T) {
			f := newFixture(t, srv, i)
			if c.setup != nil {
				c.setup(f)
			}
			var args []string
			if c.args != nil {
				args = c.args(f)
			}
			if c.step == "migrate" && !hasFlag(args, "--dir") {
				args = append(args, "--dir", f.dir)
			}
			// Later entries win: a case's environment overrides the defaults.
			env := []string{"CHARTREUSE_SKIP_VERSION_CHECK=true"}
			if c.env != nil {
				env = append(env, c.env(f)...)
			} else {
				env = append(env, "CHARTREUSE_DATABASE_URL="+f.url)
			}
			before, err := kit.SnapshotDB(context.Background(), srv.URL(f.db))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bins[c.step], args...)
			cmd.Env = append(cleanEnv(), env...)
			cmd.Dir = f.scratch
			if c.nobody {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			}
			p, err := stepbin.StartCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			code, timedOut := p.Wait(context.Background(), time.Minute)
			r := p.Result(code)
			secrets.Record(c.step+"/"+c.name, r.Output())
			if timedOut {
				t.Fatalf("did not finish within 1m:\n%s", r.Stderr)
			}
			if r.Code != c.code {
				t.Errorf("exit %d, want %d:\n%s", r.Code, c.code, r.Stderr)
			}
			line, err := stepbin.ErrorLine(r.Stderr)
			if err != nil {
				t.Errorf("error is not one line: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
					t.Errorf("the error does not name %q: %s", w, line)
				}
			}
			if r.HasSummary && r.Summary.ExitCode != r.Code {
				t.Errorf("summary says exit %d, process exited %d", r.Summary.ExitCode, r.Code)
			}
			after, err := kit.SnapshotDB(context.Background(), srv.URL(f.db))
			if err != nil {
				t.Fatal(err)
			}
			if d := kit.Diff(before, after); d != "" {
				t.Errorf("the database changed:\n%s", d)
			}
			t.Logf("exit %d: %s", r.Code, trimLog(line))
		})
	}
}

func newFixture(t *testing.T, srv *pgenv.Server, i int) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, srv: srv, role: fmt.Sprintf("bad_%d_%d", os.Getpid(), i)}
	if err := srv.Exec(ctx, "postgres", "CREATE ROLE "+pgx.Identifier{f.role}.Sanitize()+" LOGIN PASSWORD '"+strings.ReplaceAll(password, "'", "''")+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{f.role}.Sanitize())
	})
	_, f.db = pgenv.NewDatabase(t)
	if err := srv.Exec(ctx, "postgres", "ALTER DATABASE "+pgx.Identifier{f.db}.Sanitize()+" OWNER TO "+pgx.Identifier{f.role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	f.url = srv.UserURL(f.role, password, f.db)
	f.dir = filepath.Join(t.TempDir(), "migrations")
	f.scratch = t.TempDir()
	for _, d := range []string{f.dir, f.scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// The unprivileged runs must reach the directories, not the files in them.
		_ = os.Chmod(filepath.Dir(d), 0o755)
		_ = os.Chmod(d, 0o755)
	}
	f.files(three)
	return f
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// cleanEnv is the test's environment without the libpq and Chartreuse variables
// that would change what a case means.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "CHARTREUSE_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func trimLog(line string) string {
	if i := strings.Index(line, "msg="); i >= 0 {
		return line[i:]
	}
	return line
}
