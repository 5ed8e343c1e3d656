package migrate

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// An ALTER TABLE that follows an INSERT on the same line is sent by goose as
// part of one statement, and takes ACCESS EXCLUSIVE like any other: the plan
// reports it, and --risk-policy=fail stops it. Before, a statement starting
// with INSERT (or longer than 1 MiB) was taken for data and never analysed, so
// the policy let the rewrite through.
func TestPlanRiskHiddenBehindInsert(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY); CREATE TABLE audit (n int); INSERT INTO accounts SELECT generate_series(1, 100)`)
	stmt := "INSERT INTO audit VALUES (1); ALTER TABLE accounts ALTER COLUMN id TYPE bigint;"
	dir := writeDir(t, files{"1_widen.sql": mig(stmt, "")})

	// What goose sends takes ACCESS EXCLUSIVE on accounts (pg_locks, in a
	// transaction rolled back; the simple protocol, as goose's Exec without
	// arguments uses).
	c := d.conn()
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	var held bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'accounts'::regclass AND mode = 'AccessExclusiveLock' AND granted)`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Fatal("the statement took no ACCESS EXCLUSIVE lock on accounts")
	}

	before := d.snapshot()
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 1 || !strings.Contains(o.lastLine(), "1_widen.sql:2 alter-column-type") {
		t.Fatalf("exit %d, want 1 naming 1_widen.sql:2 alter-column-type: %s", o.code, o.lastLine())
	}
	var risks []sqlrisk.Risk
	if err := json.Unmarshal([]byte(o.result("risks")), &risks); err != nil || len(risks) != 1 ||
		risks[0].Lock != sqlrisk.AccessExclusiveLock || risks[0].Table != "accounts" {
		t.Fatalf("risks %s (%v): want one, ACCESS EXCLUSIVE on accounts", o.result("risks"), err)
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the plan changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
}
