package dbconn_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/patroni"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/waitdb"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// logConnections turns log_connections on for the package's server until the test
// ends: it is read before a session's own settings, so only the server's
// configuration can set it. New sessions see it once the postmaster reloaded.
func logConnections(t *testing.T) {
	t.Helper()
	srv := pgenv.Shared(t)
	ctx := context.Background()
	set := func(sql string) {
		if err := srv.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
		if err := srv.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	set("ALTER SYSTEM SET log_connections = on")
	t.Cleanup(func() { set("ALTER SYSTEM RESET log_connections") })
	for range 500 {
		conn, err := pgx.Connect(ctx, srv.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var on string
		err = conn.QueryRow(ctx, "SHOW log_connections").Scan(&on)
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if on == "on" {
			return
		}
		runtime.Gosched()
	}
	t.Fatal("log_connections is still off after the reload")
}

// sessionNames runs a step against a fresh database and returns the
// application_name of every session the step opened, from the server's log
// (logConnections).
func sessionNames(t *testing.T, spec step.Spec, query string, args ...string) []string {
	t.Helper()
	srv, db := pgenv.NewDatabase(t)
	u, err := url.Parse(srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range mustQuery(t, query) {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	full := append([]string{spec.Name, "--skip-version-check", "--database-url", u.String()}, args...)
	var out, errOut bytes.Buffer
	code := step.Run(context.Background(), spec, full, &out, &errOut)
	t.Logf("%s exit %d", spec.Name, code)
	log, err := os.ReadFile(filepath.Join(srv.Dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`connection authorized: user=postgres database=` + regexp.QuoteMeta(db) + ` application_name=(\S*)`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(string(log), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("%s opened no session the server logged (exit %d)\n%s", spec.Name, code, errOut.String())
	}
	return names
}

func mustQuery(t *testing.T, q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func migrations(t *testing.T) string {
	dir := t.TempDir()
	for name, sql := range map[string]string{
		"00001_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n",
		"00002_b.sql": "-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestEveryStepNamesItsSessions: every session of every step that talks to the
// database carries chartreuse/<run-id>/<step>, as the server saw it.
func TestEveryStepNamesItsSessions(t *testing.T) {
	logConnections(t)
	dir := migrations(t)
	cases := []struct {
		name string
		spec step.Spec
		args []string
		want string
	}{
		{"wait-for-db", waitdb.Spec(), []string{"--run-id", "wf-1a2b3", "--timeout", "5s"}, "chartreuse/wf-1a2b3/wait-for-db"},
		{"wait-for-db without run id", waitdb.Spec(), []string{"--timeout", "5s"}, "chartreuse/wait-for-db"},
		// the roles do not exist: it checks until its timeout, connecting each time
		{"wait-patroni", patroni.Spec(), []string{"--run-id", "wf-1a2b3", "--timeout", "1s"}, "chartreuse/wf-1a2b3/wait-patroni"},
		{"plan", migrate.Spec(), []string{"--run-id", "wf-1a2b3", "--dir", dir, "--plan"}, "chartreuse/wf-1a2b3/plan"},
		{"migrate", migrate.Spec(), []string{"--run-id", "wf-1a2b3", "--dir", dir, "--lock-timeout", "5s"}, "chartreuse/wf-1a2b3/migrate"},
		{"rollback", migrate.Spec(), []string{"--run-id", "wf-1a2b3", "--dir", dir, "--down-to", "0"}, "chartreuse/wf-1a2b3/rollback"},
		{"resolve", migrate.Spec(), []string{"--run-id", "wf-1a2b3", "--dir", dir, "--resolve", "1", "--as", "applied"}, "chartreuse/wf-1a2b3/resolve"},
		{"long run id", migrate.Spec(), []string{"--run-id", strings.Repeat("release-", 10) + "z9", "--dir", dir, "--plan"},
			"chartreuse/release-release-release~ease-release-release-z9/plan"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for _, got := range sessionNames(t, tt.spec, "", tt.args...) {
				if got != tt.want {
					t.Errorf("a session of %s is named %q, want %q", tt.name, got, tt.want)
				}
			}
		})
	}
}

// TestUserApplicationNameWins: a name the user gave, in the URL or in PGAPPNAME, is
// kept on every session.
func TestUserApplicationNameWins(t *testing.T) {
	logConnections(t)
	t.Run("url", func(t *testing.T) {
		for _, got := range sessionNames(t, migrate.Spec(), "application_name=mine", "--run-id", "wf-1", "--dir", migrations(t)) {
			if got != "mine" {
				t.Errorf("session named %q, want the URL's mine", got)
			}
		}
	})
	t.Run("PGAPPNAME", func(t *testing.T) {
		t.Setenv("PGAPPNAME", "from-env")
		for _, got := range sessionNames(t, waitdb.Spec(), "", "--run-id", "wf-1") {
			if got != "from-env" {
				t.Errorf("session named %q, want PGAPPNAME's from-env", got)
			}
		}
	})
}
