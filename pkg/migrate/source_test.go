package migrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/pressly/goose/v3"
)

// scannerAnnotations is parseAnnotations as it was written with a bufio.Scanner,
// kept to check that cutting lines in place reads every file the same way.
func scannerAnnotations(b []byte) (src Source, hasUp bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	inDown := false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(line, "--") && strings.Contains(line, "+goose") {
			cmd := strings.TrimSpace(strings.Replace(strings.ReplaceAll(line, "--", ""), "+goose", "", 1))
			switch {
			case strings.EqualFold(cmd, "Up"):
				hasUp, inDown = true, false
			case strings.EqualFold(cmd, "Down"):
				inDown = true
			case strings.EqualFold(cmd, "NO TRANSACTION"):
				src.NoTx = true
			}
			continue
		}
		if inDown && trimmed != "" && !strings.HasPrefix(trimmed, "--") {
			src.HasDown = true
		}
	}
	return src, hasUp
}

var annotationSeeds = []string{
	"",
	"\n",
	"-- +goose Up",
	"-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;",
	"-- +goose Up\r\nSELECT 1;\r\n-- +goose Down\r\nSELECT 2;\r\n",
	"-- +goose Up\r\r\n-- +goose Down\r\n\r\n",
	"-- +goose Up\n-- +goose Down\n\r",
	"-- +goose Up\n-- +goose Down\n \u00a0\u2003\n-- x\n",
	"-- +goose Up\n-- +goose Down\n\xff\n",
	"-- +goose Up\n-- +goose Down\n\xc2\n",
	"----+goose--Up--\n-- +goose +goose Down\n-- +goose Down\nx",
	"-- +goose no transaction\n-- +GOOSE UP\n",
	"-- +goose Down\nSELECT 1;\n-- +goose Up\n",
	"\n\n-- +goose Up\n\n\n-- +goose Down\n\n\n",
}

func TestParseAnnotationsMatchesScanner(t *testing.T) {
	for _, s := range annotationSeeds {
		checkAnnotations(t, []byte(s))
	}
	// A line the scanner could not hold ended its reading: what follows is ignored.
	long := strings.Repeat("x", maxAnnotationLine)
	for _, s := range []string{
		"-- +goose Up\n-- +goose Down\n" + long + "\nSELECT 1;\n",
		"-- +goose Up\n" + long[1:] + "\n-- +goose Down\nSELECT 1;\n",
		"-- +goose Up\n" + long[1:] + "\r\n-- +goose Down\nSELECT 1;\n",
		"-- +goose Down\nSELECT 1;\n" + long + "\n-- +goose Up\n",
		"-- +goose Up\n-- +goose Down\n" + long[1:],
		"-- +goose Up\n-- +goose Down\n" + long,
	} {
		checkAnnotations(t, []byte(s))
	}
}

func FuzzParseAnnotationsMatchesScanner(f *testing.F) {
	for _, s := range annotationSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAnnotations(t, []byte(s)) })
}

func checkAnnotations(t *testing.T, b []byte) {
	t.Helper()
	got, gotUp := parseAnnotations(b)
	want, wantUp := scannerAnnotations(b)
	if got != want || gotUp != wantUp {
		show := string(b)
		if len(show) > 200 {
			show = show[:100] + "..." + show[len(show)-100:]
		}
		t.Fatalf("%q: parseAnnotations = %+v, up %v; the scanner read %+v, up %v", show, got, gotUp, want, wantUp)
	}
}

func BenchmarkScanDir(b *testing.B) {
	fsys := fstest100()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ScanDir(fsys, "m"); err != nil {
			b.Fatal(err)
		}
	}
}

// fstest100 is a directory of 100 small migrations, like the benchmark's.
func fstest100() fstest.MapFS {
	fsys := fstest.MapFS{}
	for i := 1; i <= 100; i++ {
		fsys[fmt.Sprintf("%05d_m%d.sql", i, i)] = &fstest.MapFile{Data: []byte(mig(
			fmt.Sprintf("CREATE TABLE t%d (id int PRIMARY KEY, v text);\nINSERT INTO t%d VALUES (1, 'x');\n", i, i),
			fmt.Sprintf("DROP TABLE t%d;", i)))}
	}
	return fsys
}

// TestParseMigrationIsGoose: parseMigration, which shows goose one file at a
// time, gives the statements and transaction mode goose's Provider runs from
// the whole directory.
func TestParseMigrationIsGoose(t *testing.T) {
	t.Setenv("CHARTREUSE_TEST_NAME", "expanded")
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE a (id int);\nINSERT INTO a VALUES (1); -- one\n", "DROP TABLE a;"),
		"00002_b.sql": "-- +goose NO TRANSACTION\n" + mig("CREATE INDEX CONCURRENTLY i ON a (id);\nSELECT 1;", ""),
		"00003_c.sql": "-- +goose ENVSUB ON\n" + mig("-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$\nSELECT 1;\n$$ LANGUAGE sql;\n-- +goose StatementEnd\nCREATE TABLE ${CHARTREUSE_TEST_NAME} (id int);", "DROP TABLE ${CHARTREUSE_TEST_NAME};\nDROP FUNCTION f;"),
		"README.md":   "notes",
	})
	fsys := os.DirFS(dir)
	want, err := gooseRunAll(fsys)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ScanDir(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range src {
		for _, up := range []bool{true, false} {
			p, err := parseMigration(context.Background(), fsys, s.File, s.Version, up)
			if err != nil {
				t.Fatalf("%s up=%v: %v", s.File, up, err)
			}
			w := gooseRun{up: want[i].up, useTx: want[i].useTx}
			if !up {
				w.up = want[i].down
			}
			if !reflect.DeepEqual(p.Statements, w.up) || (up && p.UseTx != w.useTx) {
				t.Errorf("%s up=%v: parsed %q (tx %v), goose ran %q (tx %v)", s.File, up, p.Statements, p.UseTx, w.up, w.useTx)
			}
			if up && p.UseTx == s.NoTx {
				t.Errorf("%s: ScanDir says NoTx=%v, goose's transaction mode is %v", s.File, s.NoTx, p.UseTx)
			}
		}
	}
	if got := want[2].up[len(want[2].up)-1]; !strings.Contains(got, "expanded") {
		t.Fatalf("ENVSUB was not expanded by goose: %q", got)
	}
}

// gooseRunAll applies, then rolls back, every migration of fsys with goose's
// Provider on a database that records statements.
func gooseRunAll(fsys fs.FS) ([]gooseRun, error) {
	rec := &recorder{}
	db := sql.OpenDB(fakeConnector{rec})
	defer db.Close()
	p, err := goose.NewProvider("", db, fsys, goose.WithStore(&memStore{}), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var out []gooseRun
	for _, s := range p.ListSources() {
		var r gooseRun
		if _, err := p.ApplyVersion(ctx, s.Version, true); err != nil {
			return nil, err
		}
		r.up, r.useTx = rec.take()
		if _, err := p.ApplyVersion(ctx, s.Version, false); err != nil {
			return nil, err
		}
		r.down, _ = rec.take()
		out = append(out, r)
	}
	return out, nil
}

// flipFS serves name's bytes a and b by turns: a file rewritten between goose's
// two openings (one per direction, at the same time), whatever else opens it.
type flipFS struct {
	name   string
	a, b   []byte
	mu     sync.Mutex
	opened int
}

func (f *flipFS) Open(name string) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data := f.a
	if f.opened%2 == 1 {
		data = f.b
	}
	f.opened++
	return fstest.MapFS{f.name: {Data: data}}.Open(name)
}

// TestParsedSumIsOfTheBytesParsed: the sha256 parseMigration reports is of the
// whole file, every time, though goose opens it twice at once and reads one
// direction only; a file that changed between the openings has none.
func TestParsedSumIsOfTheBytesParsed(t *testing.T) {
	body := []byte("-- +goose Up\nCREATE TABLE a (id int);\n" + strings.Repeat("-- padding\n", 2000) + "-- +goose Down\nDROP TABLE a;\n")
	want := fmt.Sprintf("%x", sha256.Sum256(body))
	for i := range 200 {
		for _, up := range []bool{true, false} {
			p, err := parseMigration(context.Background(), fstest.MapFS{"00001_a.sql": {Data: body}}, "00001_a.sql", 1, up)
			if err != nil {
				t.Fatal(err)
			}
			if p.SHA256 != want {
				t.Fatalf("run %d, up %v: sha256 %s, want %s", i, up, p.SHA256, want)
			}
		}
	}
	other := append([]byte{}, body...)
	other = append(other, "-- edited\n"...)
	p, err := parseMigration(context.Background(), &flipFS{name: "00001_a.sql", a: body, b: other}, "00001_a.sql", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.SHA256 != "" {
		t.Errorf("a file changed between openings has sha256 %s, want none", p.SHA256)
	}
}

// Files named like migrations in a subdirectory are never read: migrate says so
// (a warning: an archive kept there on purpose must not fail the run), on a
// real database, and plans only the directory's own.
func TestUnreadSubdirectoryWarned(t *testing.T) {
	db := newDB(t)
	dir := writeDir(t, files{"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	for sub, name := range map[string]string{"2025": "00002_b.sql", "notes": "README.md", "archive": "old.sql"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, name), []byte(mig("SELECT 1;", "SELECT 1;")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := mustRun(t, db.url(), dir, "--plan")
	if !strings.Contains(o.stderr, "a subdirectory holds files named like migrations, which are not read") || !strings.Contains(o.stderr, "file=2025/00002_b.sql") {
		t.Errorf("no warning naming 2025/00002_b.sql:\n%s", o.stderr)
	}
	if strings.Contains(o.stderr, "notes/") || strings.Contains(o.stderr, "archive/") {
		t.Errorf("warned about a subdirectory without migrations:\n%s", o.stderr)
	}
	if got := o.result("target-version"); got != "1" {
		t.Errorf("target-version %q, want 1 (the subdirectory's file is not read)", got)
	}
}
