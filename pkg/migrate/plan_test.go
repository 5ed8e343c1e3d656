package migrate

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func srcs(versions ...int64) Sources {
	var s Sources
	for _, v := range versions {
		s = append(s, Source{Version: v, File: "f.sql", HasDown: true})
	}
	return s
}

func gooseState(rows ...Row) *State {
	st := &State{Schema: "public", SchemaExists: true, Name: "goose_db_version", Exists: true, Kind: "r",
		CanRead: true, CanWrite: true, CanCreate: true, CurrentUser: "app", UserTables: 1,
		Columns: []Column{{"id", "integer", true}, {"version_id", "bigint", true}, {"is_applied", "boolean", true}, {"tstamp", "timestamp without time zone", false}}}
	st.Rows = rows
	return st
}

// applied builds rows for versions applied in order, after the version 0 row.
func applied(versions ...int64) []Row {
	rows := []Row{{ID: 1, Version: 0, Applied: true}}
	for i, v := range versions {
		rows = append(rows, Row{ID: int64(i + 2), Version: v, Applied: true})
	}
	return rows
}

func noTable() *State {
	return &State{Schema: "public", SchemaExists: true, Name: "goose_db_version", CanCreate: true, CurrentUser: "app"}
}

func TestAnalyze(t *testing.T) {
	up := Request{Mode: ModeUp, AllowEmptyDatabase: true, Dir: "/migrations"}
	with := func(r Request, f func(*Request)) Request { f(&r); return r }
	tests := []struct {
		name     string
		src      Sources
		st       *State
		req      Request
		reason   error
		current  int64
		target   int64
		pending  []int64
		down     []int64
		contains []string
	}{
		{name: "fresh database", src: srcs(1, 2, 3), st: noTable(), req: up, target: 3, pending: []int64{1, 2, 3}},
		{name: "partly applied", src: srcs(1, 2, 3), st: gooseState(applied(1)...), req: up, current: 1, target: 3, pending: []int64{2, 3}},
		{name: "up to date", src: srcs(1, 2), st: gooseState(applied(1, 2)...), req: up, current: 2, target: 2},
		{name: "to", src: srcs(1, 2, 3), st: gooseState(applied(1)...), req: with(up, func(r *Request) { r.To = Version{IsSet: true, Value: 2} }), current: 1, target: 2, pending: []int64{2}},
		{name: "to below current", src: srcs(1, 2, 3), st: gooseState(applied(1, 2, 3)...), req: with(up, func(r *Request) { r.To = Version{IsSet: true, Value: 1} }), current: 3, target: 1},
		{name: "to unknown", src: srcs(1, 2, 3), st: noTable(), req: with(up, func(r *Request) { r.To = Version{IsSet: true, Value: 7} }), reason: ErrUnknownVersion, contains: []string{"--to 7", "1, 2, 3"}},
		{name: "branched", src: srcs(1, 2), st: gooseState(applied(1, 2, 3, 4)...), req: up, reason: ErrBranched,
			contains: []string{"versions 3, 4", "Deploy the image", "DELETE FROM public.goose_db_version WHERE version_id IN (3, 4);"}},
		{name: "branched blocks rollback too", src: srcs(1, 2), st: gooseState(applied(1, 2, 3)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 1}}, reason: ErrBranched},
		{name: "out of order", src: srcs(1, 2, 3), st: gooseState(applied(1, 3)...), req: up, reason: ErrOutOfOrder, contains: []string{"version 2 is pending", "current version 3", "--allow-out-of-order"}},
		{name: "out of order allowed", src: srcs(1, 2, 3, 4), st: gooseState(applied(1, 3)...), req: with(up, func(r *Request) { r.AllowOutOfOrder = true }), current: 3, target: 4, pending: []int64{2, 4}},
		{name: "empty database refused", src: srcs(1), st: func() *State { s := noTable(); s.UserTables = 0; return s }(), req: with(up, func(r *Request) { r.AllowEmptyDatabase = false }), reason: ErrEmptyDatabase, contains: []string{"--allow-empty-database"}},
		{name: "database with tables but no version table", src: srcs(1), st: func() *State { s := noTable(); s.UserTables = 3; return s }(), req: with(up, func(r *Request) { r.AllowEmptyDatabase = false }), target: 1, pending: []int64{1}},
		{name: "not goose's table", src: srcs(1), st: func() *State {
			s := gooseState()
			s.Columns = []Column{{"id", "integer", true}, {"name", "text", false}}
			return s
		}(), req: up, reason: ErrNotGooseTable, contains: []string{"column version_id is missing", "--table"}},
		{name: "view", src: srcs(1), st: func() *State { s := gooseState(applied()...); s.Kind = "v"; return s }(), req: up, reason: ErrNotGooseTable},
		{name: "missing schema", src: srcs(1), st: func() *State { s := noTable(); s.Schema = "app"; s.SchemaExists = false; return s }(), req: up, reason: ErrNotGooseTable, contains: []string{"CREATE SCHEMA app;"}},
		{name: "empty version table", src: srcs(1), st: gooseState(), req: up, reason: ErrInconsistentTable, contains: []string{"INSERT INTO public.goose_db_version (version_id, is_applied) VALUES (0, true);"}},
		{name: "duplicate rows", src: srcs(1, 2), st: gooseState(Row{1, 0, true}, Row{2, 1, true}, Row{3, 2, true}, Row{4, 2, true}), req: up, reason: ErrInconsistentTable,
			contains: []string{"version 2 has 2 rows (ids 3, 4)", "BEGIN; DELETE FROM public.goose_db_version WHERE version_id = 2 AND id <> 4; COMMIT;"}},
		{name: "rolled back row is latest", src: srcs(1, 2), st: gooseState(Row{1, 0, true}, Row{2, 1, true}, Row{3, 2, true}, Row{4, 2, false}), req: up, reason: ErrInconsistentTable,
			contains: []string{"is_applied=false", "DELETE FROM public.goose_db_version WHERE version_id = 2;"}},
		{name: "plan refuses like the run", src: srcs(1, 2), st: gooseState(Row{1, 0, true}, Row{2, 1, true}, Row{3, 1, true}), req: Request{Mode: ModePlan, AllowEmptyDatabase: true}, reason: ErrInconsistentTable},
		{name: "cannot write version table", src: srcs(1), st: func() *State { s := gooseState(applied()...); s.CanWrite = false; return s }(), req: up, reason: ErrNoPrivilege, contains: []string{"GRANT SELECT, INSERT, DELETE ON public.goose_db_version TO app;"}},
		{name: "plan with nothing pending needs only read", src: srcs(1), st: func() *State { s := gooseState(applied(1)...); s.CanWrite = false; return s }(), req: Request{Mode: ModePlan, AllowEmptyDatabase: true}, current: 1, target: 1},
		{name: "plan with pending refuses what migrate would", src: srcs(1), st: func() *State { s := gooseState(applied()...); s.CanWrite = false; return s }(), req: Request{Mode: ModePlan, AllowEmptyDatabase: true}, reason: ErrNoPrivilege},
		{name: "old serial id without sequence usage", src: srcs(1), st: func() *State {
			s := gooseState(applied()...)
			s.CanWrite, s.NoSeqUsage = false, "goose_db_version_id_seq"
			return s
		}(), req: Request{Mode: ModePlan, AllowEmptyDatabase: true}, reason: ErrNoPrivilege, contains: []string{"GRANT USAGE ON SEQUENCE goose_db_version_id_seq TO app;"}},
		{name: "dirty refuses plan", src: srcs(1, 2), st: func() *State {
			s := gooseState(applied(1)...)
			s.Dirty = []DirtyRow{{Version: 2, Direction: "up", File: "2_b.sql", Done: 1, Total: 3}}
			return s
		}(), req: Request{Mode: ModePlan}, reason: ErrDirty, contains: []string{"migration 2 (2_b.sql) stopped partway", "statements 1-1 of 3 completed, statement 2", "--resolve 2 --as applied"}},
		{name: "dirty refuses down", src: srcs(1, 2), st: func() *State {
			s := gooseState(applied(1)...)
			s.Dirty = []DirtyRow{{Version: 2, Direction: "up", File: "2_b.sql", Total: 3}}
			return s
		}(), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true}}, reason: ErrDirty},
		{name: "cannot create version table", src: srcs(1), st: func() *State { s := noTable(); s.CanCreate = false; return s }(), req: up, reason: ErrNoPrivilege, contains: []string{"GRANT CREATE ON SCHEMA public TO app;"}},
		{name: "down to 1", src: srcs(1, 2, 3), st: gooseState(applied(1, 2, 3)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 1}}, current: 3, target: 1, down: []int64{3, 2}},
		{name: "down to 0", src: srcs(1, 2), st: gooseState(applied(1, 2)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 0}}, current: 2, down: []int64{2, 1}},
		{name: "down out-of-order applied rolls back by version", src: srcs(1, 2, 3), st: gooseState(applied(1, 3, 2)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 2}}, current: 3, target: 2, down: []int64{3}},
		{name: "down with no table", src: srcs(1, 2), st: noTable(), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 0}}},
		{name: "down to unknown", src: srcs(1, 3), st: gooseState(applied(1, 3)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 2}}, reason: ErrUnknownVersion},
		{name: "down past irreversible", src: Sources{{Version: 1, File: "1_a.sql", HasDown: true}, {Version: 2, File: "2_b.sql"}}, st: gooseState(applied(1, 2)...), req: Request{Mode: ModeDown, DownTo: Version{IsSet: true, Value: 0}}, reason: ErrIrreversible, contains: []string{"2_b.sql", "--down-to 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Analyze(tt.src, tt.st, tt.req)
			if tt.reason != nil {
				var re *RefusalError
				if !errors.Is(err, tt.reason) || !errors.As(err, &re) {
					t.Fatalf("err = %v, want refusal %v", err, tt.reason)
				}
				for _, s := range tt.contains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message lacks %q:\n%s", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Current != tt.current || p.Target != tt.target || !slices.Equal(p.Pending, tt.pending) || !slices.Equal(p.Down, tt.down) {
				t.Fatalf("plan = current %d target %d pending %v down %v; want %d %d %v %v", p.Current, p.Target, p.Pending, p.Down, tt.current, tt.target, tt.pending, tt.down)
			}
		})
	}
}

func TestScanDir(t *testing.T) {
	const up = "-- +goose Up\nCREATE TABLE a(id int);\n"
	tests := []struct {
		name     string
		files    fstest.MapFS
		reason   error
		versions []int64
		contains []string
	}{
		{"ok", fstest.MapFS{"00001_a.sql": {Data: []byte(up)}, "2_b.sql": {Data: []byte(up)}, "README.md": {}, "sub/3_c.sql": {Data: []byte(up)}}, nil, []int64{1, 2}, nil},
		{"duplicate", fstest.MapFS{"001_a.sql": {Data: []byte(up)}, "1_b.sql": {Data: []byte(up)}}, ErrBadMigrationFiles, nil, []string{"001_a.sql and 1_b.sql both have version 1"}},
		{"unparsable", fstest.MapFS{"add_users.sql": {Data: []byte(up)}, "0_zero.sql": {Data: []byte(up)}, "1.5_x.sql": {Data: []byte(up)}}, ErrBadMigrationFiles, nil, []string{"add_users.sql does not start", "0_zero.sql", "1.5_x.sql"}},
		{"go migration", fstest.MapFS{"1_a.go": {Data: []byte("package x")}}, ErrBadMigrationFiles, nil, []string{"Go migration"}},
		{"no up annotation", fstest.MapFS{"1_a.sql": {Data: []byte("CREATE TABLE a(id int);")}}, ErrBadMigrationFiles, nil, []string{"-- +goose Up"}},
		{"empty", fstest.MapFS{"README.md": {}}, ErrNoMigrations, nil, []string{"/m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ScanDir(tt.files, "/m")
			if tt.reason != nil {
				if !errors.Is(err, tt.reason) {
					t.Fatalf("err = %v, want %v", err, tt.reason)
				}
				for _, s := range tt.contains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message lacks %q: %s", s, err)
					}
				}
				return
			}
			if err != nil || !slices.Equal(got.Versions(), tt.versions) {
				t.Fatalf("ScanDir = %v, %v; want %v", got.Versions(), err, tt.versions)
			}
		})
	}
}

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		text           string
		up, down, noTx bool
	}{
		{"-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n", true, true, false},
		{"-- +goose Up\nSELECT 1;\n-- +goose Down\n-- nothing to undo\n\n", true, false, false},
		{"-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON t(a);\n", true, false, true},
		{"--+goose up\nSELECT 1;\n--  +goose  down\n-- +goose StatementBegin\nSELECT 2;\n-- +goose StatementEnd\n", true, true, false},
		{"SELECT 1;\n", false, false, false},
	}
	for _, tt := range tests {
		src, up := parseAnnotations([]byte(tt.text))
		if up != tt.up || src.HasDown != tt.down || src.NoTx != tt.noTx {
			t.Errorf("%q: up %v down %v notx %v", tt.text, up, src.HasDown, src.NoTx)
		}
	}
}

func TestLocate(t *testing.T) {
	content := "-- +goose Up\nCREATE TABLE a (\n  id int,\n  bad typo\n);\n"
	stmt := "CREATE TABLE a (\n  id int,\n  bad typo\n);"
	pos := strings.Index(stmt, "typo") + 1
	line, col, ok := locate(content, stmt, pos)
	if !ok || line != 4 || col != 7 {
		t.Fatalf("locate = %d:%d %v, want 4:7", line, col, ok)
	}
	// Characters, not bytes.
	content = "-- +goose Up\nSELECT 'é' + x;\n"
	line, col, ok = locate(content, "SELECT 'é' + x;", 14)
	if !ok || line != 2 || col != 14 {
		t.Fatalf("locate = %d:%d %v, want 2:14", line, col, ok)
	}
}
