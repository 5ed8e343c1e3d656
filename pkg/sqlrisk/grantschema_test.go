package sqlrisk

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// A schema on a role's search_path on which it has no USAGE is skipped when
// names are looked up; granting USAGE puts the schema's tables, types and
// functions in front of those in the schemas after it. Proven on the real
// server: the running version's role (search_path other, public) counted
// public.t's 100 rows, and after GRANT USAGE ON SCHEMA other it counts
// other.t's none. Before, the GRANT was additive (needs-downtime false).
func TestAdditiveGrantSchemaUsage(t *testing.T) {
	ctx := context.Background()
	srv, db := pgenv.NewDatabase(t)
	c := connect(t, srv.URL(db))
	role := "app_" + db
	if _, err := c.Exec(ctx, proofTable+fmt.Sprintf(` CREATE SCHEMA other; CREATE TABLE other.t (id int);
		CREATE ROLE %[1]s; GRANT SELECT ON public.t, other.t TO %[1]s;`, role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.Exec(ctx, fmt.Sprintf("RESET ROLE; DROP OWNED BY %[1]s; DROP ROLE %[1]s", role))
	})
	app := func() string {
		var n int
		q := fmt.Sprintf("SET ROLE %s; SET search_path = other, public", role)
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
		defer c.Exec(ctx, "RESET ROLE; RESET search_path")
		if err := c.QueryRow(ctx, "SELECT count(*) FROM t", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(n)
	}
	cat := catalog(t, srv.URL(db))
	for _, tt := range []struct {
		sql      string
		additive bool
	}{
		{"GRANT SELECT ON TABLE other.t TO PUBLIC", true},
		{"GRANT USAGE ON SCHEMA other TO " + role, false},
	} {
		ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: tt.sql, InTx: true})
		before := app()
		if _, err := c.Exec(ctx, tt.sql); err != nil {
			t.Fatal(err)
		}
		after := app()
		t.Logf("%s: count(*) FROM t %s before, %s after", tt.sql, before, after)
		if (before == after) != tt.additive {
			t.Fatalf("the test's premise fails")
		}
		if err != nil || ok != tt.additive || (!ok && !strings.Contains(why, "search_path")) {
			t.Errorf("%s: additive=%v (%q, %v), want %v", tt.sql, ok, why, err, tt.additive)
		}
	}
}
