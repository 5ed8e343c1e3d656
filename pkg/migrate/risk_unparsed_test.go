package migrate

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// The risk parser has PostgreSQL 17's grammar, in which system_user is a
// reserved word; PostgreSQL 15 takes it as a column name. A goose statement
// that uses it can carry a DROP TABLE the analysis never sees: before, the
// plan logged a warning and --risk-policy=fail passed it (exit 0, no risks).
// Now a statement the parser rejects is an error-level not-parsed risk: fail
// refuses (exit 1, one line naming file:line) and changes nothing.
func TestPlanRiskUnparsedStatement(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY)`)
	stmt := "CREATE TABLE audit (system_user text); DROP TABLE accounts;"
	dir := writeDir(t, files{"1_audit.sql": mig(stmt, "")})

	// PostgreSQL 15 runs what goose sends (the simple protocol, in a
	// transaction rolled back): accounts is gone.
	ctx := context.Background()
	tx, err := d.conn().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("PostgreSQL 15 rejects it: %v; the test's premise is that it runs", err)
	}
	var gone bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('accounts') IS NULL`).Scan(&gone); err != nil || !gone {
		t.Fatalf("accounts still there (%v)", err)
	}
	_ = tx.Rollback(ctx)

	before := d.snapshot()
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 1 || !strings.Contains(o.lastLine(), "1_audit.sql:2") || !strings.Contains(o.lastLine(), "parser") || !strings.Contains(o.lastLine(), "--risk-policy=warn") {
		t.Fatalf("exit %d, want 1 naming 1_audit.sql:2 and the parser: %s", o.code, o.lastLine())
	}
	var risks []sqlrisk.Risk
	if err := json.Unmarshal([]byte(o.result("risks")), &risks); err != nil || len(risks) != 1 || risks[0].Rule != sqlrisk.NotParsed ||
		risks[0].Level != sqlrisk.LevelError || risks[0].Line != 2 {
		t.Fatalf("risks %s (%v): want one not-parsed at line 2", o.result("risks"), err)
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the plan changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if o.result("needs-downtime") != "true" {
		t.Errorf("needs-downtime %q, want true", o.result("needs-downtime"))
	}
	// warn reports it and goes on.
	if o = runStep(t, d.url(), dir, "--plan"); o.code != 0 || !strings.Contains(o.result("risks"), sqlrisk.NotParsed) || o.result("needs-downtime") != "true" {
		t.Fatalf("warn: exit %d, risks %s, needs-downtime %q", o.code, o.result("risks"), o.result("needs-downtime"))
	}
}
