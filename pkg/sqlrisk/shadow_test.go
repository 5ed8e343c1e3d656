package sqlrisk

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// A new table, view, sequence or type named like one the running version
// uses, in a schema its search_path reads first, takes that name over: the
// running version's queries now read and write the new, empty object. Here
// the database's search_path is app, public (as "$user", public is for a role
// named app once schema app exists); each case runs the running version's
// query on the real server before and after the statement. Before, all were
// additive (needs-downtime false).
func TestAdditiveShadowing(t *testing.T) {
	const setup = proofTable + " CREATE SEQUENCE s START 100; CREATE TYPE mood AS ENUM ('ok'); CREATE SCHEMA app;"
	for _, tt := range []struct{ app, stmt string }{
		{"SELECT count(*) FROM t", "CREATE TABLE app.t (id int, a int, b text)"},
		{"SELECT count(*) FROM t", "CREATE TABLE IF NOT EXISTS t (id int, a int, b text)"},
		{"SELECT count(*) FROM t", "CREATE VIEW app.t AS SELECT 1 AS id"},
		{"SELECT nextval('s')", "CREATE SEQUENCE app.s"},
		{"SELECT 'ok'::mood", "CREATE TYPE app.mood AS ENUM ('bad')"},
		{"SELECT 'ok'::mood", "CREATE TYPE app.mood AS (x int)"},
		{"SELECT 'ok'::mood", "CREATE TABLE app.mood (x int)"},
		{"SELECT 'ok'::mood", "CREATE TYPE app.mood AS RANGE (subtype = int)"},
	} {
		t.Run(tt.stmt, func(t *testing.T) {
			wantRunningVersionChanged(t, setup, "app, public", tt.app, tt.stmt, "reads")
		})
	}
	t.Run("new names", func(t *testing.T) {
		ctx := context.Background()
		srv, db := pgenv.NewDatabase(t)
		c := connect(t, srv.URL(db))
		if _, err := c.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
		cat := catalog(t, srv.URL(db))
		for _, sql := range []string{
			"CREATE TABLE n (id int)", "CREATE TABLE app.n (id int)", "CREATE TABLE IF NOT EXISTS public.t (id int)",
			"CREATE VIEW v AS SELECT 1", "CREATE SEQUENCE app.s2", "CREATE TYPE level AS ENUM ('a')",
			"CREATE TYPE pair AS (x int, y int)", "CREATE TYPE floatrange AS RANGE (subtype = float8)",
			// pg_catalog's types and information_schema's views come before, or
			// only by name.
			"CREATE TABLE line (id int)", "CREATE TABLE columns (id int)",
		} {
			if ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: sql, InTx: true}); !ok || err != nil {
				t.Errorf("%s: additive=%v (%q, %v), want true", sql, ok, why, err)
			}
		}
	})
}

// wantRunningVersionChanged runs setup in a new database whose search_path it
// then sets to searchPath, and asks Additive about stmt. It runs the running
// version's query app on the real server before and after stmt: the answer
// must change (the test's premise), and Additive must have said not additive,
// naming what the running version does (verb: "calls", "reads").
func wantRunningVersionChanged(t *testing.T, setup, searchPath, app, stmt, verb string) {
	t.Helper()
	ctx := context.Background()
	srv, db := pgenv.NewDatabase(t)
	c := connect(t, srv.URL(db))
	if _, err := c.Exec(ctx, setup+" ALTER DATABASE "+db+" SET search_path = "+searchPath); err != nil {
		t.Fatal(err)
	}
	c = connect(t, srv.URL(db))
	query := func() string {
		var v any
		// Not prepared: a new session of the running version plans it afresh.
		if err := c.QueryRow(ctx, app, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(v)
	}
	ok, why, err := Additive(ctx, catalog(t, srv.URL(db)), Statement{File: "f.sql", Line: 1, SQL: stmt, InTx: true})
	before := query()
	if _, err := c.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	after := query()
	t.Logf("%s: %s before, %s after", app, before, after)
	if before == after {
		t.Fatalf("the running version's %s is unchanged: the test's premise fails", app)
	}
	if ok || err != nil || !strings.Contains(why, "running version") {
		t.Errorf("additive=%v (%q, %v), want false naming what the running version %s", ok, why, err, verb)
	}
}
