package migrate

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestPlanWaitsForTheDatabase: with --wait-timeout, plan first waits for the
// database as wait-for-db does (the workflows run no wait-for-db pod before it
// any more), so a database created a moment later is planned, not failed.
// Without it, plan connects once and fails as transient (exit 75), as before.
func TestPlanWaitsForTheDatabase(t *testing.T) {
	srv := pgenv.Shared(t)
	dir := writeDir(t, threeTables)
	name := "late_" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), name) })

	o := runStep(t, srv.URL(name), dir, "--plan")
	if o.code != 75 {
		t.Fatalf("plan without --wait-timeout on a database not created yet: exit %d, want 75\n%s", o.code, o.stderr)
	}
	o = runStep(t, srv.URL(name), dir, "--plan", "--wait-timeout", "2s")
	if o.code != 75 || !strings.Contains(o.lastLine(), "does not exist") {
		t.Fatalf("plan --wait-timeout 2s on a database never created: exit %d, want 75 naming the missing database\n%s", o.code, o.stderr)
	}

	created := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		created <- srv.Exec(context.Background(), "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	}()
	o = runStep(t, srv.URL(name), dir, "--plan", "--wait-timeout", "60s")
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if o.code != 0 || o.result("pending") != "true" {
		t.Fatalf("plan --wait-timeout 60s on a database created 2 s later: exit %d, pending %q\n%s", o.code, o.result("pending"), o.stderr)
	}
	for _, want := range []string{"does not exist yet", "database ready"} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("plan's log does not say %q:\n%s", want, o.stderr)
		}
	}
}

func TestWaitTimeoutOutOfRange(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	for _, v := range []string{"500ms", "25h", "-1s"} {
		o := runStep(t, d.url(), dir, "--plan", "--wait-timeout", v)
		if o.code != 2 || !strings.Contains(o.stderr, "--wait-timeout") {
			t.Errorf("--wait-timeout %s: exit %d, want 2 naming the flag\n%s", v, o.code, o.stderr)
		}
	}
	if got := d.queryString(`SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'`); got != "0" {
		t.Errorf("a refused run created %s tables", got)
	}
}
