package migrate

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// cancelAfterQuery cancels a run's context once a query whose SQL holds match
// has completed: a SIGTERM that arrives while that statement is in flight and
// loses the race with it (the server commits it, the step then sees ctx done).
type cancelAfterQuery struct {
	match  string
	cancel context.CancelFunc
	once   sync.Once
}

type matchedQuery struct{}

func (c *cancelAfterQuery) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, c.match) {
		return context.WithValue(ctx, matchedQuery{}, true)
	}
	return ctx
}

func (c *cancelAfterQuery) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if ctx.Value(matchedQuery{}) != nil && d.Err == nil {
		c.once.Do(c.cancel)
	}
}

// A SIGTERM as the dirty record of a migration without a transaction is
// written, before its first statement: nothing of the migration ran, so the
// run is transient (exit 75) and leaves no record; the rerun finishes it, in
// either direction. Before, the run was exit 1 "recorded as stopped partway"
// with the record 0 of 2 done, and every rerun refused, saying statement 1 may
// have partly run (attack session 26 finding 2).
func TestInterruptBeforeFirstNoTxStatement(t *testing.T) {
	notx := "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE side (id int);\nCREATE INDEX CONCURRENTLY side_i ON side (id);\n" +
		"-- +goose Down\nDROP INDEX CONCURRENTLY side_i;\nDROP TABLE side;\n"
	for _, tc := range []struct {
		name       string
		setup      []string // migrate arguments run first
		downTo     Version  // the interrupted run's
		args       []string // the rerun's, the same
		sideBefore bool     // table side exists before the interrupted run
	}{
		{"up", []string{"--to", "1"}, Version{}, nil, false},
		{"down", nil, Version{IsSet: true, Value: 1}, []string{"--down-to", "1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDB(t)
			dir := writeDir(t, files{"00001_a.sql": threeTables["00001_a.sql"], "00002_notx.sql": notx})
			mustRun(t, d.url(), dir, tc.setup...)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := tracedMigrator(t, d, dir, tc.downTo, &cancelAfterQuery{match: "_dirty (version, direction, file, statements_done", cancel: cancel})
			_, err := m.Run(ctx)
			if code := failure.Code(err); code != 75 {
				t.Errorf("exit %d, want 75 (nothing of migration 2 ran): %v", code, err)
			}
			if d.tableExists("side") != tc.sideBefore {
				t.Fatal("statement 1 ran")
			}
			if got := d.queryString("SELECT count(*)::text FROM goose_db_version_dirty"); got != "0" {
				t.Errorf("%s dirty records left, want none", got)
			}
			if o := runStep(t, d.url(), dir, tc.args...); o.code != 0 || d.tableExists("side") == tc.sideBefore {
				t.Fatalf("rerun: exit %d: %s", o.code, o.lastLine())
			}
		})
	}
}

// cancelAtQueryStart cancels a run's context as a query whose SQL holds match
// is handed to pgx: a SIGTERM after the step's own check of its context, before
// pgx sends the statement, which it then refuses (nothing sent).
type cancelAtQueryStart struct {
	match  string
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelAtQueryStart) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, c.match) {
		c.once.Do(c.cancel)
	}
	return ctx
}

func (c *cancelAtQueryStart) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A SIGTERM as statement 1 of a migration without a transaction is handed to
// pgx, which then sends nothing: as before the first statement, the run is
// transient (exit 75), leaves no record, and the rerun applies it. Before, it
// was exit 1 with a 0-of-2 record, and every rerun refused saying statement 1
// may have partly run (attack on 65734b5, finding 3).
func TestInterruptAsFirstNoTxStatementIsSent(t *testing.T) {
	notx := "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE side (id int);\nCREATE INDEX CONCURRENTLY side_i ON side (id);\n" +
		"-- +goose Down\nDROP INDEX CONCURRENTLY side_i;\nDROP TABLE side;\n"
	d := newDB(t)
	dir := writeDir(t, files{"00001_a.sql": threeTables["00001_a.sql"], "00002_notx.sql": notx})
	mustRun(t, d.url(), dir, "--to", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := tracedMigrator(t, d, dir, Version{}, &cancelAtQueryStart{match: "CREATE TABLE side", cancel: cancel})
	_, err := m.Run(ctx)
	if d.tableExists("side") {
		t.Fatal("statement 1 was sent: the scenario did not happen")
	}
	if code := failure.Code(err); code != 75 {
		t.Errorf("exit %d, want 75 (nothing of migration 2 ran): %v", code, err)
	}
	if got := d.queryString("SELECT count(*)::text FROM goose_db_version_dirty"); got != "0" {
		t.Errorf("%s dirty records left, want none", got)
	}
	if o := runStep(t, d.url(), dir); o.code != 0 || !d.tableExists("side") {
		t.Errorf("rerun: exit %d: %s", o.code, o.lastLine())
	}
}

// tracedMigrator is a Migrator of run run-r for dir on d whose sessions run
// through tracer (closed with the test).
func tracedMigrator(t *testing.T, d *testDB, dir string, downTo Version, tracer pgx.QueryTracer) *Migrator {
	t.Helper()
	cfg, err := pgx.ParseConfig(d.url())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = tracer
	db, _ := OpenDB(cfg, SessionSettings{LockTimeout: 10 * time.Second})
	t.Cleanup(func() { db.Close() })
	return &Migrator{DB: db, FS: os.DirFS(dir), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Opts: Options{Dir: dir, DownTo: downTo, Table: DefaultTable, AllowEmptyDatabase: true, LockWait: time.Minute, LockTimeout: 10 * time.Second, RunID: "run-r"}}
}
