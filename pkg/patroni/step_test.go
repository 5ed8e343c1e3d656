package patroni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// The login user's password: characters that broke the original's URL building.
const loginPassword = "p@ss:w/rd%41?x"

type outcome struct {
	code           int
	stdout, stderr string
	summary        results.Summary
}

// run runs the step in-process as the binary would. Safe to call off the test
// goroutine: it reports problems in the returned error.
func run(spec step.Spec, args ...string) (outcome, error) {
	var out, errOut bytes.Buffer
	code := step.Run(context.Background(), spec, append([]string{"wait-patroni", "--skip-version-check"}, args...), &out, &errOut)
	o := outcome{code: code, stdout: out.String(), stderr: errOut.String()}
	if err := json.Unmarshal(out.Bytes(), &o.summary); err != nil {
		return o, fmt.Errorf("stdout is not one JSON summary line: %q", out.String())
	}
	all := o.stdout + o.stderr
	for _, form := range []string{loginPassword, url.QueryEscape(loginPassword), url.PathEscape(loginPassword)} {
		if strings.Contains(all, form) {
			return o, fmt.Errorf("output contains the password (as %q):\n%s", form, all)
		}
	}
	return o, nil
}

func runStep(t *testing.T, args ...string) outcome {
	t.Helper()
	o, err := run(Spec(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (o outcome) attempts(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(o.summary.Results["attempts"])
	if err != nil {
		t.Fatalf("no attempts result: %+v", o.summary)
	}
	return n
}

// execer runs SQL as the superuser; pgenv.Server and patronienv.Cluster both are.
type execer interface {
	Exec(ctx context.Context, db, sql string, args ...any) error
}

// operator describes what postgres-operator sets up for a prepared database;
// tests leave out one piece at a time.
type operator struct {
	db, login       string // login user: <db>_owner_user unless a test says otherwise
	roles           Roles
	skipRoles       []string // roles not created
	skipMembership  bool     // login user not granted the owner role
	skipDBOwner     bool     // owner may not create in public
	skipWriterTable bool     // no default INSERT on tables for the writer
	skipWriterSeq   bool     // no default USAGE on sequences for the writer
	skipReader      bool     // no default SELECT for the reader
}

func newOperator(db string) *operator {
	return &operator{db: db, login: db + "_owner_user", roles: Roles{}.withDefaults(db)}
}

// createLogin creates the login user, as the operator does before the
// application's Secret exists; cleanup drops the database, then every role.
func (op *operator) createLogin(t *testing.T, x execer) {
	t.Helper()
	ctx := context.Background()
	if err := x.Exec(ctx, op.db, "CREATE ROLE "+q(op.login)+" LOGIN PASSWORD "+quoteLiteral(loginPassword)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = x.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+q(op.db)+" WITH (FORCE)")
		for _, r := range []string{op.login, op.roles.Owner, op.roles.Writer, op.roles.Reader} {
			if err := x.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+q(r)); err != nil {
				t.Errorf("dropping role %s: %v", r, err)
			}
		}
	})
}

// script is the operator's SQL, run as one implicit transaction so a concurrent
// check sees all of it or none.
func (op *operator) script() string {
	r := op.roles
	var s []string
	add := func(skip bool, format string, args ...any) {
		if !skip {
			s = append(s, fmt.Sprintf(format, args...))
		}
	}
	has := func(role string) bool { return !slices.Contains(op.skipRoles, role) }
	add(!has(r.Reader), "CREATE ROLE %s NOLOGIN", q(r.Reader))
	add(!has(r.Writer), "CREATE ROLE %s NOLOGIN", q(r.Writer))
	add(!has(r.Owner), "CREATE ROLE %s NOLOGIN", q(r.Owner))
	add(!has(r.Writer) || !has(r.Reader), "GRANT %s TO %s", q(r.Reader), q(r.Writer))
	add(!has(r.Owner) || !has(r.Writer), "GRANT %s TO %s", q(r.Writer), q(r.Owner))
	add(!has(r.Owner) || op.skipMembership, "GRANT %s TO %s", q(r.Owner), q(op.login))
	add(!has(r.Owner) || op.skipDBOwner, "ALTER DATABASE %s OWNER TO %s", q(op.db), q(r.Owner))
	if has(r.Owner) {
		add(!has(r.Reader) || op.skipReader, "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO %s", q(r.Owner), q(r.Reader))
		add(!has(r.Writer) || op.skipWriterTable, "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT INSERT, UPDATE, DELETE ON TABLES TO %s", q(r.Owner), q(r.Writer))
		add(!has(r.Writer) || op.skipWriterSeq, "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT USAGE, UPDATE ON SEQUENCES TO %s", q(r.Owner), q(r.Writer))
	}
	return strings.Join(s, ";\n")
}

func (op *operator) apply(ctx context.Context, x execer) error {
	if op.script() == "" {
		return nil
	}
	return x.Exec(ctx, op.db, op.script())
}

func ownerOf(fi os.FileInfo) (uid, gid int) {
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// newDatabase creates a fresh database with a short name: the role names derived
// from it must stay distinct within PostgreSQL's 63-byte limit.
func newDatabase(t *testing.T) (*pgenv.Server, string) {
	t.Helper()
	srv := pgenv.Shared(t)
	db, err := srv.CreateDatabase(context.Background(), "wp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), db) })
	return srv, db
}

func q(name string) string { return pgx.Identifier{name}.Sanitize() }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestMissingPieces leaves out one piece of the operator's setup at a time and
// expects exit 75 with a message naming exactly that piece.
func TestMissingPieces(t *testing.T) {
	tests := []struct {
		name  string
		setup func(op *operator)
		want  func(op *operator) string
	}{
		{"no roles at all",
			func(op *operator) { op.skipRoles = []string{op.roles.Owner, op.roles.Writer, op.roles.Reader} },
			func(op *operator) string {
				return fmt.Sprintf("roles %s, %s and %s do not exist", op.roles.Owner, op.roles.Writer, op.roles.Reader)
			}},
		{"writer role missing",
			func(op *operator) { op.skipRoles = []string{op.roles.Writer} },
			func(op *operator) string { return "role " + op.roles.Writer + " does not exist" }},
		{"login user not a member of the owner role",
			func(op *operator) { op.login = op.db + "_app"; op.skipMembership = true },
			func(op *operator) string {
				return fmt.Sprintf("user %s is not a member of role %s: grant it (GRANT %s TO %s) or connect as the owner's login user (postgres-operator: %s_user)",
					op.login, op.roles.Owner, op.roles.Owner, op.login, op.roles.Owner)
			}},
		{"owner may not create tables",
			func(op *operator) { op.skipDBOwner = true },
			func(op *operator) string {
				return fmt.Sprintf("role %s cannot create tables in schema public: make it the database owner or GRANT CREATE ON SCHEMA public TO %s", op.roles.Owner, op.roles.Owner)
			}},
		{"writer lacks default table privileges",
			func(op *operator) { op.skipWriterTable = true },
			func(op *operator) string {
				return fmt.Sprintf("%s cannot INSERT into tables created by %s: default privileges not set", op.roles.Writer, op.roles.Owner)
			}},
		{"writer lacks default sequence privileges",
			func(op *operator) { op.skipWriterSeq = true },
			func(op *operator) string {
				return fmt.Sprintf("%s cannot INSERT into tables created by %s: default privileges not set", op.roles.Writer, op.roles.Owner)
			}},
		{"reader lacks default privileges",
			func(op *operator) { op.skipReader = true },
			func(op *operator) string {
				return fmt.Sprintf("%s cannot SELECT from tables created by %s: default privileges not set", op.roles.Reader, op.roles.Owner)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, db := newDatabase(t)
			op := newOperator(db)
			tt.setup(op)
			op.createLogin(t, srv)
			if err := op.apply(context.Background(), srv); err != nil {
				t.Fatalf("operator script: %v\n%s", err, op.script())
			}
			o := runStep(t, "--database-url", srv.UserURL(op.login, loginPassword, db), "--timeout", "1s")
			if o.code != 75 {
				t.Fatalf("code %d, want 75\n%s", o.code, o.stderr)
			}
			if want := tt.want(op); !strings.Contains(o.summary.Error, want) {
				t.Errorf("error does not say %q:\n%s", want, o.summary.Error)
			}
			if !strings.Contains(o.summary.Error, "the cluster was not ready after 1s") {
				t.Errorf("error does not say it timed out: %s", o.summary.Error)
			}
			if o.attempts(t) < 2 {
				t.Errorf("attempts = %d: it did not retry", o.attempts(t))
			}
		})
	}
}

func TestConfiguredCluster(t *testing.T) {
	tests := []struct {
		name  string
		roles Roles // explicit role flags; zero: the defaults
	}{
		{"default role names", Roles{}},
		{"role names that need quoting", Roles{Owner: "App-Owner", Writer: "app writer", Reader: `app"reader`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, db := newDatabase(t)
			op := newOperator(db)
			args := []string{"--database-url", srv.UserURL(op.login, loginPassword, db), "--timeout", "10s"}
			if tt.roles != (Roles{}) {
				op.roles = tt.roles
				args = append(args, "--owner-role", tt.roles.Owner, "--writer-role", tt.roles.Writer, "--reader-role", tt.roles.Reader)
			}
			op.createLogin(t, srv)
			if err := op.apply(context.Background(), srv); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			o := runStep(t, append(args, "--results-dir", dir)...)
			if o.code != 0 || o.attempts(t) != 1 {
				t.Fatalf("code %d, attempts %s\n%s", o.code, o.summary.Results["attempts"], o.stderr)
			}
			if got := o.summary.Results["owner-role"]; got != op.roles.Owner {
				t.Errorf("owner-role = %q", got)
			}
			want := fmt.Sprintf("primary; roles %s, %s, %s exist; in schema public %s creates tables, %s inserts, %s selects",
				op.roles.Owner, op.roles.Writer, op.roles.Reader, op.roles.Owner, op.roles.Writer, op.roles.Reader)
			if got := o.summary.Results["checked"]; got != want {
				t.Errorf("checked = %q\nwant      %q", got, want)
			}
			if _, ok := o.summary.Results["leader"]; ok {
				t.Error("leader result without --patroni-url")
			}
			if _, err := os.Stat(filepath.Join(dir, "checked")); err != nil {
				t.Error(err)
			}
			// The probe was rolled back: no table is left.
			var n int
			conn, err := pgx.Connect(context.Background(), srv.URL(db))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relname LIKE 'chartreuse_probe%'").Scan(&n); err != nil || n != 0 {
				t.Errorf("%d probe relations left behind (%v)", n, err)
			}
		})
	}
}

func TestWrongPasswordFailsAtOnce(t *testing.T) {
	srv, db := newDatabase(t)
	op := newOperator(db)
	op.createLogin(t, srv)
	o := runStep(t, "--database-url", srv.UserURL(op.login, loginPassword+"x", db), "--timeout", "5m")
	if o.code != 1 || o.attempts(t) != 1 {
		t.Fatalf("code %d, attempts %d; want 1 and 1\n%s", o.code, o.attempts(t), o.stderr)
	}
	if !strings.Contains(o.summary.Error, "authentication failed for user \""+op.login+"\"") {
		t.Errorf("error: %s", o.summary.Error)
	}
}

// TestRolesCreatedLate starts the step before the operator has created the
// roles, as happens when a cluster and its application are deployed together.
func TestRolesCreatedLate(t *testing.T) {
	srv, db := newDatabase(t)
	op := newOperator(db)
	op.createLogin(t, srv)
	created := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		created <- op.apply(context.Background(), srv)
	}()
	o := runStep(t, "--database-url", srv.UserURL(op.login, loginPassword, db), "--timeout", "30s")
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if o.code != 0 {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
	if !strings.Contains(o.stderr, "do not exist") || o.attempts(t) < 2 {
		t.Errorf("attempts %d; the log should show it waited for the roles:\n%s", o.attempts(t), o.stderr)
	}
}

func TestReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real PostgreSQL server")
	}
	// A cleanly stopped cluster restarted with standby.signal and no primary
	// stays a hot standby: pg_is_in_recovery() is true.
	srv, err := pgenv.Start(pgenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	srv.StopServer()
	signal := filepath.Join(srv.Dir, "data", "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(srv.Dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := ownerOf(st)
	if err := os.Chown(signal, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := srv.StartServer(); err != nil {
		t.Fatal(err)
	}
	o := runStep(t, "--database-url", srv.URL("postgres"), "--timeout", "1s")
	if o.code != 75 || !strings.Contains(o.summary.Error, "connected to a replica (pg_is_in_recovery() is true) at host=127.0.0.1") {
		t.Fatalf("code %d, error %s", o.code, o.summary.Error)
	}
}

func TestPatroniUnreachable(t *testing.T) {
	srv, db := newDatabase(t)
	op := newOperator(db)
	op.createLogin(t, srv)
	if err := op.apply(context.Background(), srv); err != nil {
		t.Fatal(err)
	}
	api := "http://127.0.0.1:" + strconv.Itoa(pgenv.ClosedPort(t))
	o := runStep(t, "--database-url", srv.UserURL(op.login, loginPassword, db), "--patroni-url", api, "--timeout", "2s")
	if o.code != 75 || !strings.Contains(o.summary.Error, "Patroni REST API unreachable (GET "+api+"/cluster)") {
		t.Fatalf("code %d, error %s", o.code, o.summary.Error)
	}
	if o.attempts(t) < 2 {
		t.Errorf("attempts = %d: it did not keep waiting", o.attempts(t))
	}
}

// Backoff used by the step: never more than a second between checks.
func TestPausesAtMostASecond(t *testing.T) {
	b := poll.Backoff{Initial: InitialPause, Max: MaxPause, Rand: func() float64 { return 0.999999 }}
	for n := 1; n < 100; n++ {
		if p := b.Pause(n); p > time.Second {
			t.Fatalf("pause %d = %s", n, p)
		}
	}
}

// TestRoleNameCase: a role flag is the role's exact name; one written in another
// case (as if it were an SQL identifier, folded to lower case) is waited for like
// any missing role, and the message names the role that does exist.
func TestRoleNameCase(t *testing.T) {
	srv, db := newDatabase(t)
	op := newOperator(db)
	op.createLogin(t, srv)
	if err := op.apply(context.Background(), srv); err != nil {
		t.Fatal(err)
	}
	upper := strings.ToUpper(op.roles.Owner)
	o := runStep(t, "--database-url", srv.UserURL(op.login, loginPassword, db), "--owner-role", upper, "--timeout", "1s")
	want := fmt.Sprintf("role %s does not exist (but %s exists: role names are case-sensitive, give the exact name)", upper, op.roles.Owner)
	if o.code != 75 || !strings.Contains(o.summary.Error, want) {
		t.Fatalf("code %d, error %s\nwant 75 saying %q", o.code, o.summary.Error, want)
	}
}
