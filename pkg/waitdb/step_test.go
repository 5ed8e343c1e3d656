package waitdb

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Passwords that broke the original's URL building.
var hardPasswords = []string{"p@ss:w/rd%41?x", "a@b:c/d?e%f", "%2F@@::"}

type outcome struct {
	code           int
	stdout, stderr string
	summary        results.Summary
}

// runStep runs the step in-process as the binary would, with the real clock.
func runStep(t *testing.T, args ...string) outcome {
	t.Helper()
	return runSpec(t, Spec(), args...)
}

func runSpec(t *testing.T, spec step.Spec, args ...string) outcome {
	t.Helper()
	var out, errOut bytes.Buffer
	code := step.Run(context.Background(), spec, append([]string{"wait-for-db", "--skip-version-check"}, args...), &out, &errOut)
	o := outcome{code: code, stdout: out.String(), stderr: errOut.String()}
	if code != 2 {
		if err := json.Unmarshal(out.Bytes(), &o.summary); err != nil {
			t.Fatalf("stdout is not one JSON summary line: %q", out.String())
		}
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

// newRole creates a login role with password on the shared server.
func newRole(t *testing.T, srv *pgenv.Server, password string) string {
	t.Helper()
	role := "login_" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	ctx := context.Background()
	if err := srv.Exec(ctx, "postgres", "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD "+quoteLiteral(password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	return role
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestReadyAtOnce(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	dir := t.TempDir()
	o := runStep(t, "--database-url", srv.URL(db), "--results-dir", dir)
	if o.code != 0 || o.attempts(t) != 1 || o.summary.Status != "ok" {
		t.Fatalf("code %d, summary %+v\n%s", o.code, o.summary, o.stderr)
	}
	if !strings.Contains(o.stderr, `msg="database ready"`) || !strings.Contains(o.stderr, "database="+db) {
		t.Errorf("no final ready line naming the database:\n%s", o.stderr)
	}
	for _, name := range []string{"attempts", "waited"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("result file %s: %v", name, err)
		}
	}
}

func TestFailsAtOnce(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	role := newRole(t, srv, "right")
	tests := []struct {
		name    string
		url     string
		message string
	}{
		{"wrong password", srv.UserURL(role, "wrong", db), "authentication failed for user \"" + role + "\""},
		{"unknown role", srv.UserURL("nobody_"+role, "x", db), "authentication failed"},
		{"malformed URL", "postgres://app:secret@127.0.0.1:notaport/" + db, "is not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A long timeout: the step must not use it.
			o := runStep(t, "--database-url", tt.url, "--timeout", "5m")
			if o.code != 1 {
				t.Fatalf("code %d, want 1\n%s", o.code, o.stderr)
			}
			if tt.name != "malformed URL" && o.attempts(t) != 1 {
				t.Errorf("attempts = %d, want exactly 1", o.attempts(t))
			}
			if !strings.Contains(o.summary.Error, tt.message) {
				t.Errorf("error %q does not say %q", o.summary.Error, tt.message)
			}
			if strings.Contains(o.stderr, "waiting for") {
				t.Errorf("it waited:\n%s", o.stderr)
			}
		})
	}
}

func TestTimeoutNamesTheLastError(t *testing.T) {
	port := pgenv.ClosedPort(t)
	o := runStep(t, "--database-url", "postgres://app:pw@127.0.0.1:"+strconv.Itoa(port)+"/app?sslmode=disable", "--timeout", "1s")
	if o.code != 75 {
		t.Fatalf("code %d, want 75\n%s", o.code, o.stderr)
	}
	for _, want := range []string{"the database was not ready after 1s", "host=127.0.0.1 port=" + strconv.Itoa(port) + " database=app user=app", "connection refused"} {
		if !strings.Contains(o.summary.Error, want) {
			t.Errorf("error %q does not say %q", o.summary.Error, want)
		}
	}
	if o.attempts(t) < 2 {
		t.Errorf("attempts = %d: it did not retry", o.attempts(t))
	}
}

func TestWaitsForADatabaseCreatedLate(t *testing.T) {
	srv := pgenv.Shared(t)
	name := "late_" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), name) })
	created := make(chan error, 1)
	go func() {
		time.Sleep(5 * time.Second)
		created <- srv.Exec(context.Background(), "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	}()
	o := runStep(t, "--database-url", srv.URL(name), "--timeout", "60s")
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if o.code != 0 {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
	if !strings.Contains(o.stderr, `database \"`+name+`\" does not exist yet`) {
		t.Errorf("the progress does not say the database does not exist yet:\n%s", o.stderr)
	}
	if o.attempts(t) < 2 {
		t.Errorf("attempts = %d", o.attempts(t))
	}
}

func TestWaitsForAServerThatStartsLate(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	srv.StopServer()
	started := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second)
		started <- srv.StartServer()
	}()
	o := runStep(t, "--database-url", srv.URL(db), "--timeout", "60s")
	if err := <-started; err != nil {
		t.Fatalf("restarting the server: %v", err) // later tests would fail too
	}
	if o.code != 0 {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
	if o.attempts(t) < 2 || !strings.Contains(o.stderr, "connection refused") {
		t.Errorf("attempts = %d; it should have waited through refused connections:\n%s", o.attempts(t), o.stderr)
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	closed := strconv.Itoa(pgenv.ClosedPort(t))
	for i, pw := range hardPasswords {
		role := newRole(t, srv, pw)
		hostPort := net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port))
		tests := []struct {
			name string
			url  string
			code int
		}{
			{"ready", srv.UserURL(role, pw, db), 0},
			{"wrong password", srv.UserURL(role, pw+"x", db), 1},
			{"unescaped in URL", "postgres://" + role + ":" + pw + "@" + hostPort + "/" + db, 1},
			{"timeout", "postgres://" + role + ":" + url.QueryEscape(pw) + "@127.0.0.1:" + closed + "/" + db + "?sslmode=disable", 75},
			{"keyword/value DSN", "host=127.0.0.1 port=" + closed + " user=" + role + " dbname=" + db + " sslmode=disable password=" + quoteLiteral(pw), 75},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				formats := []string{"text", "json"}
				if i > 0 {
					formats = formats[:1] // the JSON handler is covered by the first password
				}
				for _, format := range formats {
					o := runStep(t, "--database-url", tt.url, "--timeout", "1s", "--log-level", "debug", "--log-format", format)
					if o.code != tt.code {
						t.Fatalf("code %d, want %d\n%s", o.code, tt.code, o.stderr)
					}
					all := o.stdout + o.stderr
					for _, form := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), pw + "x"} {
						if strings.Contains(all, form) {
							t.Fatalf("output contains the password (as %q):\n%s", form, all)
						}
					}
				}
			})
		}
	}
}

func TestLibpqEnvironment(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	role := newRole(t, srv, hardPasswords[0])
	for k, v := range map[string]string{
		"PGHOST": srv.Host, "PGPORT": strconv.Itoa(srv.Port), "PGUSER": role,
		"PGPASSWORD": hardPasswords[0], "PGDATABASE": db, "PGSSLMODE": "disable",
	} {
		t.Setenv(k, v)
	}
	o := runStep(t)
	if o.code != 0 || !strings.Contains(o.stderr, "user="+role) {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
	if strings.Contains(o.stdout+o.stderr, hardPasswords[0]) {
		t.Fatal("output contains PGPASSWORD")
	}
}

func TestURLFile(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte(srv.URL(db)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o := runStep(t, "--database-url-file", file); o.code != 0 {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--timeout", "0s"}, {"--timeout", "-5s"}, {"--timeout", "300h"}, {"--timeout", "soon"},
		// Below the documented 1ms every attempt times out before the server can
		// answer, and the step waited out --timeout for exit 75.
		{"--connect-timeout", "1ns", "--timeout", "2s"}, {"--connect-timeout", "999us", "--timeout", "2s"},
	} {
		o := runStep(t, append([]string{"--database-url", "postgres://h/db"}, args...)...)
		line := strings.TrimSpace(o.stderr)
		if o.code != 2 || !strings.Contains(line, "timeout") || strings.Contains(line, "\n") {
			t.Errorf("%v: code %d, stderr %q; want exit 2 with one line naming the flag", args, o.code, o.stderr)
		}
	}
}

// TestArgumentsAreNotEchoed: a connection string whose password holds a blank,
// passed unquoted through a shell or a template, reaches the step as several
// arguments; the flag takes the first piece and the rest are positional
// arguments, pieces of the password. The usage error names the mistake without
// quoting them (nothing is registered with the redactor yet, and the pieces
// match no URL or password= pattern).
func TestArgumentsAreNotEchoed(t *testing.T) {
	for _, args := range [][]string{
		{"--database-url", "postgres://app:QZJK", "VWYQ@db.internal/app"},
		{"--database-url", "host=db.internal", "password=QZJK", "VWYQ", "dbname=app"},
		{"--database-url", "host=db.internal password='QZJK", "VWYQ'"},
		{"--database-url=host=db.internal password=QZJK", "VWYQ", "--log-format", "json"},
		// The rest starts with '-': the flag parser took it for a flag and quoted it.
		{"--database-url", "postgres://app:QZJK", "--VWYQ@db.internal/app"},
		{"--database-url", "postgres://app:QZJK", "-VWYQ@db.internal/app"},
		{"--database-url", "postgres://app:QZJK", "---VWYQ@db.internal/app"},
		{"--database-url", "postgres://app:QZJK", "-=VWYQ@db.internal/app"},
		{"--database-url", "host=db.internal password=QZJK", "-VWYQ=x", "dbname=app"},
		{"--timeout=5s", "--database-url", "host=db.internal password=QZJK", "-VWYQ", "--log-format=json"},
	} {
		o := runStep(t, args...)
		line := strings.TrimSpace(o.stderr)
		if o.code != 2 || strings.Contains(line, "\n") || !strings.Contains(line, "unexpected argument") && !strings.Contains(line, "unknown flag or bad flag syntax") {
			t.Fatalf("%q: code %d, stderr %q; want exit 2 with one line", args, o.code, o.stderr)
		}
		if strings.ContainsAny(o.stdout+o.stderr, "QZJKVWY") {
			t.Fatalf("%q: a piece of the password is printed: %s", args, o.stdout+o.stderr)
		}
	}
}

// TestSchemeInAnotherCase: a URL whose scheme is not in lower case is no URL to
// libpq and pgx. Against a server that the same URL in lower case reaches, the
// step refuses it before connecting (exit 1) saying to write the scheme in
// lower case, and prints no piece of the password, in text or JSON.
func TestSchemeInAnotherCase(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	const pw = "QZJKVWYQ"
	role := newRole(t, srv, pw)
	rest := "://" + role + ":" + pw + "@127.0.0.1:" + strconv.Itoa(srv.Port) + "/" + db + "?sslmode=disable"
	if o := runStep(t, "--database-url", "postgresql"+rest, "--timeout", "2s"); o.code != 0 {
		t.Fatalf("lower case: code %d\n%s", o.code, o.stderr)
	}
	for _, scheme := range []string{"POSTGRES", "PostgreSQL", "Postgres"} {
		for _, format := range []string{"text", "json"} {
			o := runStep(t, "--database-url", scheme+rest, "--timeout", "2s", "--log-format", format, "--log-level", "debug")
			if o.code != 1 || o.summary.Results["attempts"] != "" || !strings.Contains(o.stderr, "lower case") {
				t.Fatalf("%s, %s: code %d, attempts %q; want 1, none, saying lower case\n%s", scheme, format, o.code, o.summary.Results["attempts"], o.stderr)
			}
			if strings.Contains(o.stdout+o.stderr, pw) {
				t.Fatalf("%s, %s: the password is printed:\n%s%s", scheme, format, o.stdout, o.stderr)
			}
		}
	}
}

// TestPassfileHostList: a host list whose passwords come from a passfile, one
// entry per host, the first host refusing connections. pgx (v5.13) looks the
// passfile up for the first host only and would send that password to every
// host, so the list is refused before any attempt (exit 1, not retried), naming
// both hosts; neither entry's password is printed, in text or JSON, at debug
// level, in the summary or the results.
func TestPassfileHostList(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	const second = "VWYQ ZPFW"
	role := newRole(t, srv, second)
	closed := strconv.Itoa(pgenv.ClosedPort(t))
	up := strconv.Itoa(srv.Port)
	pf := filepath.Join(t.TempDir(), "pgpass")
	entries := "127.0.0.1:" + closed + ":*:" + role + ":QZJK\\:XKCD\n127.0.0.1:" + up + ":*:" + role + ":" + second + "\n"
	if err := os.WriteFile(pf, []byte(entries), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", pf)
	for _, u := range []string{
		"postgres://" + role + "@127.0.0.1:" + closed + ",127.0.0.1:" + up + "/" + db + "?sslmode=disable",
		"host=127.0.0.1,127.0.0.1 port=" + closed + "," + up + " user=" + role + " dbname=" + db + " sslmode=disable",
	} {
		for _, format := range []string{"text", "json"} {
			dir := t.TempDir()
			o := runStep(t, "--database-url", u, "--timeout", "2s", "--connect-timeout", "1s",
				"--log-level", "debug", "--log-format", format, "--results-dir", dir)
			if o.code != 1 || !strings.Contains(o.stderr, "127.0.0.1:"+up+" another password than host 127.0.0.1:"+closed) {
				t.Fatalf("%s: code %d; want 1, refused naming both hosts (pgx would send the first host's entry to the second)\n%s", format, o.code, o.stderr)
			}
			all := o.stdout + o.stderr
			files, _ := os.ReadDir(dir)
			for _, f := range files {
				b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
				all += string(b)
			}
			for _, piece := range []string{"QZJK", "XKCD", "VWYQ", "ZPFW"} {
				if strings.Contains(all, piece) {
					t.Fatalf("%s: a passfile password (%q) is printed:\n%s", format, piece, all)
				}
			}
		}
	}
}

// TestUnsupportedSecretKeywords: oauth_client_secret, scram_client_key and
// scram_server_key are libpq keywords that pgx does not implement; it sent them
// to the server as settings, the secret in the startup message, and the server
// refused the unknown setting. They are refused before any connection (exit 1,
// no attempt), naming the keyword, printing nothing of the value.
func TestUnsupportedSecretKeywords(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	const pw = "QZJKVWYQ"
	role := newRole(t, srv, pw)
	port := strconv.Itoa(srv.Port)
	for _, key := range []string{"oauth_client_secret", "scram_client_key", "scram_server_key"} {
		for _, u := range []string{
			"postgres://" + role + ":" + pw + "@127.0.0.1:" + port + "/" + db + "?sslmode=disable&" + key + "=XKCDZPFW",
			"host=127.0.0.1 port=" + port + " user=" + role + " password=" + pw + " dbname=" + db + " sslmode=disable " + key + "=XKCDZPFW",
		} {
			o := runStep(t, "--database-url", u, "--timeout", "2s", "--log-level", "debug")
			if o.code != 1 || o.summary.Results["attempts"] != "" || !strings.Contains(o.stderr, key) {
				t.Fatalf("%s: code %d, attempts %q; want 1 before any connection, naming it\n%s", key, o.code, o.summary.Results["attempts"], o.stderr)
			}
			if strings.Contains(o.stdout+o.stderr, "XKCD") || strings.Contains(o.stdout+o.stderr, pw) {
				t.Fatalf("%s: a secret is printed:\n%s", key, o.stdout+o.stderr)
			}
		}
	}
}

// TestUnusualTargetsKeepThePasswordAndTheExitCode: the host forms the other
// tests do not use — a Unix socket directory, a host list whose first member
// refuses connections, a server that does not speak TLS under
// sslmode=require — with a password holding URL delimiters. Each gives the
// documented exit code on the first attempt where no retry can help, and the
// password is in no output: logs (text and JSON, debug), summary, results.
func TestUnusualTargetsKeepThePasswordAndTheExitCode(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	const pw = "QZ@J:K/V%W?Y#x y'z"
	role := newRole(t, srv, pw)
	up := strconv.Itoa(srv.Port)
	closed := strconv.Itoa(pgenv.ClosedPort(t))
	user := url.UserPassword(role, pw).String()
	kv := func(pw string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'" }
	for _, tt := range []struct {
		name     string
		url      string
		code     int
		attempts int // 0: more than one
	}{
		{"unix socket (trusted)", "host=" + srv.Dir + " port=" + up + " user=" + role + " password=" + kv(pw) + " dbname=" + db, 0, 1},
		{"host list, first refuses", "postgres://" + user + "@127.0.0.1:" + closed + ",127.0.0.1:" + up + "/" + db + "?sslmode=disable", 0, 1},
		{"host list, wrong password", "postgres://" + url.UserPassword(role, pw+"x").String() + "@127.0.0.1:" + closed + ",127.0.0.1:" + up + "/" + db + "?sslmode=disable", 1, 1},
		{"host list, all refuse", "host=127.0.0.1,127.0.0.1 port=" + closed + "," + closed + " user=" + role + " password=" + kv(pw) + " dbname=" + db, 75, 0},
		{"sslmode=require, no TLS on the server", "postgres://" + user + "@127.0.0.1:" + up + "/" + db + "?sslmode=require", 1, 1},
		{"PGSSLMODE=verify-full, no TLS on the server", "postgres://" + user + "@127.0.0.1:" + up + "/" + db, 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.name, "PGSSLMODE") {
				t.Setenv("PGSSLMODE", "verify-full")
			}
			for _, format := range []string{"text", "json"} {
				dir := t.TempDir()
				o := runStep(t, "--database-url", tt.url, "--timeout", "1s", "--connect-timeout", "1s",
					"--log-level", "debug", "--log-format", format, "--results-dir", dir)
				if o.code != tt.code {
					t.Fatalf("code %d, want %d\n%s", o.code, tt.code, o.stderr)
				}
				if n := o.attempts(t); tt.attempts > 0 && n != tt.attempts || tt.attempts == 0 && n < 2 {
					t.Errorf("attempts = %d, want %d (0: more than one)", n, tt.attempts)
				}
				all := o.stdout + o.stderr
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
					all += string(b)
				}
				for _, piece := range []string{"QZ", "K/V", "W?Y", "x y", "%W", "QZ%40", "y'z"} {
					if strings.Contains(all, piece) {
						t.Fatalf("%s output holds %q of the password:\n%s", format, piece, all)
					}
				}
			}
		})
	}
}

// No database given at all (the Secret key holds "" or blanks, or the
// variable's name is misspelt) made the step dial libpq's defaults (a local
// socket as the OS user) and wait out --timeout, then exit 75, which no retry
// fixes (found by an attack). It now fails at once (exit 1), saying where the
// URL belongs. The libpq variables still make an empty URL a choice.
func TestNoDatabaseGiven(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "CHARTREUSE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, tc := range []struct{ name, env, val string }{
		{"empty", "CHARTREUSE_DATABASE_URL", ""},
		{"blanks", "CHARTREUSE_DATABASE_URL", "   "},
		{"misspelt", "CHARTREUSE_DATABSE_URL", "postgres://u:p@127.0.0.1:5432/db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			o := runStep(t, "--skip-version-check", "--timeout", "1m")
			if o.code != 1 || !strings.Contains(o.summary.Error, "no database given") {
				t.Errorf("exit %d, want 1 saying no database given: %s", o.code, o.summary.Error)
			}
		})
	}
	t.Run("PG variables", func(t *testing.T) {
		srv, db := pgenv.NewDatabase(t)
		u, err := url.Parse(srv.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		t.Setenv("PGHOST", u.Hostname())
		t.Setenv("PGPORT", u.Port())
		t.Setenv("PGUSER", u.User.Username())
		t.Setenv("PGPASSWORD", pw)
		t.Setenv("PGDATABASE", strings.TrimPrefix(u.Path, "/"))
		t.Setenv("PGSSLMODE", "disable")
		if o := runStep(t, "--skip-version-check", "--timeout", "1m"); o.code != 0 {
			t.Errorf("exit %d: %s", o.code, o.summary.Error)
		}
	})
}
