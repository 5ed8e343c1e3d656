package dbconn

import (
	"context"
	"fmt"
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

// TestPassfilePasswordOfEveryHostIsRegistered: pgx looks the passfile up for the
// first host of a list only, and that is the one password Config registered.
// The entries of the later hosts (libpq looks each one up, and so would anything
// that tries them with their own entry) are registered too, from every place
// the passfile is named: PGPASSFILE, passfile= in a keyword/value string, the
// URL's query, ~/.pgpass; a Unix socket member is looked up as localhost.
// The entries differ, so Config refuses the list (pgx would send the first
// host's password to the others), naming the hosts and no password.
func TestPassfilePasswordOfEveryHostIsRegistered(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sock")
	pf := filepath.Join(dir, "pass file")
	lines := strings.Join([]string{
		"db1.internal:5432:app:app:QZJKfirst",
		"db2.internal:5433:app:app:VWYQ\\:second",
		"localhost:5434:app:app:XKCDthird",
		"*:*:other:app:NOTUSED",
		"",
	}, "\n")
	if err := os.WriteFile(pf, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".pgpass"), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{"QZJKfirst", "VWYQ:second", "XKCDthird"}
	for _, tt := range []struct {
		name, raw string
		env       map[string]string
	}{
		{"URL, PGPASSFILE", "postgres://app@db1.internal:5432,db2.internal:5433,[" + sock + "]:5434/app", map[string]string{"PGPASSFILE": pf}},
		{"keyword/value, passfile=", "host=db1.internal,db2.internal," + sock + " port=5432,5433,5434 user=app dbname=app passfile='" + pf + "'", nil},
		{"URL, passfile in the query", "postgres://app@/app?host=db1.internal,db2.internal," + sock + "&port=5432,5433,5434&passfile=" + strings.ReplaceAll(pf, " ", "%20"), nil},
		{"keyword/value, ~/.pgpass", "host=db1.internal,db2.internal," + sock + " port=5432,5433,5434 user=app dbname=app", map[string]string{"HOME": dir}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGPASSFILE", "") // restored after the test
			os.Unsetenv("PGPASSFILE")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			red := redact.New()
			_, err := (&Options{URL: tt.raw, ConnectTimeout: time.Second}).Config(red)
			if failure.Code(err) != failure.CodePermanent {
				t.Fatalf("Config = %v (exit %d), want it refused (exit %d): the hosts' entries differ", err, failure.Code(err), failure.CodePermanent)
			}
			for _, part := range []string{"db2.internal:5433", "db1.internal:5432", "passfile"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("the refusal does not say %q: %v", part, err)
				}
			}
			for _, pw := range want {
				if strings.Contains(err.Error(), pw) {
					t.Errorf("the refusal prints the password %q: %v", pw, err)
				}
				if got := red.String("authentication with " + pw + " failed"); strings.Contains(got, pw) {
					t.Errorf("the passfile password %q of a host of the list is not registered: %s", pw, got)
				}
			}
			if got := red.String("NOTUSED"); got != "NOTUSED" {
				t.Errorf("an entry for another database was registered: %s", got)
			}
		})
	}
}

// pgx sends the first host's passfile password to every host of a list. With
// entries that differ, a later host would get a password the passfile never
// gave it: the real server below is reached second, with the first host's
// entry (its own says otherwise), and before the refusal it let the step in
// with that password. The same entry for every host, or a password given in
// the URL or PGPASSWORD (libpq sends that one to every host too), is fine.
func TestPassfileListNeverSendsOneHostsPasswordToAnother(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	role := "pf_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	first := "FirstHostOnly-7Qz"
	if err := srv.Exec(ctx, db, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD "+quoteLiteral(first)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	closed := pgenv.ClosedPort(t)
	dir := t.TempDir()
	write := func(name, second string) string {
		pf := filepath.Join(dir, name)
		lines := fmt.Sprintf("127.0.0.1:%d:*:%s:%s\n127.0.0.1:%d:*:%s:%s\n", closed, role, first, srv.Port, role, second)
		if err := os.WriteFile(pf, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		return pf
	}
	list := fmt.Sprintf("postgres://%s@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable", role, closed, srv.Port, db)
	os.Unsetenv("PGPASSWORD")
	mustConnect := func(t *testing.T, raw string) {
		t.Helper()
		cfg, err := (&Options{URL: raw, ConnectTimeout: 2 * time.Second}).Config(redact.New())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := Connect(ctx, cfg)
		if err != nil {
			t.Fatalf("connecting through the list: %v", err)
		}
		conn.Close(ctx)
	}

	t.Run("entries differ", func(t *testing.T) {
		t.Setenv("PGPASSFILE", write("differ", "SecondHostsOwn-2Kw"))
		_, err := (&Options{URL: list, ConnectTimeout: 2 * time.Second}).Config(redact.New())
		if failure.Code(err) != failure.CodePermanent {
			t.Fatalf("Config = %v (exit %d), want it refused (exit %d) before anything connects", err, failure.Code(err), failure.CodePermanent)
		}
		if strings.Contains(err.Error(), first) {
			t.Errorf("the refusal prints the password: %v", err)
		}
	})
	t.Run("same entry for every host", func(t *testing.T) {
		t.Setenv("PGPASSFILE", write("same", first))
		mustConnect(t, list)
	})
	t.Run("password given", func(t *testing.T) {
		t.Setenv("PGPASSFILE", write("given", "SecondHostsOwn-2Kw"))
		mustConnect(t, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable", role, first, closed, srv.Port, db))
	})
}
