package dbtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

const repoRoot = "../../../.."

// sqlBlocks returns the bodies of the ```sql blocks of a document, in order.
func sqlBlocks(t *testing.T, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case !in && t == "```sql":
			in, cur = true, nil
		case in && t == "```":
			in = false
			out = append(out, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, l)
		}
	}
	return out
}

// block returns the only block of doc containing marker.
func block(t *testing.T, doc, marker string) string {
	t.Helper()
	var found []string
	for _, b := range sqlBlocks(t, doc) {
		if strings.Contains(b, marker) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d sql blocks contain %q, want 1", doc, len(found), marker)
	}
	return found[0]
}

// stepRun runs the migrate binary's app in-process under ctx and returns its
// summary and exit code; safe outside the test goroutine.
func stepRun(ctx context.Context, url string, args ...string) (results.Summary, int, error) {
	var out, errOut bytes.Buffer
	full := append([]string{"migrate", "--skip-version-check", "--database-url", url}, args...)
	code := step.Run(ctx, migrate.Spec(), full, &out, &errOut)
	var sum results.Summary
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &sum); err != nil {
		return sum, code, fmt.Errorf("migrate %v: no summary line (exit %d): %s", args, code, errOut.String())
	}
	return sum, code, nil
}

// runMigrate runs the migrate step and wants it to succeed.
func runMigrate(t *testing.T, url string, args ...string) results.Summary {
	t.Helper()
	sum, code, err := stepRun(context.Background(), url, args...)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("migrate %v: exit %d: %s", args, code, sum.Error)
	}
	return sum
}

// exampleDir writes the example migrations of the README and docs/operations.md
// (and a customers table they need) into a new directory.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"20240301090000_create_orders.sql":         block(t, "README.md", "CREATE TABLE orders"),
		"20240310000000_create_customers.sql":      "-- +goose Up\nCREATE TABLE customers (id bigint PRIMARY KEY);\n-- +goose Down\nDROP TABLE customers;\n",
		"20240315143000_orders_customer.sql":       block(t, "docs/operations.md", "orders_customer_fk"),
		"20240315143100_orders_customer_index.sql": block(t, "docs/operations.md", "CREATE INDEX CONCURRENTLY"),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func exec(t *testing.T, s *pgenv.Server, db, sql string) {
	t.Helper()
	if err := s.Exec(context.Background(), db, sql); err != nil {
		t.Fatalf("%v\nSQL:\n%s", err, sql)
	}
}

func ensureRole(t *testing.T, s *pgenv.Server, db, role string) {
	t.Helper()
	exec(t, s, db, fmt.Sprintf(`DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s NOLOGIN; END IF;
	END $$; GRANT CREATE, USAGE ON SCHEMA public TO %[1]s;`, role))
}

// TestAlembicBaseline follows docs/migrating-from-chartreuse.md on a database that
// Alembic migrated through 12 revisions, owned by shop_owner.
func TestAlembicBaseline(t *testing.T) {
	s, db := pgenv.NewDatabase(t)
	url := s.URL(db)
	ensureRole(t, s, db, "shop_owner")

	dir := t.TempDir()
	var alembic []string
	for v := 1; v <= 12; v++ {
		stmt := fmt.Sprintf("CREATE TABLE t%d (id bigint PRIMARY KEY);", v)
		alembic = append(alembic, stmt)
		file := filepath.Join(dir, fmt.Sprintf("%05d_alembic_r%d.sql", v, v))
		body := fmt.Sprintf("-- +goose Up\n%s\n-- +goose Down\nDROP TABLE t%d;\n", stmt, v)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, s, db, "SET ROLE shop_owner; "+strings.Join(alembic, " ")+
		" CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY); INSERT INTO alembic_version VALUES ('r12');")

	// Step 1's check.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), block(t, "docs/migrating-from-chartreuse.md", "SELECT version_num FROM alembic_version"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(got) != 1 || got[0] != "r12" {
		t.Fatalf("alembic_version: %v %v", got, err)
	}

	// The baseline, exactly as documented.
	exec(t, s, db, block(t, "docs/migrating-from-chartreuse.md", "CREATE TABLE goose_db_version"))
	var owner string
	if err := conn.QueryRow(context.Background(),
		"SELECT tableowner FROM pg_tables WHERE tablename = 'goose_db_version'").Scan(&owner); err != nil || owner != "shop_owner" {
		t.Fatalf("goose_db_version is owned by %q (%v), want shop_owner", owner, err)
	}

	sum := runMigrate(t, url, "--dir", dir, "--plan")
	if sum.Results["pending"] != "false" || sum.Results["current-version"] != "12" {
		t.Fatalf("after the baseline: %v", sum.Results)
	}

	// The first release after the move.
	next := "-- +goose Up\nCREATE TABLE orders (id bigint PRIMARY KEY);\n-- +goose Down\nDROP TABLE orders;\n"
	if err := os.WriteFile(filepath.Join(dir, "20240301090000_add_orders.sql"), []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	sum = runMigrate(t, url, "--dir", dir, "--role", "shop_owner")
	if sum.Results["applied-versions"] != "[20240301090000]" || sum.Results["current-version"] != "20240301090000" {
		t.Fatalf("first release after the move: %v", sum.Results)
	}

	exec(t, s, db, block(t, "docs/migrating-from-chartreuse.md", "DROP TABLE alembic_version"))
	if n := len(sqlBlocks(t, "docs/migrating-from-chartreuse.md")); n != 3 {
		t.Errorf("docs/migrating-from-chartreuse.md has %d sql blocks; this test runs 3: add the new ones here", n)
	}
}

// TestExampleMigrations applies the README's and docs/operations.md's example
// migrations with the migrate step, rolls them back, and runs the diagnostic queries.
func TestExampleMigrations(t *testing.T) {
	s, db := pgenv.NewDatabase(t)
	url := s.URL(db)
	dir := exampleDir(t)
	sum := runMigrate(t, url, "--dir", dir)
	if sum.Results["applied"] != "4" {
		t.Fatalf("up: %v", sum.Results)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var valid bool
	if err := conn.QueryRow(context.Background(),
		"SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_id_idx'::regclass").Scan(&valid); err != nil || !valid {
		t.Fatalf("index orders_customer_id_idx: valid=%v %v", valid, err)
	}
	// The diagnostic queries of docs/operations.md run as written.
	for _, marker := range []string{"ORDER BY xact_start", "application_name LIKE 'chartreuse/", "FROM pg_locks"} {
		rows, err := conn.Query(context.Background(), block(t, "docs/operations.md", marker))
		if err != nil {
			t.Fatalf("%s: %v", marker, err)
		}
		rows.Close()
		if rows.Err() != nil {
			t.Fatalf("%s: %v", marker, rows.Err())
		}
	}
	sum = runMigrate(t, url, "--dir", dir, "--down-to", "20240301090000")
	if sum.Results["rolled-back"] != "3" || sum.Results["current-version"] != "20240301090000" {
		t.Fatalf("down: %v", sum.Results)
	}
	if n := len(sqlBlocks(t, "docs/operations.md")); n != 5 {
		t.Errorf("docs/operations.md has %d sql blocks; this test runs 5: add the new ones here", n)
	}
}
