package dbconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// TestPassfilePasswordOfEveryHostIsRegistered: pgx looks the passfile up for the
// first host of a list only, and that is the one password Config registered.
// The entries of the later hosts (libpq looks each one up, and so would anything
// that tries them with their own entry) are registered too, from every place
// the passfile is named: PGPASSFILE, passfile= in a keyword/value string, the
// URL's query, ~/.pgpass; a Unix socket member is looked up as localhost.
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
			cfg, err := (&Options{URL: tt.raw, ConnectTimeout: time.Second}).Config(red)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Password != want[0] || len(cfg.Fallbacks) < 2 {
				t.Fatalf("pgx read password %q and %d fallbacks; the test expects the first host's entry and 3 hosts", cfg.Password, len(cfg.Fallbacks))
			}
			for _, pw := range want {
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
