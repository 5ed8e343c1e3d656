package dbconn

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

var hardPasswords = []string{"p@ss:w/rd%41?x", "a@b@c", "per%cent%2F", "sp ace'q\"uote", "q?uery&x=1#frag"}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"url", Options{URL: "postgres://h/db", ConnectTimeout: time.Second}, true},
		{"env only", Options{ConnectTimeout: time.Second}, true},
		{"both", Options{URL: "postgres://h/db", URLFile: "/x", ConnectTimeout: time.Second}, false},
		{"zero timeout", Options{ConnectTimeout: 0}, false},
		{"negative timeout", Options{ConnectTimeout: -time.Second}, false},
		{"absurd timeout", Options{ConnectTimeout: 48 * time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMalformedURLsNeverLeakThePassword(t *testing.T) {
	for _, pw := range hardPasswords {
		for _, raw := range []string{
			"postgres://app:" + pw + "@db:5432/app",     // unescaped: often malformed
			"postgres://app:" + pw + "@db:notaport/app", // bad port
			"postgres://app:" + url.QueryEscape(pw) + "@db:x/app",
		} {
			red := redact.New()
			o := Options{URL: raw, ConnectTimeout: time.Second}
			_, err := o.Config(red)
			if err == nil {
				continue // some of these parse; leaking is checked below either way
			}
			if failure.Code(err) != failure.CodePermanent {
				t.Errorf("malformed URL: code %d, want 1", failure.Code(err))
			}
			msg := red.String(err.Error())
			if strings.Contains(msg, pw) || strings.Contains(msg, url.QueryEscape(pw)) {
				t.Errorf("error for %q leaks the password: %s", raw, msg)
			}
			if strings.Contains(err.Error(), raw) {
				t.Errorf("error echoes the raw URL: %s", err)
			}
		}
	}
}

func TestURLFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "url")
	os.WriteFile(good, []byte("postgres://app:secret@db:5432/app\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	cfg, err := (&Options{URLFile: good, ConnectTimeout: time.Second}).Config(redact.New())
	if err != nil || cfg.Host != "db" || cfg.Password != "secret" {
		t.Fatalf("Config from file: %+v, %v", cfg, err)
	}
	for _, path := range []string{empty, filepath.Join(dir, "missing")} {
		_, err := (&Options{URLFile: path, ConnectTimeout: time.Second}).Config(redact.New())
		if failure.Code(err) != failure.CodePermanent || !strings.Contains(err.Error(), path) {
			t.Errorf("URL file %s: %v", path, err)
		}
	}
}

func TestUnreadableCertificateIsNamed(t *testing.T) {
	const ca = "/run/secrets/nowhere/ca.crt"
	red := redact.New()
	_, err := (&Options{URL: "postgres://app:s3cret@db/app?sslmode=verify-full&sslrootcert=" + ca, ConnectTimeout: time.Second}).Config(red)
	if failure.Code(err) != failure.CodePermanent || !strings.Contains(err.Error(), ca) || strings.Contains(err.Error(), "not valid") {
		t.Fatalf("missing sslrootcert: %v", err)
	}
	if strings.Contains(red.String(err.Error()), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestLibpqEnvironment(t *testing.T) {
	t.Setenv("PGHOST", "envhost")
	t.Setenv("PGPORT", "6543")
	t.Setenv("PGUSER", "envuser")
	t.Setenv("PGPASSWORD", "env p@ss")
	t.Setenv("PGDATABASE", "envdb")
	red := redact.New()
	cfg, err := (&Options{ConnectTimeout: time.Second}).Config(red)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "envhost" || cfg.Port != 6543 || cfg.User != "envuser" || cfg.Database != "envdb" {
		t.Fatalf("config = %s", Describe(cfg))
	}
	if got := red.String("x env p@ss y"); strings.Contains(got, "env p@ss") {
		t.Fatalf("PGPASSWORD not registered for redaction: %s", got)
	}
}

// TestConnectClassification talks to the real server.
func TestConnectClassification(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	role := "app_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	pw := hardPasswords[0]
	if err := srv.Exec(ctx, db, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD "+quoteLiteral(pw)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})

	closed := pgenv.ClosedPort(t)
	tests := []struct {
		name  string
		url   string
		code  int
		state string
	}{
		{"good password with special characters", srv.UserURL(role, pw, db), 0, ""},
		{"wrong password", srv.UserURL(role, "wrong", db), 1, InvalidPassword},
		{"unknown role", srv.UserURL("nobody_here", "x", db), 1, InvalidPassword},
		{"database does not exist yet", srv.UserURL(role, pw, "not_created_yet"), 75, InvalidCatalogName},
		{"connection refused", "postgres://u:p@127.0.0.1:" + strconv.Itoa(closed) + "/db?sslmode=disable", 75, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			red := redact.New()
			cfg, err := (&Options{URL: tt.url, ConnectTimeout: 2 * time.Second}).Config(red)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := Connect(ctx, cfg)
			if conn != nil {
				conn.Close(ctx)
			}
			if got := failure.Code(err); got != tt.code {
				t.Fatalf("code = %d (%v), want %d", got, err, tt.code)
			}
			if tt.state != "" && SQLState(err) != tt.state {
				t.Errorf("SQLSTATE = %q, want %q", SQLState(err), tt.state)
			}
			if err != nil {
				if strings.Contains(red.String(err.Error()), pw) {
					t.Errorf("error leaks password: %v", err)
				}
			}
		})
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
