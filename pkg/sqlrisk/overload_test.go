package sqlrisk

import (
	"context"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// CREATE FUNCTION without OR REPLACE still changes what the running version
// calls when a routine (or type) of that name exists: its calls resolve to the
// new overload, or fail as ambiguous (42725). Each case runs the running
// version's query on the real server before and after the statement; before,
// every one of them was additive (needs-downtime false).
func TestAdditiveFunctionOverload(t *testing.T) {
	for _, tt := range []struct {
		setup, app, stmt string
	}{
		// An expand-style new parameter: both match k(1), neither wins.
		{"CREATE FUNCTION k(x int, y int DEFAULT 0) RETURNS int LANGUAGE sql AS 'SELECT 1'", "SELECT k(1)",
			"CREATE FUNCTION k(x int, y int DEFAULT 0, z int DEFAULT 0) RETURNS int LANGUAGE sql AS 'SELECT 2'"},
		// An exact match beats the existing implicit cast to numeric.
		{"CREATE FUNCTION g(x numeric) RETURNS int LANGUAGE sql AS 'SELECT 1'", "SELECT g(1)",
			"CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql AS 'SELECT 2'"},
		// In another schema of the search_path, and overloading a built-in.
		{"CREATE SCHEMA app", "SELECT lower('A'::varchar)",
			"CREATE FUNCTION app.lower(x varchar) RETURNS text LANGUAGE sql AS 'SELECT ''boom'''"},
		// A procedure shares the functions' names.
		{"CREATE FUNCTION g(x numeric) RETURNS int LANGUAGE sql AS 'SELECT 1'", "SELECT g(1)",
			"CREATE PROCEDURE g(x int) LANGUAGE sql AS 'SELECT 2'"},
		// A function named after a type turns its function-style cast into a call.
		{"CREATE TYPE mood AS ENUM ('ok', 'bad')", "SELECT mood('ok'::text)",
			"CREATE FUNCTION mood(x text) RETURNS mood LANGUAGE sql AS 'SELECT ''bad''::mood'"},
	} {
		t.Run(tt.stmt, func(t *testing.T) {
			wantRunningVersionChanged(t, tt.setup+";", "app, public, pg_catalog", tt.app, tt.stmt, "calls")
		})
	}
	t.Run("a new name", func(t *testing.T) {
		ctx := context.Background()
		srv, db := pgenv.NewDatabase(t)
		ok, why, err := Additive(ctx, catalog(t, srv.URL(db)), Statement{File: "f.sql", SQL: "CREATE FUNCTION fresh_name(x int) RETURNS int LANGUAGE sql AS 'SELECT x'", InTx: true})
		if !ok || err != nil {
			t.Errorf("a function of a name nothing has: additive=%v (%q, %v)", ok, why, err)
		}
	})
}
