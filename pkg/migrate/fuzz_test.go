package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"unicode"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// The fuzz targets check this package's strict reading of a migration directory
// against goose v3.28.0 itself, which is what runs the migrations: ScanDir's
// pre-checks (refuse before touching the database) must agree with what goose will
// do, or a refusal is wrong, or, worse, a rollback is allowed that would only
// delete a version row.

// FuzzMigrationFileNames: for any two file names, ScanDir never panics; when it
// accepts the directory, goose's Provider loads the same versions from it; every
// *.sql name goose would silently skip or reject, ScanDir refuses; duplicate
// versions are refused.
func FuzzMigrationFileNames(f *testing.F) {
	for _, s := range [][2]string{
		{"00001_init.sql", "00002_more.sql"}, {"1_a.sql", "01_b.sql"}, {"0_zero.sql", "2_b.sql"},
		{"abc.sql", "1_a.sql"}, {"1.sql", "2_x.sql"}, {"-1_neg.sql", "3_x.sql"}, {"1_a.go", "2_b.sql"},
		{"1_a_test.go", "2_b.sql"}, {"README.md", "1_a.sql"}, {"9223372036854775807_max.sql", "1_a.sql"},
		{"9223372036854775808_over.sql", "1_a.sql"}, {"+1_plus.sql", "2_a.sql"}, {"1_a.SQL", "2_b.sql"},
		{".1_hidden.sql", "2_b.sql"}, {"1_.sql", "2_.sql"}, {"1__x.sql", "1_y.sql"}, {" 1_a.sql", "2_b.sql"},
		{"1_a.sql.bak", "2_b.sql"}, {"1_a.sql", "1_a.sql"}, {"1_a.sql ", "2_b.sql"}, {"1_a.SQL\t", "2_b.sql"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name1, name2 string) {
		if !validName(name1) || !validName(name2) {
			t.Skip()
		}
		fsys := fstest.MapFS{
			name1: {Data: []byte(mig("SELECT 1;", "SELECT 2;"))},
			name2: {Data: []byte(mig("SELECT 3;", ""))},
		}
		src, err := ScanDir(fsys, "/migrations")
		sqlNames := 0
		var versions []int64
		dupOrBad := false
		for _, n := range uniq(name1, name2) {
			if path.Ext(n) != ".sql" {
				// .SQL, "x.sql " and the like: refused, never skipped in silence.
				if strings.EqualFold(path.Ext(strings.TrimRightFunc(n, unicode.IsSpace)), ".sql") {
					sqlNames++
					dupOrBad = true
				}
				continue
			}
			sqlNames++
			v, verr := goose.NumericComponent(n)
			if verr != nil || slices.Contains(versions, v) {
				dupOrBad = true
			}
			versions = append(versions, v)
		}
		if err != nil {
			var re *RefusalError
			if !errors.As(err, &re) {
				t.Fatalf("ScanDir(%q, %q): error is not a refusal: %v", name1, name2, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") && !strings.ContainsAny(name1+name2, "\n\r") {
				t.Fatalf("ScanDir(%q, %q): error is not one line: %q", name1, name2, err)
			}
			if !dupOrBad && sqlNames > 0 && !isGo(name1) && !isGo(name2) {
				t.Fatalf("ScanDir(%q, %q) refused good names: %v", name1, name2, err)
			}
			return
		}
		if dupOrBad {
			t.Fatalf("ScanDir(%q, %q) accepted a misnamed or duplicate migration: %v", name1, name2, src)
		}
		if len(src) != sqlNames {
			t.Fatalf("ScanDir(%q, %q) found %d migrations, want %d", name1, name2, len(src), sqlNames)
		}
		for i, s := range src {
			if s.Version < 1 || (i > 0 && s.Version <= src[i-1].Version) {
				t.Fatalf("versions not positive and increasing: %v", src.Versions())
			}
			if v, _ := goose.NumericComponent(s.File); v != s.Version {
				t.Fatalf("%s read as version %d, goose reads %d", s.File, s.Version, v)
			}
		}
		p, err := goose.NewProvider("", fakeDB(), fsys, goose.WithStore(&memStore{}), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatalf("ScanDir accepted %q, %q but goose refuses the directory: %v", name1, name2, err)
		}
		var gv []int64
		for _, s := range p.ListSources() {
			gv = append(gv, s.Version)
		}
		if !slices.Equal(gv, src.Versions()) {
			t.Fatalf("ScanDir reads versions %v, goose %v (files %q, %q)", src.Versions(), gv, name1, name2)
		}
	})
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.Contains(n, "/") && fs.ValidPath(n)
}

func isGo(n string) bool { return path.Ext(n) == ".go" && !strings.HasSuffix(n, "_test.go") }

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// FuzzMigrationAnnotations: for any file content, when goose can run the file, the
// annotations ScanDir reads match goose's: it has an Up section, it runs in a
// transaction unless NO TRANSACTION, and it has Down statements exactly when goose
// would execute some on rollback. When ScanDir refuses a file for lacking its Up
// annotation, goose refuses it too.
func FuzzMigrationAnnotations(f *testing.F) {
	for _, s := range []string{
		mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		mig("CREATE TABLE a (id int);", ""),
		"-- +goose NO TRANSACTION\n" + mig("CREATE INDEX CONCURRENTLY i ON a (id);", "DROP INDEX i;"),
		"-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- +goose StatementEnd\n-- +goose Down\nDROP FUNCTION f;\n",
		"-- +goose Up\nSELECT 1;\n-- +goose Down\n-- nothing to undo\n",
		"-- +goose Up\nSELECT 1;\n-- +goose Down\n-- +goose StatementBegin\n-- +goose StatementEnd\n",
		"-- +goose up\nSELECT 1;\n-- +goose down\nSELECT 2;\n",
		"SELECT 1;\n",
		"-- +goose Down\nSELECT 1;\n",
		"  -- +goose Up\nSELECT 1;\n",
		"-- +goose Up\nSELECT 1\n",
		"-- +goose Up\nSELECT 1;\n-- +goose Down\n   \nSELECT 2; -- trailing comment\n",
		"-- +goose Up\n-- +goose NO TRANSACTION\nVACUUM;\n",
		"--+goose Up\nSELECT 1;\n--+goose Down\nSELECT 1;\n",
		"-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n-- +goose Up\nSELECT 3;\n",
		"-- +goose Up\nSELECT 1; -- +goose Down\nSELECT 2;\n",
		"-- +goose Up\r\nSELECT 1;\r\n-- +goose Down\r\nSELECT 2;\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		if strings.Contains(strings.ToUpper(content), "ENVSUB") {
			t.Skip() // goose substitutes environment variables: statements depend on the environment
		}
		fsys := fstest.MapFS{"00001_m.sql": {Data: []byte(content)}}
		src, scanErr := ScanDir(fsys, "/migrations")
		g, gerr := gooseParse(fsys, "00001_m.sql")
		if scanErr != nil {
			if !errors.Is(scanErr, ErrBadMigrationFiles) {
				t.Fatalf("ScanDir(%q): unexpected error %v", content, scanErr)
			}
			if gerr == nil {
				t.Fatalf("ScanDir refuses %q (%v), but goose runs it: up %q, down %q", content, scanErr, g.up, g.down)
			}
			return
		}
		if gerr != nil {
			return // goose fails at apply time, naming the file; not ScanDir's job
		}
		s := src[0]
		if s.NoTx != !g.useTx {
			t.Fatalf("%q: ScanDir reads NO TRANSACTION=%v, goose runs it in a transaction=%v", content, s.NoTx, g.useTx)
		}
		hasDown := slices.ContainsFunc(g.down, func(stmt string) bool { return strings.TrimSpace(stmt) != "" })
		if s.HasDown != hasDown {
			t.Fatalf("%q: ScanDir reads HasDown=%v, goose would execute down statements %q", content, s.HasDown, g.down)
		}
	})
}

// FuzzVersionFlag: --to/--down-to values parse to a non-negative version whose
// String reads back the same; empty means unset.
func FuzzVersionFlag(f *testing.F) {
	for _, s := range []string{"", " ", "0", "1", "00042", "-1", "+3", "1e3", "9223372036854775807", "9223372036854775808", " 7\n", "0x10", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v Version
		if err := v.Set(s); err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") && !strings.ContainsAny(s, "\n\r") {
				t.Fatalf("Set(%q): error is not one line: %q", s, err)
			}
			if v.IsSet {
				t.Fatalf("Set(%q) failed but left a value: %+v", s, v)
			}
			return
		}
		if strings.TrimSpace(s) == "" {
			if v.IsSet {
				t.Fatalf("Set(%q) = %+v, want unset", s, v)
			}
			return
		}
		if !v.IsSet || v.Value < 0 {
			t.Fatalf("Set(%q) = %+v", s, v)
		}
		var back Version
		if err := back.Set(v.String()); err != nil || back != v {
			t.Fatalf("Set(%q) = %+v, String %q reads back as %+v, %v", s, v, v.String(), back, err)
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err != nil || n != v.Value {
			t.Fatalf("Set(%q) = %d, strconv reads %d, %v", s, v.Value, n, err)
		}
	})
}

// gooseRun is what goose v3.28.0 executes for one SQL migration.
type gooseRun struct {
	up, down []string
	useTx    bool
}

// gooseParse applies and rolls back version 1 of fsys with goose's Provider on a
// database that records statements instead of running them.
func gooseParse(fsys fs.FS, file string) (gooseRun, error) {
	rec := &recorder{}
	db := sql.OpenDB(fakeConnector{rec})
	defer db.Close()
	p, err := goose.NewProvider("", db, fsys, goose.WithStore(&memStore{}), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return gooseRun{}, err
	}
	ctx := context.Background()
	var out gooseRun
	if _, err := p.ApplyVersion(ctx, 1, true); err != nil {
		return gooseRun{}, err
	}
	out.up, out.useTx = rec.take()
	if _, err := p.ApplyVersion(ctx, 1, false); err != nil {
		return gooseRun{}, err
	}
	out.down, _ = rec.take()
	return out, nil
}

// memStore is goose's version table in memory.
type memStore struct {
	mu      sync.Mutex
	applied map[int64]bool
}

func (s *memStore) Tablename() string                                           { return DefaultTable }
func (s *memStore) CreateVersionTable(context.Context, database.DBTxConn) error { return nil }
func (s *memStore) Insert(_ context.Context, _ database.DBTxConn, r database.InsertRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied == nil {
		s.applied = map[int64]bool{}
	}
	s.applied[r.Version] = true
	return nil
}
func (s *memStore) Delete(_ context.Context, _ database.DBTxConn, v int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.applied, v)
	return nil
}
func (s *memStore) GetMigration(_ context.Context, _ database.DBTxConn, v int64) (*database.GetMigrationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == 0 || s.applied[v] {
		return &database.GetMigrationResult{IsApplied: true}, nil
	}
	return nil, database.ErrVersionNotFound
}
func (s *memStore) GetLatestVersion(context.Context, database.DBTxConn) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var latest int64
	for v := range s.applied {
		latest = max(latest, v)
	}
	return latest, nil
}
func (s *memStore) ListMigrations(context.Context, database.DBTxConn) ([]*database.ListMigrationsResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*database.ListMigrationsResult{{Version: 0, IsApplied: true}}
	for v := range s.applied {
		out = append(out, &database.ListMigrationsResult{Version: v, IsApplied: true})
	}
	slices.SortFunc(out, func(a, b *database.ListMigrationsResult) int { return int(b.Version - a.Version) })
	return out, nil
}

// recorder collects the statements a fake connection executed and whether a
// transaction was begun.
type recorder struct {
	mu     sync.Mutex
	stmts  []string
	begins int
}

func (r *recorder) exec(q string) {
	r.mu.Lock()
	r.stmts = append(r.stmts, q)
	r.mu.Unlock()
}

func (r *recorder) take() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, tx := r.stmts, r.begins > 0
	r.stmts, r.begins = nil, 0
	return s, tx
}

func fakeDB() *sql.DB { return sql.OpenDB(fakeConnector{&recorder{}}) }

type fakeConnector struct{ rec *recorder }

func (c fakeConnector) Connect(context.Context) (driver.Conn, error) { return &fakeConn{c.rec}, nil }
func (c fakeConnector) Driver() driver.Driver                        { return fakeDriver(c) }

type fakeDriver struct{ rec *recorder }

func (d fakeDriver) Open(string) (driver.Conn, error) { return &fakeConn{d.rec}, nil }

type fakeConn struct{ rec *recorder }

func (c *fakeConn) Prepare(q string) (driver.Stmt, error) { return fakeStmt{c.rec, q}, nil }
func (c *fakeConn) Close() error                          { return nil }
func (c *fakeConn) Begin() (driver.Tx, error) {
	c.rec.mu.Lock()
	c.rec.begins++
	c.rec.mu.Unlock()
	return fakeTx{}, nil
}
func (c *fakeConn) ExecContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Result, error) {
	c.rec.exec(q)
	return driver.RowsAffected(0), nil
}
func (c *fakeConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return emptyRows{}, nil
}

type fakeTx struct{}

func (fakeTx) Commit() error   { return nil }
func (fakeTx) Rollback() error { return nil }

type fakeStmt struct {
	rec *recorder
	q   string
}

func (s fakeStmt) Close() error  { return nil }
func (s fakeStmt) NumInput() int { return -1 }
func (s fakeStmt) Exec([]driver.Value) (driver.Result, error) {
	s.rec.exec(s.q)
	return driver.RowsAffected(0), nil
}
func (s fakeStmt) Query([]driver.Value) (driver.Rows, error) { return emptyRows{}, nil }

type emptyRows struct{}

func (emptyRows) Columns() []string         { return nil }
func (emptyRows) Close() error              { return nil }
func (emptyRows) Next([]driver.Value) error { return io.EOF }
