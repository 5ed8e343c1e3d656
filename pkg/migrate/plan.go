package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// Request is what the operator asked for.
type Request struct {
	Mode               Mode
	To                 Version // ModeUp/ModePlan: target; unset means the latest
	DownTo             Version // ModeDown: target
	OnlyAppliedBy      string  // ModeDown: refuse unless this run id applied every version to roll back
	AllowOutOfOrder    bool
	AllowEmptyDatabase bool
	AcceptChanged      []int64 // applied versions whose edited file is accepted (checksum.go)
	Dir                string  // for messages
	// StatementLines, when set, finds where each statement of a file starts, to
	// name the line a dirty migration stopped at.
	StatementLines func(DirtyRow) []int
}

// Plan is what a run will do, computed from the directory and the database state.
type Plan struct {
	Mode    Mode
	Current int64   // highest applied version; 0 when none
	Target  int64   // version the run migrates to
	Applied []int64 // versions recorded in the database (without 0), ascending
	Pending []int64 // up/plan: versions to apply, in order; down: nil
	Down    []int64 // down: versions to roll back, highest first
	// Backfill are applied versions without a recorded checksum, with the
	// current file's; Accept the edited ones --accept-changed names.
	Backfill []SumRow
	Accept   []ChangedFile
}

// NothingToDo reports whether the run would change nothing.
func (p *Plan) NothingToDo() bool { return len(p.Pending) == 0 && len(p.Down) == 0 }

// Analyze checks the directory against the database and computes the plan. Every
// problem that must stop the run before it changes anything is a *RefusalError.
func Analyze(src Sources, st *State, req Request) (*Plan, error) {
	p, err := analyze(src, st, req)
	return p, explainRoleDefault(st, err)
}

// explainRoleDefault adds to a missing-privilege refusal that the role lacking
// it is not the login role but one every session of it switches to by default
// (ALTER ROLE login SET role = other, which a migration may have run): granting
// that role what the step needs is then the wrong repair. Before, the refusal
// named only the switched role's missing grant (session12 finding 4).
func explainRoleDefault(st *State, err error) error {
	var re *RefusalError
	if err == nil || !errors.As(err, &re) || !errors.Is(re.Reason, ErrNoPrivilege) || st.CurrentUser == st.SessionUser {
		return err
	}
	login, role := qualify("", st.SessionUser), qualify("", st.CurrentUser)
	var how string
	switch st.RoleSource {
	case "user":
		how = fmt.Sprintf("a role default (ALTER ROLE %s SET role = %s, run by hand or by a migration); undo it with ALTER ROLE %s RESET role;", login, role, login)
	case "database user":
		how = fmt.Sprintf("a role default in this database (ALTER ROLE %s IN DATABASE ... SET role = %s, run by hand or by a migration); undo it with ALTER ROLE %s IN DATABASE <database> RESET role;", login, role, login)
	case "database":
		how = fmt.Sprintf("the database's default (ALTER DATABASE ... SET role = %s, run by hand or by a migration); undo it with ALTER DATABASE <database> RESET role;", role)
	default:
		return err
	}
	re.Repair = fmt.Sprintf("%s is not the login role %s but the role its sessions switch to by %s or pass --role. Otherwise: %s", role, login, how, re.Repair)
	return re
}

func analyze(src Sources, st *State, req Request) (*Plan, error) {
	if err := checkTable(st, req); err != nil {
		return nil, err
	}
	if err := checkRows(st); err != nil {
		return nil, err
	}
	if err := checkDirty(st, req); err != nil {
		return nil, err
	}
	p := &Plan{Mode: req.Mode}
	for _, r := range st.Rows {
		if r.Version != 0 && !slices.Contains(p.Applied, r.Version) {
			p.Applied = append(p.Applied, r.Version)
		}
	}
	slices.Sort(p.Applied)
	if n := len(p.Applied); n > 0 {
		p.Current = p.Applied[n-1]
	}
	if err := checkBranched(src, st, p.Applied, req); err != nil {
		return nil, err
	}
	plan := planUp
	if req.Mode == ModeDown {
		plan = planDown
	}
	if err := plan(src, st, p, req); err != nil {
		return nil, err
	}
	return p, nil
}

// checkBranched refuses applied versions that have no file in the directory.
func checkBranched(src Sources, st *State, applied []int64, req Request) error {
	var branched []int64
	for _, v := range applied {
		if _, ok := src.Get(v); !ok {
			branched = append(branched, v)
		}
	}
	if len(branched) > 0 {
		// With checksums recorded, the refusal names each missing file and its
		// checksum, and the deliberate repair removes its checksum row too.
		recorded, sumsRepair := "", ""
		var files []string
		for _, v := range branched {
			if r, ok := st.Sums[v]; ok {
				files = append(files, fmt.Sprintf("%d (%s, recorded sha256 %s)", v, r.File, r.SHA256))
			}
		}
		if len(files) > 0 {
			recorded = "; removed: " + strings.Join(files, ", ")
		}
		if st.sumsUsable() {
			sumsRepair = fmt.Sprintf(" DELETE FROM %s WHERE version IN (%s);", st.sumsTable(), joinVersions(branched, ", "))
		}
		return refuse(ErrBranched,
			fmt.Sprintf("Deploy the image that contains %s (its migrate --down-to can roll %s back), or, if %s removed on purpose and %s changes undone, delete %s rows deliberately: DELETE FROM %s WHERE version_id IN (%s);%s",
				plural(len(branched), "this migration", "these migrations"), plural(len(branched), "it", "them"),
				plural(len(branched), "it was", "they were"), plural(len(branched), "its", "their"), plural(len(branched), "its", "their"),
				st.Qualified(), joinVersions(branched, ", "), sumsRepair),
			"the database has %s %s applied that %s not in %s (latest there: %d): this image is older than the database schema, or the database was migrated from another branch%s",
			plural(len(branched), "version", "versions"), joinVersions(branched, ", "), plural(len(branched), "is", "are"), req.Dir, src.Latest(), recorded)
	}
	return nil
}

// planDown fills in the versions to roll back, down to --down-to.
func planDown(src Sources, st *State, p *Plan, req Request) error {
	p.Target = req.DownTo.Value
	if p.Target != 0 {
		if _, ok := src.Get(p.Target); !ok {
			return unknownVersion("--down-to", p.Target, src, req.Dir)
		}
	}
	for i := len(p.Applied) - 1; i >= 0 && p.Applied[i] > p.Target; i-- {
		v := p.Applied[i]
		m, _ := src.Get(v)
		if !m.HasDown {
			return refuse(ErrIrreversible,
				fmt.Sprintf("Roll back only to version %d or above (--down-to %d), or add a '-- +goose Down' section to %s", v, v, m.File),
				"migration %d (%s) has no Down statements: rolling it back would only delete its version row and leave its changes in place", v, m.File)
		}
		p.Down = append(p.Down, v)
	}
	if len(p.Down) > 0 {
		if err := checkReadOnly(st); err != nil {
			return err
		}
	}
	if err := checkDirtyTable(st, src, p.Down); err != nil {
		return err
	}
	// after checkSums, which names a checksum table that cannot be read
	if err := checkSums(src, st, p, req); err != nil {
		return err
	}
	return checkAppliedBy(st, p.Down, req.OnlyAppliedBy)
}

// checkAppliedBy refuses a rollback of a version that run did not apply itself
// (run "" checks nothing): a workflow's failure path must not undo what
// another migrator applied meanwhile (a run outside the workflow's lock, or
// one that took it while this run waited).
func checkAppliedBy(st *State, down []int64, run string) error {
	if run == "" {
		return nil
	}
	var others []string
	rowID := st.versionRowIDs()
	for _, v := range down {
		s, ok := st.Sums[v]
		switch {
		case !ok:
			others = append(others, fmt.Sprintf("%d (no record of who applied it)", v))
		case s.Recorded != "applied":
			others = append(others, fmt.Sprintf("%d (recorded as %s by %q, not applied by it)", v, s.Recorded, s.RunID))
		case s.RunID != run:
			others = append(others, fmt.Sprintf("%d (applied by %q)", v, s.RunID))
		case s.VersionRowID != rowID[v]:
			// another migrator redid it (goose redo, a restored version table)
			others = append(others, fmt.Sprintf("%d (its version row was written again after %q applied it)", v, s.RunID))
		}
	}
	if len(others) == 0 {
		return nil
	}
	return refuse(ErrAppliedByAnother,
		"Nothing was rolled back, and the workloads this run stopped stay stopped: decide by hand whether the database can stay as it is (then restore the workloads) or must go back (then roll back without --only-this-run, e.g. the workflow's rollback entrypoint)",
		"this run (--run-id %q) rolls back only what it applied, and it did not apply %s %s",
		run, plural(len(others), "version", "versions"), strings.Join(others, ", "))
}

// planUp fills in the versions to apply, up to --to or the latest, and refuses
// what migrate could not do.
func planUp(src Sources, st *State, p *Plan, req Request) error {
	table := st.Qualified()
	if !st.Exists && st.UserTables == 0 && !req.AllowEmptyDatabase {
		return refuse(ErrEmptyDatabase,
			"Check that --database-url (or its Secret) names the right database; to initialise a new database, rerun with --allow-empty-database=true",
			"the database has no tables and no version table %s, and --allow-empty-database is false", table)
	}
	if err := checkForeignRecords(src, st); err != nil {
		return err
	}
	p.Target = src.Latest()
	if req.To.IsSet {
		p.Target = req.To.Value
		if _, ok := src.Get(p.Target); !ok {
			return unknownVersion("--to", p.Target, src, req.Dir)
		}
	}
	var outOfOrder []int64
	for _, m := range src {
		if m.Version > p.Target || slices.Contains(p.Applied, m.Version) {
			continue
		}
		p.Pending = append(p.Pending, m.Version)
		if m.Version < p.Current {
			outOfOrder = append(outOfOrder, m.Version)
		}
	}
	if len(outOfOrder) > 0 && !req.AllowOutOfOrder {
		return refuse(ErrOutOfOrder,
			fmt.Sprintf("If %s not depend on the migrations applied after %s, rerun with --allow-out-of-order; otherwise renumber %s above %d in the image",
				plural(len(outOfOrder), "it does", "they do"), plural(len(outOfOrder), "it", "them"), plural(len(outOfOrder), "it", "them"), p.Current),
			"%s %s %s pending but lower than the current version %d (out of order: a branch merged after newer migrations were applied)",
			plural(len(outOfOrder), "version", "versions"), joinVersions(outOfOrder, ", "), plural(len(outOfOrder), "is", "are"), p.Current)
	}
	if err := checkRecordable(st, p.Pending); err != nil {
		return err
	}
	if len(p.Pending) > 0 {
		if err := checkReadOnly(st); err != nil {
			return err
		}
	}
	if !st.Exists && len(p.Pending) > 0 && !st.CanCreate {
		return refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it (GRANT CREATE ON SCHEMA %s TO %s;) or run with --role set to the schema's owner", qualify("", st.Schema), qualify("", st.CurrentUser)),
			"%s cannot create the version table %s: no CREATE privilege on schema %s", st.CurrentUser, table, st.Schema)
	}
	if req.Mode == ModePlan && len(p.Pending) > 0 {
		// A plan with nothing pending needs only to read; one with pending
		// migrations says now what migrate would refuse.
		if err := checkWrite(st); err != nil {
			return err
		}
	}
	if err := checkDirtyTable(st, src, p.Pending); err != nil {
		return err
	}
	return checkSums(src, st, p, req)
}

// checkDirty refuses while a migration is recorded as stopped partway: the
// database is in a state no migration file describes.
func checkDirty(st *State, req Request) error {
	if len(st.Dirty) == 0 {
		return nil
	}
	if st.LockHeldElsewhere {
		d := st.Dirty[0]
		return failure.AsTransient(fmt.Errorf("%w: migration %d (%s) runs without a transaction and another session holds the migration lock, so it is either running now or stopped partway in that session; rerun when the lock is free",
			ErrInProgress, d.Version, d.File))
	}
	var probs []string
	for _, d := range st.Dirty {
		var lines []int
		if req.StatementLines != nil {
			lines = req.StatementLines(d)
		}
		probs = append(probs, d.describe(lines))
	}
	d := st.Dirty[0]
	settle := fmt.Sprintf("migrate --resolve %d --as applied (all its changes are in place) or migrate --resolve %d --as not-applied (none are; the next run applies it again)", d.Version, d.Version)
	if d.Direction == "down" {
		settle = fmt.Sprintf("migrate --resolve %d --as applied (the rollback did not take effect: the migration's changes are all still in place) or migrate --resolve %d --as not-applied (the rollback is complete: none of them are)", d.Version, d.Version)
	}
	return refuse(ErrDirty,
		fmt.Sprintf("Check which of its statements took effect, finish or undo them by hand, then record the outcome under the migration lock: %s. The record: SELECT * FROM %s;%s", settle, st.dirtyTable(), missingVersionTable(st)),
		"%s", strings.Join(probs, "; "))
}

// missingVersionTable is, when the version table is gone while a migration
// is recorded as stopped partway (a migration removed it, and the step could
// not write it back), the sentence telling to recreate it before --resolve,
// which writes there; "" when it exists.
func missingVersionTable(st *State) string {
	if st.Exists {
		return ""
	}
	var versions []int64
	for v := range st.Sums {
		if !slices.ContainsFunc(st.Dirty, func(d DirtyRow) bool { return d.Version == v }) {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	rows, which := "(0, true), (<version>, true), ...", "one row for each migration applied before it"
	if len(versions) > 0 {
		rows, which = "(0, true), "+valuesApplied(versions), "the ones "+st.sumsTable()+" records"
	}
	return fmt.Sprintf(" The version table %s does not exist (a migration dropped, renamed or moved it), and --resolve writes there: first recreate it with the versions applied before (%s): %s; INSERT INTO %s (version_id, is_applied) VALUES %s;",
		st.Qualified(), which, strings.Join(strings.Fields(createVersionSQL(st)), " "), st.Qualified(), rows)
}

// checkDirtyTable refuses before anything runs when a pending migration without a
// transaction could not be recorded as it runs.
func checkDirtyTable(st *State, src Sources, pending []int64) error {
	noTx := ""
	for _, v := range pending {
		if s, _ := src.Get(v); s.NoTx {
			noTx = s.File
			break
		}
	}
	switch {
	case noTx == "":
		return nil
	case !st.DirtyExists && !st.CanCreate:
		return refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it (GRANT CREATE ON SCHEMA %s TO %s;), create the table once as its owner, or run with --role set to the schema's owner", qualify("", st.Schema), qualify("", st.CurrentUser)),
			"%s runs without a transaction, so its progress is recorded in %s, which %s cannot create: no CREATE privilege on schema %s", noTx, st.dirtyTable(), st.CurrentUser, st.Schema)
	case st.DirtyExists && !st.DirtyWritable:
		return refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it: GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s; or run with --role set to the table's owner", st.dirtyTable(), qualify("", st.CurrentUser)),
			"%s runs without a transaction, so its progress is recorded in %s, which %s cannot write", noTx, st.dirtyTable(), st.CurrentUser)
	}
	return nil
}

func checkTable(st *State, req Request) error {
	table := st.Qualified()
	if len(st.Elsewhere) > 0 {
		return tableElsewhere(st)
	}
	if st.Schema == "" {
		return refuse(ErrNotGooseTable, "Set --table to a schema-qualified name, e.g. public."+st.Name+", or fix the role's search_path",
			"no schema to hold the version table %s: the search_path names no existing schema", st.Name)
	}
	if !st.SchemaExists {
		return refuse(ErrNotGooseTable,
			fmt.Sprintf("Create it first (CREATE SCHEMA %s;) or fix --table", qualify("", st.Schema)),
			"schema %s of the version table %s does not exist", st.Schema, table)
	}
	if probs := st.ShapeProblems(); len(probs) > 0 {
		return refuse(ErrNotGooseTable,
			fmt.Sprintf("If this is another tool's table, choose a different --table; if it was goose's, restore it to goose's layout (id integer identity primary key, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp DEFAULT now()) or rename it (ALTER TABLE %s RENAME TO %s_old;) so goose creates a new one", table, st.Name),
			"%s exists but is not a goose version table: %s", table, strings.Join(probs, "; "))
	}
	if prob := st.dirtyProblem(); prob != "" {
		dirty := st.dirtyTable()
		return refuse(ErrNotGooseTable,
			fmt.Sprintf("If it is another tool's table, rename it (ALTER TABLE %s RENAME TO %s;) or choose another --table: this step records each migration without a transaction, while it runs, in the table named like --table with _dirty appended",
				dirty, qualify("", dirtyName(st.Name)+"_old")),
			"%s exists but is not the dirty record of %s: %s", dirty, table, prob)
	}
	if !st.Exists {
		return nil
	}
	grant := fmt.Sprintf("GRANT SELECT, INSERT, DELETE ON %s TO %s; or run with --role set to the table's owner", table, qualify("", st.CurrentUser))
	if !st.CanRead {
		return refuse(ErrNoPrivilege, "Grant it: "+grant, "%s cannot read the version table %s", st.CurrentUser, table)
	}
	if req.Mode != ModePlan {
		return checkWrite(st)
	}
	return nil
}

// checkReadOnly refuses, before anything runs, on a primary whose sessions
// are read-only by default (default_transaction_read_only = on from the
// connection's options, the role, the database or the server's
// configuration): every write failed with 25006, which is transient because a
// standby after a switchover answers it too, so the step exited 75 and every
// retry did the same, while plan said the migrations would apply (session14
// finding 6). A standby stays transient: the next attempt may reach the new
// primary.
func checkReadOnly(st *State) error {
	if st.ReadOnlySource == "" || st.InRecovery {
		return nil
	}
	var from, repair string
	switch st.ReadOnlySource {
	case "client":
		from = "the connection's options (options=-c default_transaction_read_only=on in the database URL, or PGOPTIONS)"
		repair = "Remove it from the URL (its Secret) or PGOPTIONS"
	case "user", "database", "database user":
		what := map[string]string{"user": "ALTER ROLE " + qualify("", st.SessionUser), "database": "ALTER DATABASE",
			"database user": "ALTER ROLE " + qualify("", st.SessionUser) + " IN DATABASE"}[st.ReadOnlySource]
		from = what + " ... SET default_transaction_read_only = on"
		repair = "If the database was made read-only on purpose (a freeze, a migration to another server), migrate once it is lifted; otherwise undo it: " + what + " ... RESET default_transaction_read_only; (new sessions take it)"
	default:
		from = "the server's configuration (" + st.ReadOnlySource + ": postgresql.conf, ALTER SYSTEM or the server's command line)"
		repair = "If the server was made read-only on purpose, migrate once that is lifted; otherwise set default_transaction_read_only = off there and reload the server"
	}
	return refuse(ErrReadOnly, repair+". Nothing was applied",
		"the database is a primary, but its sessions are read-only by default (default_transaction_read_only = on, set by %s), so no migration and no version row could be written", from)
}

// checkForeignRecords refuses a run whose version table does not exist while
// another version table's checksum table records migrations of the directory,
// same version and same sha256, as applied: this application's records are
// there, and running would apply every migration again. Another application
// sharing the database, with its own --table, has files of its own and goes on.
func checkForeignRecords(src Sources, st *State) error {
	if st.Exists || len(st.ForeignSums) == 0 {
		return nil
	}
	var table Relation
	var versions []int64
	for _, f := range st.ForeignSums {
		s, ok := src.Get(f.Version)
		if !ok || s.SHA256 != f.SHA256 || len(versions) > 0 && f.Table != table {
			continue
		}
		table = f.Table
		versions = append(versions, f.Version)
	}
	if len(versions) == 0 {
		return nil
	}
	there := qualify(table.Schema, table.Name)
	move := ""
	if table.Name == st.Name {
		move = fmt.Sprintf("; to keep the records in schema %s instead, move them there first, under the migration lock (no run in progress): ALTER TABLE %s SET SCHEMA %s; ALTER TABLE %s SET SCHEMA %s; and the same for %s if it exists",
			st.Schema, there, qualify("", st.Schema), qualify(table.Schema, sumsName(table.Name)), qualify("", st.Schema), qualify(table.Schema, dirtyName(table.Name)))
	}
	return refuse(ErrTableElsewhere,
		fmt.Sprintf("Pass --table %s.%s (the workflow parameter table)%s. Nothing was applied", table.Schema, table.Name, move),
		"the version table %s does not exist, but %s %s of this directory %s recorded applied, with the same sha256, in %s, the checksum table of %s: this application's version table is %s, and running with --table %s would apply every migration again",
		st.Qualified(), plural(len(versions), "migration", "migrations"), joinVersions(versions, ", "), plural(len(versions), "is", "are"),
		qualify(table.Schema, sumsName(table.Name)), there, there, st.Qualified())
}

// tableElsewhere refuses an unqualified --table that no longer leads to the
// version table: the first schema of the search_path holds none, another
// schema does (st.Elsewhere, version tables first).
func tableElsewhere(st *State) error {
	found := make([]string, len(st.Elsewhere))
	for i, r := range st.Elsewhere {
		found[i] = qualify(r.Schema, r.Name)
	}
	at := st.Elsewhere[0].Schema
	where := fmt.Sprintf("schema %s (the first existing schema of the search_path)", st.Schema)
	if st.Schema == "" {
		where = "no schema (the search_path names no existing schema)"
	}
	own := ""
	if st.Schema != "" {
		own = fmt.Sprintf("; if %s another application's, pass --table %s.%s to create this one's", plural(len(found), "it is", "they are"), st.Schema, st.Name)
	}
	return refuse(ErrTableElsewhere,
		fmt.Sprintf("Pass --table %s.%s (the workflow parameter table), which every run then finds wherever the search_path points, or pin the login role's search_path (ALTER ROLE %s SET search_path = %s;)%s",
			at, st.Name, qualify("", st.SessionUser), qualify("", at), own),
		"--table %s names no schema and now resolves to %s, which has no version table, but %s %s: a schema created since (one named like the role comes first in the default search_path \"$user\", public) or a changed search_path moved where it resolves, and running would apply every migration again",
		st.Name, where, strings.Join(found, ", "), plural(len(found), "exists", "exist"))
}

// checkWrite refuses when the version row of a migration could not be written,
// which would leave it applied but unrecorded.
func checkWrite(st *State) error {
	if !st.Exists {
		return nil
	}
	table := st.Qualified()
	if !st.CanWrite && st.NoSeqUsage != "" {
		return refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it: GRANT USAGE ON SEQUENCE %s TO %s; or run with --role set to the table's owner", st.NoSeqUsage, qualify("", st.CurrentUser)),
			"%s cannot write the version table %s: its id column (an older goose's serial) takes numbers from the sequence %s, on which %s has no USAGE privilege", st.CurrentUser, table, st.NoSeqUsage, st.CurrentUser)
	}
	if !st.CanWrite {
		return refuse(ErrNoPrivilege, fmt.Sprintf("Grant it: GRANT SELECT, INSERT, DELETE ON %s TO %s; or run with --role set to the table's owner", table, qualify("", st.CurrentUser)),
			"%s cannot write (INSERT and DELETE) the version table %s", st.CurrentUser, table)
	}
	return nil
}

// checkRecordable refuses, before anything runs, a version table that could
// not take the version rows of versions: the INSERT would fail only after the
// migration's statements ran, which rolls back a transactional migration every
// run and leaves one without a transaction stopped partway.
func checkRecordable(st *State, versions []int64) error {
	if !st.Exists || len(versions) == 0 {
		return nil
	}
	table := st.Qualified()
	var probs, repair []string
	if n := len(st.Required); n > 0 {
		probs = append(probs, fmt.Sprintf("%s %s NOT NULL without a default and goose's INSERT fills only version_id and is_applied",
			plural(n, "column", "columns"), strings.Join(st.Required, ", ")+plural(n, " is", " are")))
	}
	for _, c := range st.Required {
		switch c {
		case "id":
			repair = append(repair, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY; SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM %s;",
				table, sqlLiteral(table), table))
		case "tstamp":
			repair = append(repair, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN tstamp SET DEFAULT now();", table))
		default:
			repair = append(repair, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL;", table, qualify("", c)))
		}
	}
	var big []int64
	if slices.ContainsFunc(st.Columns, func(c Column) bool { return c.Name == "version_id" && c.Type == "integer" }) {
		for _, v := range versions {
			if v > math.MaxInt32 {
				big = append(big, v)
			}
		}
	}
	if n := len(big); n > 0 {
		probs = append(probs, fmt.Sprintf("column version_id is integer, which cannot hold %s %s (above %d)",
			plural(n, "version", "versions"), summarizeVersions(big), math.MaxInt32))
		repair = append(repair, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN version_id TYPE bigint;", table))
	}
	if prob, fix := st.idCollision(len(versions)); prob != "" {
		probs = append(probs, prob)
		repair = append(repair, fix)
	}
	if len(probs) == 0 {
		return nil
	}
	own := ""
	if len(st.Required) > 0 {
		own = " (or give a column a default of your own: ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...)"
	}
	return refuse(ErrCannotRecord, "Repair it in one transaction: BEGIN; "+strings.Join(repair, " ")+" COMMIT;"+own,
		"the version table %s cannot record a migration, its version row would fail after the migration ran: %s", table, strings.Join(probs, "; "))
}

// idCollision says, with its repair, when one of the next k ids the id
// sequence hands out (k version rows to write) is already a row's: rows
// inserted with explicit ids (a version marked applied by hand, rows copied
// from another database) do not advance the sequence, and goose's INSERT would
// fail on the primary key. Ids the rows leave free are no problem.
func (s *State) idCollision(k int) (problem, repair string) {
	q := s.IDSeq
	if q == nil || q.Increment == 0 {
		return "", ""
	}
	taken := make(map[int64]int64, len(s.Rows))
	for _, r := range s.Rows {
		taken[r.ID] = r.Version
	}
	id, past := q.Next, q.Exhausted
	for i := range k {
		if past || id > q.Max || id < q.Min {
			if !q.Cycle {
				// nextval would fail, after the migration's statements ran
				// (attack on 65734b5: one without a transaction stopped partway)
				bound, limit, clause := "maximum", q.Max, "NO MAXVALUE"
				if q.Increment < 0 {
					bound, limit, clause = "minimum", q.Min, "NO MINVALUE"
				}
				return fmt.Sprintf("its id sequence %s has reached its %s (%d): %d of the %d version %s to write would get no id",
						q.Name, bound, limit, k-i, k, plural(k, "row", "rows")),
					fmt.Sprintf("ALTER TABLE %s ALTER COLUMN id TYPE bigint; ALTER SEQUENCE %s AS bigint %s;", s.Qualified(), q.Name, clause)
			}
			// a cycling sequence starts again at its other bound
			id, past = q.Min, false
			if q.Increment < 0 {
				id = q.Max
			}
		}
		if v, ok := taken[id]; ok {
			when := "next"
			if i > 0 {
				when = fmt.Sprintf("after %d other %s", i, plural(i, "id", "ids"))
			}
			agg := "max"
			if q.Increment < 0 {
				agg = "min"
			}
			return fmt.Sprintf("its id sequence %s is behind its rows: it hands out id %d %s, which the row of version %d already has (rows inserted with explicit ids do not advance the sequence)",
					q.Name, id, when, v),
				fmt.Sprintf("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s(id)) FROM %s;", sqlLiteral(s.Qualified()), agg, s.Qualified())
		}
		if (q.Increment > 0 && id > math.MaxInt64-q.Increment) || (q.Increment < 0 && id < math.MinInt64-q.Increment) {
			break
		}
		id += q.Increment
	}
	return "", ""
}

// sqlLiteral is s as an SQL string literal.
func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// checkRows finds rows goose would misread: goose's Provider counts a version as
// applied if any row exists, while old goose recorded rollbacks as is_applied=false
// rows; duplicate rows make a rollback run the same Down twice.
func checkRows(st *State) error {
	if !st.Exists {
		return nil
	}
	table := st.Qualified()
	if len(st.Rows) == 0 {
		return refuse(ErrInconsistentTable,
			fmt.Sprintf("If no migration has been applied yet, repair it with: INSERT INTO %s (version_id, is_applied) VALUES (0, true); otherwise insert one row per applied version (INSERT INTO %s (version_id, is_applied) VALUES (0, true), (1, true), ...;)", table, table),
			"the version table %s is empty: goose writes a version 0 row when it creates the table, so its rows were deleted and the applied versions are unknown", table)
	}
	byVer := map[int64][]Row{}
	var versions []int64
	for _, r := range st.Rows {
		if _, ok := byVer[r.Version]; !ok {
			versions = append(versions, r.Version)
		}
		byVer[r.Version] = append(byVer[r.Version], r)
	}
	slices.Sort(versions)
	var problems, repair []string
	rolledBack := false
	for _, v := range versions {
		rs := byVer[v]
		latest := rs[len(rs)-1]
		switch {
		case !latest.Applied && v == 0:
			problems = append(problems, fmt.Sprintf("version 0 has is_applied=false (row id %d)", latest.ID))
			repair = append(repair, fmt.Sprintf("DELETE FROM %s WHERE version_id = 0;", table),
				fmt.Sprintf("INSERT INTO %s (version_id, is_applied) VALUES (0, true);", table))
		case !latest.Applied:
			rolledBack = true
			problems = append(problems, fmt.Sprintf("version %d's latest row (id %d) has is_applied=false, an old goose rollback record that goose now reads as applied", v, latest.ID))
			repair = append(repair, fmt.Sprintf("DELETE FROM %s WHERE version_id = %d;", table, v))
			if _, ok := st.Sums[v]; ok && st.sumsUsable() { // rolled back: its record goes too
				repair = append(repair, fmt.Sprintf("DELETE FROM %s WHERE version = %d;", st.sumsTable(), v))
			}
		case len(rs) > 1:
			ids := make([]string, len(rs))
			for i, r := range rs {
				ids[i] = strconv.FormatInt(r.ID, 10)
			}
			problems = append(problems, fmt.Sprintf("version %d has %d rows (ids %s) where goose expects one", v, len(rs), strings.Join(ids, ", ")))
			repair = append(repair, fmt.Sprintf("DELETE FROM %s WHERE version_id = %d AND id <> %d;", table, v, latest.ID))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	fix := "Repair it in one transaction: BEGIN; " + strings.Join(repair, " ") + " COMMIT;"
	if rolledBack {
		fix += " (deleting a rolled-back version's rows makes it pending again; if its changes are in fact in place, delete only its is_applied=false rows instead)"
	}
	return refuse(ErrInconsistentTable, fix, "the version table %s is inconsistent: %s", table, strings.Join(problems, "; "))
}

func unknownVersion(flag string, v int64, src Sources, dir string) error {
	return refuse(ErrUnknownVersion,
		fmt.Sprintf("Use one of the versions in %s (%s)", dir, summarizeVersions(src.Versions())),
		"%s %d is not a migration in %s", flag, v, dir)
}

func summarizeVersions(vs []int64) string {
	if len(vs) > 8 {
		return joinVersions(vs[:3], ", ") + ", ..., " + joinVersions(vs[len(vs)-3:], ", ")
	}
	return joinVersions(vs, ", ")
}

func joinVersions(vs []int64, sep string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(s, sep)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// What --risk-policy makes of error-level risks in pending statements.
const (
	RiskWarn = "warn" // log and record them
	RiskFail = "fail" // also exit 1, unless the statement waives the rule
	RiskOff  = "off"  // no analysis, no risks result (a second plan, e.g. the exit handler's recheck)
)

// allowComment waives rules for one statement: -- chartreuse:allow rule[, rule...]
var allowComment = regexp.MustCompile(`--\s*chartreuse:allow\s+([a-z0-9-]+(?:[\s,]+[a-z0-9-]+)*)`)

// allowedRules are the rule names that start an allow comment's list; the
// first word that names no rule ends it, so the prose after the list ("but
// not alter-column-type") waives nothing.
func allowedRules(list string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if sqlrisk.RuleByName(w) == nil {
			break
		}
		out = append(out, w)
	}
	return out
}

// lintPending analyses every statement of the pending migrations (sqlrisk):
// one log line per risk, and the risks for the result. Only read-only catalog
// queries are made. The parser is started here, so a plan with nothing
// pending never pays for it. With --risk-policy=fail, an error-level risk no
// allow comment waives is a permanent error (exit 1) naming each one.
func (m *Migrator) lintPending(ctx context.Context, src Sources, plan *Plan) ([]sqlrisk.Risk, error) {
	if m.Opts.RiskPolicy == RiskOff {
		return nil, nil
	}
	risks := []sqlrisk.Risk{}
	if len(plan.Pending) == 0 {
		return risks, nil
	}
	redact := m.Redact
	if redact == nil {
		redact = func(s string) string { return s }
	}
	if limit := memoryLimit(); limit < sqlrisk.ParserMemory/10*9 {
		// Starting the parser here would get the step killed (exit 137) rather
		// than tell anything: say so instead, as a risk of its own.
		first, _ := src.Get(plan.Pending[0])
		r := sqlrisk.Risk{File: first.File, Rule: sqlrisk.NotAnalysed, Level: sqlrisk.LevelError, SizeBytes: -1, Size: sqlrisk.HumanSize(-1),
			What:   fmt.Sprintf("the pending statements were not analysed for lock risks: starting PostgreSQL's parser takes about 270 MiB, and this step may use %s (90%% of its container's memory limit, or GOMEMLIMIT)", sqlrisk.HumanSize(limit)),
			Advice: fmt.Sprintf("Give the plan step a memory limit of at least %dMi (the plan template's or Task's resources)", sqlrisk.ParserMemory>>20)}
		m.Log.Warn(fmt.Sprintf("risk %s [%s] %s: %s. %s", r.Rule, r.Level, r.File, r.What, r.Advice), "rule", r.Rule, "level", string(r.Level))
		risks = append(risks, r)
		return risks, m.riskPolicy(risks)
	}
	start := time.Now()
	if !sqlrisk.ParserStarted() {
		// Start the parser before any file is read, and give its compile's
		// garbage (most of a ~270 MiB peak; about 10 MiB stays) back at once:
		// a large pending file then never sits beside that peak.
		if err := sqlrisk.StartParser(); err != nil {
			first, _ := src.Get(plan.Pending[0])
			r := sqlrisk.Risk{File: first.File, Rule: sqlrisk.NotAnalysed, Level: sqlrisk.LevelError, SizeBytes: -1, Size: sqlrisk.HumanSize(-1),
				What: "the pending statements were not analysed for lock risks: the SQL parser did not start: " + err.Error(), Advice: "Report this; --risk-policy=warn lets the run go on"}
			m.Log.Warn(fmt.Sprintf("risk %s [%s] %s: %s. %s", r.Rule, r.Level, r.File, r.What, r.Advice), "rule", r.Rule, "level", string(r.Level))
			return append(risks, r), m.riskPolicy(append(risks, r))
		}
		debug.FreeOSMemory()
		m.Log.Info("SQL parser started for the risk analysis", "duration", time.Since(start).Round(time.Millisecond).String())
	}
	analysed := 0
	for _, v := range plan.Pending {
		s, _ := src.Get(v)
		p, err := parseMigration(ctx, m.FS, s.File, v, true)
		if err != nil {
			return risks, err // preparse accepted it a moment ago
		}
		// Lines and allow comments are looked up only for a file with risks:
		// locating statements reads and parses the file again, which a large
		// data migration (rows, not schema) should not pay.
		type found struct {
			stmt  int
			risks []sqlrisk.Risk
		}
		var fileRisks []found
		for i, stmt := range p.Statements {
			f, err := sqlrisk.Analyze(ctx, m.DB, sqlrisk.Statement{File: s.File, SQL: stmt, InTx: p.UseTx})
			if err != nil {
				if inner := errors.Unwrap(err); inner != nil {
					err = inner // Analyze's file:line prefix has no line here
				}
				fileRisks = append(fileRisks, found{i, []sqlrisk.Risk{{File: s.File, Rule: sqlrisk.NotParsed, Level: sqlrisk.LevelError, SizeBytes: -1, Size: sqlrisk.HumanSize(-1),
					What:   "the statement was not analysed for lock risks: the SQL parser (PostgreSQL 17's grammar) rejects it: " + redact(err.Error()),
					Advice: "If PostgreSQL runs it, double-quote the name the newer grammar reserves (e.g. \"system_user\"); otherwise fix the statement"}}})
				continue
			}
			analysed++
			if len(f.Risks) > 0 {
				fileRisks = append(fileRisks, found{i, f.Risks})
			}
		}
		if len(fileRisks) == 0 {
			continue
		}
		lines := statementLines(ctx, m.FS, s.File, v, true)
		content, _ := fs.ReadFile(m.FS, s.File)
		text := strings.Split(string(content), "\n")
		for _, fr := range fileRisks {
			line, allow := 0, []string(nil)
			if fr.stmt < len(lines) {
				line = lines[fr.stmt]
				// The statement's own lines and the comment lines just above it,
				// back to the end of the statement before.
				from := 0
				if fr.stmt > 0 {
					from = lines[fr.stmt-1] - 1 + strings.Count(strings.TrimSpace(p.Statements[fr.stmt-1]), "\n") + 1
				}
				to := line + strings.Count(strings.TrimSpace(p.Statements[fr.stmt]), "\n")
				for _, l := range text[min(from, len(text)):min(to, len(text))] {
					for _, mm := range allowComment.FindAllStringSubmatch(l, -1) {
						allow = append(allow, allowedRules(mm[1])...)
					}
				}
			}
			for _, r := range fr.risks {
				r.Line = line
				r.Allowed = slices.Contains(allow, r.Rule)
				r.Table = redact(r.Table)
				risks = append(risks, r)
				if r.Rule == sqlrisk.NotParsed {
					m.Log.Warn(fmt.Sprintf("risk %s [%s] %s:%d: %s. %s", r.Rule, r.Level, r.File, r.Line, r.What, r.Advice), "file", r.File, "line", r.Line, "rule", r.Rule, "level", string(r.Level))
					continue
				}
				m.Log.Warn(riskLine(r), "file", r.File, "line", r.Line, "rule", r.Rule, "level", string(r.Level),
					"kind", r.Kind, "lock", r.Lock, "table", r.Table, "size", r.Size, "allowed", r.Allowed)
			}
		}
	}
	m.Log.Info("pending statements analysed for risks", "statements", analysed, "risks", len(risks),
		"duration", time.Since(start).Round(time.Millisecond).String())
	return risks, m.riskPolicy(risks)
}

// memoryLimit is the Go runtime's memory limit (pkg/step sets it to 90% of
// the container's); a variable for tests.
var memoryLimit = func() int64 { return debug.SetMemoryLimit(-1) }

// riskPolicy is --risk-policy=fail's verdict on the risks.
func (m *Migrator) riskPolicy(risks []sqlrisk.Risk) error {
	if m.Opts.RiskPolicy != RiskFail {
		return nil
	}
	var blocking []string
	for _, r := range risks {
		if r.Rule == sqlrisk.NotAnalysed {
			return failure.Permanentf("--risk-policy=fail: %s. %s, or run the plan with --risk-policy=warn", r.What, r.Advice)
		}
		if r.Rule == sqlrisk.NotParsed {
			return failure.Permanentf("--risk-policy=fail: %s:%d: %s. %s, or run the plan with --risk-policy=warn", r.File, r.Line, r.What, r.Advice)
		}
		if r.Level == sqlrisk.LevelError && !r.Allowed {
			blocking = append(blocking, fmt.Sprintf("%s:%d %s", r.File, r.Line, r.Rule))
		}
	}
	if len(blocking) > 0 {
		return failure.Permanentf("--risk-policy=fail: %d error-level %s in the pending migrations (%s): change the %s as each risk's advice says, or, where the risk is accepted (e.g. the application is stopped for the run), put -- chartreuse:allow <rule> on the statement",
			len(blocking), plural(len(blocking), "risk", "risks"), strings.Join(blocking, ", "), plural(len(blocking), "statement", "statements"))
	}
	return nil
}

// riskLine is a risk as one readable sentence.
func riskLine(r sqlrisk.Risk) string {
	effect := ""
	switch {
	case r.Rewrites:
		effect = ", rewriting it"
	case r.Scans:
		effect = ", reading all of it"
	}
	lock := "no lock"
	if r.Lock != "" {
		lock = r.Lock
	}
	allowed := ""
	if r.Allowed {
		allowed = " (allowed by its chartreuse:allow comment)"
	}
	return fmt.Sprintf("risk %s [%s] %s:%d: %s takes %s on %s (%s)%s%s. %s", r.Rule, r.Level, r.File, r.Line, r.Kind, lock, r.Table, r.Size, effect, allowed, r.Advice)
}

// maxRisksResult bounds the risks result: Tekton carries a Task's results in
// its container's termination message, 4096 bytes for all of them, and fails
// the TaskRun beyond.
const maxRisksResult = 2000

// RisksResult is what the risks result holds: every risk while they fit in
// maxRisksResult bytes of JSON; beyond, first without their "what" (the rule's
// page says it), then the first ones that fit and a last entry, rule
// "more-in-log", counting the others (every risk has its log line).
func RisksResult(risks []sqlrisk.Risk) []sqlrisk.Risk {
	size := func(rs []sqlrisk.Risk) int { b, _ := json.Marshal(rs); return len(b) }
	if size(risks) <= maxRisksResult {
		return risks
	}
	short := make([]sqlrisk.Risk, len(risks))
	for i, r := range risks {
		r.What = ""
		short[i] = r
	}
	if size(short) <= maxRisksResult {
		return short
	}
	more := func(n int) sqlrisk.Risk {
		return sqlrisk.Risk{Rule: "more-in-log", Level: sqlrisk.LevelWarning, SizeBytes: -1, Size: sqlrisk.HumanSize(-1),
			What: fmt.Sprintf("%d more %s: see the plan's log, one line each", n, plural(n, "risk", "risks"))}
	}
	kept := []sqlrisk.Risk{}
	for i, r := range short {
		if size(append(slices.Clone(kept), r, more(len(short)-i-1))) > maxRisksResult {
			return append(kept, more(len(short)-i))
		}
		kept = append(kept, r)
	}
	return kept
}
