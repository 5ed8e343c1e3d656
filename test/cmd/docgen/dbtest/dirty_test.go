package dbtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

const troubleshooting = "docs/troubleshooting.md"

// mustFail runs the step and wants exit code want; it returns the error message.
func mustFail(t *testing.T, url string, want int, args ...string) string {
	t.Helper()
	sum, code, err := stepRun(context.Background(), url, args...)
	if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("migrate %v: exit %d, want %d: %s", args, code, want, sum.Error)
	}
	return sum.Error
}

// quoted fails the test unless the page quotes msg verbatim.
func quoted(t *testing.T, doc, msg string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), msg) {
		t.Errorf("%s does not quote what migrate printed:\n%s", doc, msg)
	}
}

func queryRows(t *testing.T, conn *pgx.Conn, sql string) [][]any {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\nSQL:\n%s", err, sql)
	}
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%v\nSQL:\n%s", err, sql)
	}
	return out
}

// TestStoppedPartwayAsDocumented follows docs/troubleshooting.md's "A migration
// stopped partway" on a real server with the example migrations of the README and
// docs/operations.md: SIGTERM while the index migration waits for its lock, the
// messages the guide quotes, its queries, --resolve, and the rerun.
func TestStoppedPartwayAsDocumented(t *testing.T) {
	s, db := pgenv.NewDatabase(t)
	url := s.URL(db)
	dir := exampleDir(t)
	runMigrate(t, url, "--dir", dir, "--to", "20240315143000")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Another session holds a lock that CREATE INDEX CONCURRENTLY waits for.
	blocker, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	if _, err := blocker.Exec(ctx, "BEGIN; LOCK TABLE orders IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	stepCtx, stop := context.WithCancel(ctx)
	type outcome struct {
		sum  results.Summary
		code int
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		sum, code, err := stepRun(stepCtx, url, "--dir", dir, "--lock-timeout", "0")
		done <- outcome{sum, code, err}
	}()
	waitfor.True(t, "the index migration to wait for its lock", 0, func() bool {
		var n int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'orders'::regclass`).Scan(&n)
		return n > 0
	})
	stop() // SIGTERM
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.code != 1 {
		t.Fatalf("SIGTERM during a migration without a transaction: exit %d, want 1: %s", o.code, o.sum.Error)
	}
	quoted(t, troubleshooting, o.sum.Error)
	if _, err := blocker.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	// The record, read with the guide's query.
	rec := queryRows(t, conn, block(t, troubleshooting, "FROM goose_db_version_dirty ORDER BY version"))
	if len(rec) != 1 || fmt.Sprint(rec[0][0], " ", rec[0][1], " ", rec[0][3], " ", rec[0][4], " ", rec[0][7]) !=
		"20240315143100 up 1 2 canceling statement due to user request (SQLSTATE 57014)" {
		t.Fatalf("the record: %v", rec)
	}
	// The guide's example names a pod and a time: give the record those, so that
	// the refusal is the one it quotes, word for word.
	if _, err := conn.Exec(ctx, `UPDATE goose_db_version_dirty SET run_id = 'chartreuse-x7k2p-migrate-2954173512', started_at = '2026-03-01T09:00:02Z'`); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--plan"}, nil, {"--down-to", "20240301090000"}} {
		quoted(t, troubleshooting, mustFail(t, url, 1, append([]string{"--dir", dir}, args...)...))
	}

	// While another session holds the migration lock, plan cannot tell a
	// running migration from a stopped one: 75. The holder query finds it.
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", migrate.LockID)); err != nil {
		t.Fatal(err)
	}
	quoted(t, troubleshooting, mustFail(t, url, 75, "--dir", dir, "--plan"))
	if got := queryRows(t, conn, block(t, troubleshooting, "wait_event_type")); len(got) != 1 || fmt.Sprint(got[0][0]) != fmt.Sprint(holder.PgConn().PID()) {
		t.Fatalf("the holder query found %v, want pid %d", got, holder.PgConn().PID())
	}
	if _, err := holder.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", migrate.LockID)); err != nil {
		t.Fatal(err)
	}

	// Statement 2 was waiting for its lock: it did nothing.
	if got := queryRows(t, conn, block(t, troubleshooting, "relname = 'orders_customer_id_idx'")); len(got) != 0 {
		t.Fatalf("the index query found %v, want no index", got)
	}
	quoted(t, troubleshooting, mustFail(t, url, 1, "--dir", dir, "--resolve", "20240315143000", "--as", "not-applied"))
	for _, args := range [][]string{{"--resolve", "20240315143100", "--as", "maybe"}, {"--resolve=", "--as", "applied"}} {
		mustFail(t, url, 2, append([]string{"--dir", dir}, args...)...)
	}
	runMigrate(t, url, "--dir", dir, "--resolve", "20240315143100", "--as", "not-applied")
	if sum := runMigrate(t, url, "--dir", dir); sum.Results["applied-versions"] != "[20240315143100]" {
		t.Fatalf("after --resolve: %v", sum.Results)
	}
	if got := queryRows(t, conn, block(t, troubleshooting, "relname = 'orders_customer_id_idx'")); len(got) != 1 || got[0][1] != true {
		t.Fatalf("the index after the rerun: %v", got)
	}
	if rec := queryRows(t, conn, block(t, troubleshooting, "FROM goose_db_version_dirty ORDER BY version")); len(rec) != 0 {
		t.Fatalf("the record after the rerun: %v", rec)
	}
	if n := len(sqlBlocks(t, troubleshooting)); n != 3 {
		t.Errorf("%s has %d sql blocks; this test runs 3: add the new ones here", troubleshooting, n)
	}
}

// TestUnparsableFileAsDocumented: a later file that goose cannot parse stops the
// plan and the run before anything is applied, with the message the guide quotes.
func TestUnparsableFileAsDocumented(t *testing.T) {
	s, db := pgenv.NewDatabase(t)
	url := s.URL(db)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"20240301090000_create_orders.sql": block(t, "README.md", "CREATE TABLE orders"),
		"20240315143200_orders_total.sql":  "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION orders_total() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orders $$;\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plan := mustFail(t, url, 1, "--dir", dir, "--plan")
	quoted(t, troubleshooting, plan)
	if run := mustFail(t, url, 1, "--dir", dir); run != plan {
		t.Errorf("migrate and --plan refuse differently:\n%s\n%s", run, plan)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if got := queryRows(t, conn, "SELECT to_regclass('orders') IS NOT NULL"); got[0][0] != false {
		t.Errorf("the migration before the malformed file was applied")
	}
}
