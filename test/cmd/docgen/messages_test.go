package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/gate"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/patroni"
	"github.com/chartreuse-go/chartreuse/pkg/podaddr"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/version"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The troubleshooting guide quotes what the steps print. Each message below is
// produced by the code itself where the code that makes it is exported, or else
// assembled from format strings that must still be in the named source file. Every
// message must appear verbatim in docs/troubleshooting.md (or the page named).

const troubleshooting = "docs/troubleshooting.md"

// quote is one message the documentation quotes.
type quote struct {
	doc string // page that quotes it
	msg string
}

// sourceHas fails the test unless file (relative to the repository root) contains
// every literal, so that a message assembled here from format strings cannot drift
// from the code that prints it.
func sourceHas(t *testing.T, file string, literals ...string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range literals {
		if !strings.Contains(string(b), l) {
			t.Errorf("%s no longer contains %q: update the message in the documentation and in this test", file, l)
		}
	}
}

// gooseState is a readable, writable goose version table public.goose_db_version
// holding rows (id, version, applied).
func gooseState(rows ...migrate.Row) *migrate.State {
	return &migrate.State{
		Schema: "public", SchemaExists: true, Name: "goose_db_version", Exists: true, Kind: "r",
		Columns: []migrate.Column{
			{Name: "id", Type: "integer", NotNull: true},
			{Name: "version_id", Type: "bigint", NotNull: true},
			{Name: "is_applied", Type: "boolean", NotNull: true},
			{Name: "tstamp", Type: "timestamp without time zone"},
		},
		Rows: rows, CanRead: true, CanWrite: true, CanCreate: true, CurrentUser: "shop_owner", UserTables: 5,
	}
}

func sources(versions ...int64) migrate.Sources {
	var s migrate.Sources
	for _, v := range versions {
		s = append(s, migrate.Source{Version: v, File: fmt.Sprintf("%d_change.sql", v), HasDown: true})
	}
	return s
}

func analyze(t *testing.T, src migrate.Sources, st *migrate.State) string {
	t.Helper()
	_, err := migrate.Analyze(src, st, migrate.Request{Mode: migrate.ModeUp, AllowEmptyDatabase: true, Dir: "/migrations"})
	if err == nil {
		t.Fatal("Analyze accepted the state")
	}
	if failure.Code(err) != failure.CodePermanent {
		t.Errorf("%v: exit code %d, the guide says 1", err, failure.Code(err))
	}
	return err.Error()
}

// fakeClock makes a wait loop run instantly and deterministically.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return nil
}

func quotes(t *testing.T) []quote {
	var q []quote
	add := func(msg string) { q = append(q, quote{troubleshooting, msg}) }

	// Inconsistent version table.
	add(analyze(t, sources(20240101120000, 20240301090000),
		gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
			migrate.Row{ID: 3, Version: 20240301090000, Applied: true}, migrate.Row{ID: 4, Version: 20240301090000, Applied: true})))
	add(analyze(t, sources(20240101120000, 20240301090000),
		gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
			migrate.Row{ID: 3, Version: 20240301090000, Applied: false})))
	add(analyze(t, sources(20240101120000), gooseState()))
	// The version table cannot record a migration: its id sequence is behind.
	behind := gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
		migrate.Row{ID: 3, Version: 20240301090000, Applied: true})
	behind.IDSeq = &migrate.IDSequence{Name: "public.goose_db_version_id_seq", Next: 3, Increment: 1, Min: 1, Max: 2147483647}
	add(analyze(t, sources(20240101120000, 20240301090000, 20240315143000), behind))
	// Out of order.
	add(analyze(t, sources(20240101120000, 20240215100000, 20240301090000),
		gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
			migrate.Row{ID: 3, Version: 20240301090000, Applied: true})))
	// The image is older than the database.
	add(analyze(t, sources(20240101120000),
		gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
			migrate.Row{ID: 3, Version: 20240301090000, Applied: true})))

	// An applied migration edited, or removed, after its checksum was recorded.
	const (
		createOrders = "20240101120000_create_orders.sql"
		shaApplied   = "6f1ed002ab5595859014ebf0951522d9f1f4f1c8ba5e4d09e9b0c8fd3a5c2a11"
		shaEdited    = "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e1dbe6a5f"
		shaRemoved   = "3d8e577bf8f4e6e0c8bdf2a1b7e4cb1f04a7dcb4a8c1f6f5c1d7a3e2b9f0c4d6"
	)
	sums := func(st *migrate.State, rows ...migrate.SumRow) *migrate.State {
		st.SumsKind, st.SumsReadable, st.SumsWritable = "r", true, true
		st.SumsColumns = []string{"version", "version_row_id", "file", "sha256", "recorded", "applied_at", "duration_ms",
			"run_id", "role", "login", "recorded_at", "previous_sha256"}
		st.SumsTypes = map[string]string{"version": "bigint", "version_row_id": "bigint", "file": "text", "sha256": "text",
			"recorded": "text", "applied_at": "timestamp with time zone", "duration_ms": "bigint", "run_id": "text",
			"role": "text", "login": "text", "recorded_at": "timestamp with time zone", "previous_sha256": "text"}
		st.SumsUnique = true
		st.Sums = map[int64]migrate.SumRow{}
		for _, r := range rows {
			st.Sums[r.Version] = r
		}
		return st
	}
	applied := gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240101120000, Applied: true},
		migrate.Row{ID: 3, Version: 20240301090000, Applied: true})
	sums(applied, migrate.SumRow{Version: 20240101120000, VersionRowID: 2, File: createOrders, SHA256: shaApplied, Recorded: "applied"},
		migrate.SumRow{Version: 20240301090000, VersionRowID: 3, File: "20240301090000_orders_total.sql", SHA256: shaRemoved, Recorded: "applied"})
	editedSrc := migrate.Sources{{Version: 20240101120000, File: createOrders, HasDown: true, SHA256: shaEdited},
		{Version: 20240301090000, File: "20240301090000_orders_total.sql", HasDown: true, SHA256: shaRemoved}}
	for _, mode := range []migrate.Mode{migrate.ModeUp, migrate.ModePlan} {
		_, err := migrate.Analyze(editedSrc, applied, migrate.Request{Mode: mode, AllowEmptyDatabase: true, Dir: "/migrations"})
		if !errors.Is(err, migrate.ErrChanged) || failure.Code(err) != failure.CodePermanent {
			t.Fatalf("%v: an edited migration gave %v (exit %d), the guide says exit 1", mode, err, failure.Code(err))
		}
		add(err.Error())
	}
	add(analyze(t, editedSrc[:1], applied))

	// A transactional migration that ends its own transaction: refused before
	// anything runs, or recorded as stopped partway when it ran.
	sourceHas(t, "pkg/migrate/migrator.go",
		`"Remove the %s (goose commits the migration when its last statement has run), or mark the file -- +goose NO TRANSACTION if its statements must commit one by one; nothing was applied"`,
		`"migration %d (%s) runs in one transaction for %s, and its %s is %s, which ends that transaction: the statements before it would commit or roll back on their own, and a failure after it could not be undone"`,
		`"statement %d"`, `" (line %d)"`)
	add("refusing to migrate: " + fmt.Sprintf("migration %d (%s) runs in one transaction for %s, and its %s is %s, which ends that transaction: the statements before it would commit or roll back on their own, and a failure after it could not be undone",
		20240315143200, "20240315143200_orders_total.sql", "up", "statement 2 (line 5)", "COMMIT") + ". " +
		fmt.Sprintf("Remove the %s (goose commits the migration when its last statement has run), or mark the file -- +goose NO TRANSACTION if its statements must commit one by one; nothing was applied", "COMMIT"))
	sourceHas(t, "pkg/migrate/migrator.go",
		`"Close the quote, dollar quote or comment (a statement whose lines end in ; inside a string or function body needs -- +goose StatementBegin and StatementEnd around it); nothing was applied"`,
		`"migration %d (%s) runs in one transaction for %s, and its %s cannot be split into its commands: a quote, dollar quote or block comment is left open (read with standard_conforming_strings on and off), so a COMMIT or ROLLBACK in it, which would end that transaction, cannot be ruled out"`)
	add("refusing to migrate: " + fmt.Sprintf("migration %d (%s) runs in one transaction for %s, and its %s cannot be split into its commands: a quote, dollar quote or block comment is left open (read with standard_conforming_strings on and off), so a COMMIT or ROLLBACK in it, which would end that transaction, cannot be ruled out",
		20240315143200, "20240315143200_orders_total.sql", "up", "statement 3 (line 7)") + ". " +
		"Close the quote, dollar quote or comment (a statement whose lines end in ; inside a string or function body needs -- +goose StatementBegin and StatementEnd around it); nothing was applied")
	const txEnded = "the statement ended the migration's transaction (COMMIT or ROLLBACK in a migration that runs in one): the statements before it may be committed"
	sourceHas(t, "pkg/migrate/run.go", txEnded)
	add((&migrate.MigrationError{Version: 20240315143200, File: "20240315143200_orders_total.sql", Direction: "up", Ran: true, Dirty: true, Statement: 1, Detail: txEnded}).Error())

	// migrate's files are not the ones plan judged.
	sourceHas(t, "pkg/migrate/migrator.go",
		`"Pin the step image by digest (image@sha256:...), or take the migrations from git-url or migrations-image, which plan pins for the whole run; then start a new run, whose plan judges the files it will apply"`,
		`"the migrations up to version %d in %s are not the ones plan judged (files-digest %s at plan, %s now): they changed between plan and migrate, e.g. an image tag pushed again and pulled by this step's node; nothing was applied"`)
	add("refusing to migrate: " + fmt.Sprintf("the migrations up to version %d in %s are not the ones plan judged (files-digest %s at plan, %s now): they changed between plan and migrate, e.g. an image tag pushed again and pulled by this step's node; nothing was applied",
		20240315143200, "/migrations", "5b0c0f3e8d9a4f1c2b7e6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291", "0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877665544") + ". " +
		"Pin the step image by digest (image@sha256:...), or take the migrations from git-url or migrations-image, which plan pins for the whole run; then start a new run, whose plan judges the files it will apply")

	// Lock busy.
	// The holder's run and step come from its application_name, its pod from
	// the pod lookup (pkg/podaddr): found, then gone.
	started := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	busy := &migrate.LockBusyError{Waited: 5 * time.Minute, Holder: &migrate.Session{
		PID: 81234, User: "shop_owner", ApplicationName: dbconn.ApplicationName("shop-release-x7k2p", "migrate"), State: "active", XactAge: 42 * time.Second,
		ClientAddr: "10.244.1.17", BackendStart: started,
		Origin: podaddr.Explain("10.244.1.17", "shop", []podaddr.Pod{{Name: "shop-release-x7k2p-migrate-2954173512", Created: started.Add(-10 * time.Second), Phase: "Running"}}, started)}}
	add(busy.Error())
	busy.Holder.Origin = podaddr.Explain("10.244.1.17", "shop", nil, started)
	add(busy.Error())
	// in a pod that mounts no ServiceAccount token
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	busy.Holder.Origin = podaddr.InCluster(t.TempDir()).Describe(context.Background(), "10.244.1.17", started)
	add(busy.Error())

	// lock_timeout while a migration waits for a table lock.
	wait := &migrate.LockWait{LockType: "relation", Mode: "AccessExclusiveLock", Relation: "orders",
		Blockers: []migrate.Session{{PID: 4242, User: "report", ApplicationName: "psql", State: "idle in transaction", XactAge: 20 * time.Minute,
			ClientAddr: "10.244.1.30", Origin: podaddr.Explain("10.244.1.30", "shop", []podaddr.Pod{{Name: "shop-reports-6d9f7c-q2x8z", Phase: "Running"}}, time.Time{})}}}
	sourceHas(t, "pkg/migrate/watch.go", `"lock_timeout (--lock-timeout %s) expired"`, `" waiting for "`,
		`"; let that transaction finish or end it (SELECT pg_terminate_backend(%d);), then rerun"`)
	// The failing statement's place: " at file:line (statement n)" after an SQL
	// error's text, "at file:line (statement n): " before a timeout's.
	sourceHas(t, "pkg/migrate/run.go", `" at %s:%d (statement %d)"`, `" at %s:%d:%d"`, `return w + ": "`, `"%s: %s (SQLSTATE %s)"`)
	at := func(file string, line, stmt int) string {
		return fmt.Sprintf(" at %s:%d (statement %d)", file, line, stmt)
	}
	before := func(file string, line, stmt int) string { return strings.TrimSpace(at(file, line, stmt)) + ": " }
	const (
		orders = "20240315143000_orders_customer.sql"
		index  = "20240315143100_orders_customer_index.sql"
	)
	lockDetail := before(orders, 3, 2) + fmt.Sprintf("lock_timeout (--lock-timeout %s) expired", 10*time.Second) + " waiting for " + wait.String() +
		fmt.Sprintf("; let that transaction finish or end it (SELECT pg_terminate_backend(%d);), then rerun", 4242)
	add((&migrate.MigrationError{Version: 20240315143000, File: orders, Direction: "up", Ran: true, Detail: lockDetail}).Error())

	// statement_timeout: exit 1, it would recur.
	sourceHas(t, "pkg/migrate/run.go", `"statement_timeout expired (--statement-timeout %s, or one the migration set itself) (SQLSTATE 57014); raise --statement-timeout if the migration needs longer"`)
	backfill := "20240320100000_orders_backfill.sql"
	add((&migrate.MigrationError{Version: 20240320100000, File: backfill, Direction: "up", Ran: true,
		Detail: before(backfill, 2, 1) + fmt.Sprintf("statement_timeout expired (--statement-timeout %s, or one the migration set itself) (SQLSTATE 57014); raise --statement-timeout if the migration needs longer", 30*time.Minute)}).Error())

	// A failed migration (keep-down leaves the workloads stopped).
	sqlDetail := fmt.Sprintf("%s: %s (SQLSTATE %s)", "ERROR", `column "customer_id" of relation "orders" already exists`, "42701") +
		fmt.Sprintf(" at %s:%d:%d", orders, 3, 31)
	add((&migrate.MigrationError{Version: 20240315143000, File: orders, Direction: "up", Ran: true, Detail: sqlDetail}).Error())

	// The lock's session terminated during a migration: rolled back (75), or,
	// without a transaction, stopped partway (1).
	terminated := fmt.Sprintf("%s: %s (SQLSTATE %s)", "FATAL", "terminating connection due to administrator command", "57P01")
	add((&migrate.MigrationError{Version: 20240315143000, File: orders, Direction: "up", Ran: true, Detail: terminated + at(orders, 3, 2)}).Error())
	add((&migrate.MigrationError{Version: 20240315143100, File: index, Direction: "up", NoTx: true, Ran: true, Dirty: true,
		Detail: terminated + at(index, 4, 2)}).Error())

	// A migration without a transaction stopped by SIGTERM; the step prefixes
	// "interrupted: ".
	sourceHas(t, "pkg/migrate/run.go", `"interrupted (SIGTERM or cancelled)"`)
	sourceHas(t, "pkg/step/step.go", `msg = "interrupted: " + msg`)
	add("interrupted: " + (&migrate.MigrationError{Version: 20240315143100, File: index, Direction: "up", NoTx: true, Ran: true, Dirty: true,
		Detail: "interrupted (SIGTERM or cancelled)"}).Error())

	// Every later run refuses it, naming the statement and its line.
	dirty := gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240315143000, Applied: true})
	dirty.DirtyExists, dirty.DirtyWritable = true, true
	dirty.Dirty = []migrate.DirtyRow{{Version: 20240315143100, Direction: "up", File: index, Done: 1, Total: 2,
		StartedAt: time.Date(2026, 3, 1, 9, 0, 2, 0, time.UTC), RunID: "chartreuse-x7k2p-migrate-2954173512",
		LastError: "canceling statement due to user request (SQLSTATE 57014)"}}
	src := migrate.Sources{{Version: 20240315143000, File: orders, HasDown: true}, {Version: 20240315143100, File: index, HasDown: true, NoTx: true}}
	for _, mode := range []migrate.Mode{migrate.ModeUp, migrate.ModePlan} {
		_, err := migrate.Analyze(src, dirty, migrate.Request{Mode: mode, AllowEmptyDatabase: true, Dir: "/migrations",
			StatementLines: func(migrate.DirtyRow) []int { return []int{3, 4} }})
		if err == nil || failure.Code(err) != failure.CodePermanent {
			t.Fatalf("%v: a dirty record gave %v (exit %d), the guide says exit 1", mode, err, failure.Code(err))
		}
		add(err.Error())
	}
	// ... unless another session holds the lock: then it may be running (75).
	dirty.LockHeldElsewhere = true
	_, err := migrate.Analyze(src, dirty, migrate.Request{Mode: migrate.ModePlan, AllowEmptyDatabase: true, Dir: "/migrations"})
	if err == nil || failure.Code(err) != failure.CodeTransient {
		t.Fatalf("a dirty record while the lock is held gave %v (exit %d), the guide says exit 75", err, failure.Code(err))
	}
	add(err.Error())

	// A migration with COPY ... FROM STDIN: refused before anything runs.
	sourceHas(t, "pkg/migrate/migrator.go",
		`"Load the rows with INSERT statements (pg_dump --inserts or --column-inserts writes them) or COPY from a file the server can read; nothing was applied"`,
		`"migration %d (%s) for %s has COPY ... FROM STDIN at %s, which waits for the rows from the client: a migration's statements send none, so it would wait until the step is killed"`)
	add("refusing to migrate: " + fmt.Sprintf("migration %d (%s) for %s has COPY ... FROM STDIN at %s, which waits for the rows from the client: a migration's statements send none, so it would wait until the step is killed",
		20240315143300, "20240315143300_seed_countries.sql", "up", "statement 2 (line 4)") + ". " +
		"Load the rows with INSERT statements (pg_dump --inserts or --column-inserts writes them) or COPY from a file the server can read; nothing was applied")

	// The login's sessions switch to another role by default (ALTER ROLE ...
	// SET role, which a migration may have run): the missing-privilege
	// refusal names the role default.
	switched := gooseState(migrate.Row{ID: 1, Version: 0, Applied: true}, migrate.Row{ID: 2, Version: 20240315143000, Applied: true})
	switched.CanRead, switched.CanWrite, switched.CurrentUser, switched.SessionUser, switched.RoleSource = false, false, "shop_app", "shop_owner", "user"
	add(analyze(t, sources(20240315143000, 20240315143100), switched))

	// A migration that releases the migration lock, or writes its own version
	// row: the same on every run, so exit 1.
	const (
		lockReleased  = "the migration released the migration lock itself (pg_advisory_unlock_all(), pg_advisory_unlock of the step's lock, or DISCARD ALL in one of its statements), and its version row is written only under that lock, so it can never be recorded: remove that statement from the migration"
		ownRow        = "the migration writes its own version row (an INSERT INTO or DELETE FROM the version table, as in a dump of a database goose migrated): the step writes it after the migration's statements and found it already written, so it was rolled back, and every rerun would do the same: remove that statement from the migration"
		ownRowNoTx    = "the migration writes its own version row (an INSERT INTO or DELETE FROM the version table, as in a dump of a database goose migrated): all its statements ran, then the step's write of the version row and its checksum found the row already written (rolling back: already deleted), so the migration stays recorded as stopped partway with its checksum unrecorded; remove that statement from the migration, or every database it runs on stops the same way (if it has none, a migrator that takes no lock, such as the goose CLI, applied it meanwhile)"
		seed          = "20240315143300_seed_countries.sql"
		seedVersion   = 20240315143300
		tableRemoved  = "remove that statement from the migration, or keep the version table in a schema the migrations leave alone (--table other_schema.goose_db_version)"
		tableRemovedF = "the migration removes the version table %s or its checksum table %s (DROP SCHEMA %s CASCADE, DROP TABLE, DROP OWNED, ALTER TABLE ... RENAME or SET SCHEMA): the step writes the version row after the migration's statements and found the table gone (%s), so the migration was rolled back, and every rerun would do the same: %w"
	)
	sourceHas(t, "pkg/migrate/run.go", lockReleased, ownRow, ownRowNoTx, tableRemoved, tableRemovedF)
	add((&migrate.MigrationError{Version: seedVersion, File: seed, Direction: "up", Ran: true, Statement: -1, Detail: lockReleased}).Error())
	add((&migrate.MigrationError{Version: seedVersion, File: seed, Direction: "up", Ran: true, Statement: -1, Detail: ownRow}).Error())
	add((&migrate.MigrationError{Version: seedVersion, File: seed, Direction: "up", NoTx: true, Ran: true, Dirty: true, Statement: -1, Detail: ownRowNoTx}).Error())

	// A migration that removes the version table: rolled back, or, without a
	// transaction, the records written back.
	add((&migrate.MigrationError{Version: seedVersion, File: seed, Direction: "up", Ran: true, Statement: -1,
		Detail: fmt.Errorf(tableRemovedF, "public.goose_db_version", "public.goose_db_version_sums", "public",
			"ERROR: relation \"public.goose_db_version\" does not exist (SQLSTATE 42P01)", errors.New(tableRemoved)).Error()}).Error())

	// ... and without a transaction: the records written back.
	sourceHas(t, "pkg/migrate/run.go",
		`" (its schema %s no longer exists: DROP SCHEMA ... CASCADE?)"`,
		`"the version table with versions %s (the ones applied before this migration)"`,
		`"the migration removed the version table, where this step records what is applied: %s; the step wrote back what it knew, under the migration lock: %s, and this migration's record as stopped partway"`,
		`"; the checksum table %s is gone too and is not written back: the first run after the settlement records the files' checksums again"`,
		`". Nothing else the migration dropped is restored. It failed on: %s. Remove that statement from the migration (every migration must leave the step's tables in place), or keep them in a schema the migrations leave alone (--table other_schema.%s)"`,
		`"statement %d ran, but counting it in %s failed: %s"`,
		`"the migration removed its record from %s, and writing it again failed: %w"`)
	countFailed := fmt.Sprintf("statement %d ran, but counting it in %s failed: %s", 2, "public.goose_db_version_dirty",
		fmt.Sprintf("the migration removed its record from %s, and writing it again failed: %s", "public.goose_db_version_dirty",
			"ERROR: schema \"public\" does not exist (SQLSTATE 3F000)"))
	restored := fmt.Sprintf("the migration removed the version table, where this step records what is applied: %s; the step wrote back what it knew, under the migration lock: %s, and this migration's record as stopped partway",
		"the version table public.goose_db_version"+fmt.Sprintf(" (its schema %s no longer exists: DROP SCHEMA ... CASCADE?)", "public"),
		"schema public, "+fmt.Sprintf("the version table with versions %s (the ones applied before this migration)", "0, 20240315143000")) +
		fmt.Sprintf("; the checksum table %s is gone too and is not written back: the first run after the settlement records the files' checksums again", "public.goose_db_version_sums") +
		fmt.Sprintf(". Nothing else the migration dropped is restored. It failed on: %s. Remove that statement from the migration (every migration must leave the step's tables in place), or keep them in a schema the migrations leave alone (--table other_schema.%s)",
			countFailed, "goose_db_version")
	add((&migrate.MigrationError{Version: seedVersion, File: seed, Direction: "up", NoTx: true, Ran: true, Dirty: true, Statement: 1, Detail: restored}).Error())

	// Patroni roles not ready: the wait loop's final message around the check's.
	sourceHas(t, "pkg/patroni/check.go", `"roles %s and %s do not exist%s"`, `"role %s does not exist%s"`,
		`"user %s is not a member of role %s: grant it (GRANT %s TO %s) or connect as the owner's login user (postgres-operator: %s_user)"`,
		`"connected to a replica (pg_is_in_recovery() is true) at %s: point the URL at the primary (postgres-operator: the <cluster> service, not <cluster>-repl)"`)
	sourceHas(t, "pkg/patroni/spec.go", `What:    "the cluster"`)
	for _, cause := range []string{
		fmt.Sprintf("roles %s and %s do not exist", strings.Join([]string{"shop_owner", "shop_writer"}, ", "), "shop_reader"),
		fmt.Sprintf("user %s is not a member of role %s: grant it (GRANT %s TO %s) or connect as the owner's login user (postgres-operator: %s_user)",
			"shop_app", "shop_owner", "shop_owner", "shop_app", "shop_owner"),
		fmt.Sprintf("connected to a replica (pg_is_in_recovery() is true) at %s: point the URL at the primary (postgres-operator: the <cluster> service, not <cluster>-repl)",
			"host=shop-db-repl port=5432 database=shop user=shop_owner_user"),
	} {
		loop := poll.Loop{Clock: &fakeClock{now: time.Unix(0, 0)}, What: "the cluster",
			Backoff: poll.Backoff{Initial: patroni.InitialPause, Max: patroni.MaxPause, Rand: func() float64 { return 0.5 }},
			Log:     discardLogger()}
		_, err := loop.Run(context.Background(), 60*time.Second, func(context.Context) error { return failure.Transientf("%s", cause) })
		if failure.Code(err) != failure.CodeTransient {
			t.Errorf("patroni wait: exit code %d, the guide says 75", failure.Code(err))
		}
		add(err.Error())
	}

	// --patroni-url with a path: Patroni's other endpoints answer, never /cluster.
	const noMembers = "GET %s did not reach Patroni's cluster view (the answer lists no members): give the REST API's base URL without a path, e.g. http://db-0.db:8008 (not retried)"
	sourceHas(t, "pkg/patroni/rest.go", `"`+noMembers+`"`)
	add(fmt.Sprintf(noMembers, "http://shop-db-0.shop-db:8008/patroni/cluster"))

	// Workloads that do not stop in time.
	sourceHas(t, "pkg/workload/watch.go", `"timed out after %s waiting for %s; still there: %s"`, `"pod/%s (%s, %s)"`)
	sourceHas(t, "pkg/workload/down.go", `"the pods of %d workloads to stop"`)
	add(fmt.Sprintf("timed out after %s waiting for %s; still there: %s", 10*time.Minute, fmt.Sprintf("the pods of %d workloads to stop", 3),
		fmt.Sprintf("pod/%s (%s, %s)", "shop-report-29123040-x7k2p", workload.Ref{Kind: workload.CronJob, Name: "shop-report"}, "Running")))

	// A restore whose answer never came, and a read after it that failed too.
	const unconfirmed = "%s: restoring it may have been done though the API server never confirmed it; check its replicas and readiness by hand (kubectl get %s/%s -n %s): %v"
	sourceHas(t, "pkg/workload/restore.go", `"`+unconfirmed+`"`)
	add(fmt.Sprintf(unconfirmed, workload.Ref{Kind: workload.Deployment, Name: "shop-web"}, "deployments", "shop-web", "shop", "patch deployments.apps: patching deployment/shop-web: context deadline exceeded"))

	// RBAC: the permission check before any change, and a refusal by the API server.
	sourceHas(t, "pkg/workload/access.go",
		`"permission denied in namespace %s: missing %s; grant these verbs in the step's Role (see pkg/workload/rbac/role.yaml)"`,
		`p.verb + " " + kube.Describe(p.resource, p.group, p.subresource)`)
	add(fmt.Sprintf("permission denied in namespace %s: missing %s; grant these verbs in the step's Role (see pkg/workload/rbac/role.yaml)",
		"shop", strings.Join([]string{"patch " + kube.Describe("deployments", "apps", ""), "watch " + kube.Describe("pods", "", "")}, ", ")))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "shop-web",
		errors.New(`User "system:serviceaccount:shop:chartreuse-workflow" cannot patch resource "deployments" in API group "apps" in the namespace "shop"`))
	add(kube.Classify(forbidden, "patch", kube.Describe("deployments", "apps", "")).Error())

	// Version mismatch and a missing --manifest-version.
	add(version.Check("0.1.0", "0.2.0", false).Error())
	add(version.Check("0.1.0", "", false).Error())

	// scale-down with nothing selected (workload-selector empty).
	so := &workload.SelectOptions{RequireSome: true}
	add(so.Validate().Error())

	// wait-for-db: a wrong password is not waited for.
	cfg, err := pgx.ParseConfig("postgres://shop_owner@db.example.internal:5432/shop")
	if err != nil {
		t.Fatal(err)
	}
	auth := dbconn.Explain(cfg, &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "shop_owner"`})
	msg, _, _ := strings.Cut(auth.Error(), "(not retried)")
	add(msg + "(not retried)")

	// A parameter name the workflow does not declare: Tekton's gate, Argo's guard.
	add(gate.UnknownParameters([]string{"databases", "on-migrate-falure"}).Error())
	// A PipelineRun with Tekton's default run-level timeout: the gate refuses it.
	add(gate.RunTimeouts(&unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "chartreuse-run-x7k2p"},
		"spec":     map[string]any{"timeouts": map[string]any{"pipeline": "1h0m0s"}},
	}}).Error())
	const argoUnknown = `'unknown parameters ' + join(sort(`
	const argoUnknownWhy = `' (not parameters of this WorkflowTemplate: check their spelling against workflowtemplates/README.md)'`
	sourceHas(t, "workflowtemplates/workflowtemplate.yaml", argoUnknown, argoUnknownWhy, "--refuse=invalid parameters: {{=join(filter([")
	add("wait-for-db: invalid parameters: unknown parameters on-migrate-falure (not parameters of this WorkflowTemplate: check their spelling against workflowtemplates/README.md)")
	sourceHas(t, "workflowtemplates/workflowtemplate.yaml", `'--refuse=invalid parameters: unknown parameters ' + join(sort(`,
		`' (not parameters of this WorkflowTemplate or of its entrypoint ' + workflow.mainEntrypoint + ': check their spelling against workflowtemplates/README.md)'`)
	add("wait-for-db: invalid parameters: unknown parameters only-runuid (not parameters of this WorkflowTemplate or of its entrypoint scale-restore: check their spelling against workflowtemplates/README.md)")
	return q
}

func TestTroubleshootingQuotesTheCode(t *testing.T) {
	pages := map[string]string{}
	for _, q := range quotes(t) {
		if _, ok := pages[q.doc]; !ok {
			b, err := os.ReadFile(filepath.Join(repoRoot, q.doc))
			if err != nil {
				t.Fatal(err)
			}
			pages[q.doc] = string(b)
		}
		if !strings.Contains(pages[q.doc], q.msg) {
			t.Errorf("%s does not quote what the code prints:\n%s", q.doc, q.msg)
		}
	}
}
