package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// The dirty record. A migration without a transaction cannot be undone once one
// of its statements has run, so before the first one runs a row is committed in
// a table next to goose's version table (<table>_dirty, same schema; goose's own
// table is never changed in shape). The row counts the statements that
// completed and is deleted, with the version row's write, in the transaction
// that ends the migration. A row that remains means the migration stopped
// partway, whatever stopped it (an error, SIGTERM, kill -9, a lost session): every
// later run refuses, --plan included, until an operator settles it with
// --resolve VERSION --as applied|not-applied.

// DirtyRow is a migration that stopped partway.
type DirtyRow struct {
	Version   int64
	Direction string // "up" or "down"
	File      string
	Done      int // statements that completed
	Total     int
	StartedAt time.Time
	RunID     string // run and pod that ran it (dirtyRunID)
	LastError string // SQLSTATE and message, redacted; "" when the process died first
}

// dirtyName is the dirty table's name for a version table name.
func dirtyName(table string) string { return table + "_dirty" }

func (s *State) dirtyTable() string { return qualify(s.Schema, dirtyName(s.Name)) }

// dirtyColumns are the dirty table's columns and types, as createDirtySQL
// makes them; dirtyFilled the ones every INSERT of a dirty row fills.
var (
	dirtyColumns = []struct{ name, typ string }{
		{"version", "bigint"}, {"direction", "text"}, {"file", "text"}, {"statements_done", "integer"},
		{"statements_total", "integer"}, {"started_at", "timestamp with time zone"}, {"run_id", "text"}, {"last_error", "text"},
	}
	dirtyFilled = []string{"version", "direction", "file", "statements_done", "statements_total", "run_id"}
)

// dirtyProblem says why an existing relation cannot be the dirty table; "" if
// it can. Checked before anything is created: another tool's table found only
// when a migration without a transaction starts would stop the run after the
// version and checksum tables were created, and fail every later one on
// reading it. It judges the relation Inspect found (DirtyKind); one this run
// created, or a State built without it, is taken as the step's own.
func (s *State) dirtyProblem() string {
	if !s.DirtyExists || s.DirtyKind == "" {
		return ""
	}
	if s.DirtyKind != "r" && s.DirtyKind != "p" {
		return fmt.Sprintf("it is not a table (relkind %q)", s.DirtyKind)
	}
	var missing, probs []string
	for _, c := range dirtyColumns {
		got, ok := s.DirtyTypes[c.name]
		switch {
		case !ok:
			missing = append(missing, c.name)
		case got != c.typ:
			probs = append(probs, fmt.Sprintf("column %s is %s, not %s", c.name, got, c.typ))
		}
	}
	if len(missing) > 0 {
		return "it has no column " + strings.Join(missing, ", ")
	}
	if len(s.DirtyRequired) > 0 {
		probs = append(probs, "column "+strings.Join(s.DirtyRequired, ", ")+" must be filled (NOT NULL without a default)")
	}
	return strings.Join(probs, "; ")
}

// readDirtySettled reads the dirty rows so that a row is reported stopped
// partway only if it outlived a moment when no other session held the lock:
// rows, then the lock, then rows again, keeping the rows read both times. A row
// written by a migrator that holds the lock, or deleted by one that finished
// meanwhile, is never mistaken for a stopped one. (pg_locks is read live, rows
// from a snapshot, so one statement could not tell the two apart.) When the
// lock is held, LockHeldElsewhere says the rows may be in progress.
func readDirtySettled(ctx context.Context, q Querier, st *State) error {
	if err := readDirty(ctx, q, st); err != nil || len(st.Dirty) == 0 {
		return err
	}
	held, err := lockHeldElsewhere(ctx, q)
	if err != nil {
		return fmt.Errorf("checking the migration lock: %w", err)
	}
	st.LockHeldElsewhere = held
	if held {
		return nil
	}
	first := st.Dirty
	st.Dirty = nil
	if err := readDirty(ctx, q, st); err != nil {
		return err
	}
	st.Dirty = slices.DeleteFunc(st.Dirty, func(d DirtyRow) bool {
		return !slices.ContainsFunc(first, func(f DirtyRow) bool { return f.Version == d.Version && f.StartedAt.Equal(d.StartedAt) })
	})
	return nil
}

func lockHeldElsewhere(ctx context.Context, q Querier) (bool, error) {
	var held bool
	err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295))`, pgx.QueryExecModeExec, LockID).Scan(&held)
	return held, err
}

func readDirty(ctx context.Context, q Querier, st *State) error {
	rows, err := q.QueryContext(ctx, `SELECT version, direction, file, statements_done, statements_total, started_at, run_id, last_error FROM `+
		st.dirtyTable()+` ORDER BY version`, pgx.QueryExecModeExec)
	if err != nil {
		return fmt.Errorf("reading the dirty record %s: %w", st.dirtyTable(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var d DirtyRow
		if err := rows.Scan(&d.Version, &d.Direction, &d.File, &d.Done, &d.Total, &d.StartedAt, &d.RunID, &d.LastError); err != nil {
			return fmt.Errorf("reading the dirty record %s: %w", st.dirtyTable(), err)
		}
		st.Dirty = append(st.Dirty, d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the dirty record %s: %w", st.dirtyTable(), err)
	}
	return nil
}

// createDirtySQL creates the dirty table; run under the migration lock.
func (s *State) createDirtySQL() string {
	return `CREATE TABLE IF NOT EXISTS ` + s.dirtyTable() + ` (
	version bigint PRIMARY KEY,
	direction text NOT NULL CHECK (direction IN ('up', 'down')),
	file text NOT NULL,
	statements_done integer NOT NULL,
	statements_total integer NOT NULL,
	started_at timestamptz NOT NULL DEFAULT now(),
	run_id text NOT NULL DEFAULT '',
	last_error text NOT NULL DEFAULT ''
)`
}

// describe is one dirty row for a message.
func (d DirtyRow) describe(lines []int) string {
	verb := "applying"
	if d.Direction == "down" {
		verb = "rolling back"
	}
	next := d.Done + 1
	at := ""
	if d.Done < len(lines) {
		at = fmt.Sprintf(" (line %d)", lines[d.Done])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "migration %d (%s) stopped partway while %s it", d.Version, d.File, verb)
	if d.RunID != "" {
		fmt.Fprintf(&b, " in %s", d.RunID)
	}
	fmt.Fprintf(&b, " at %s: ", d.StartedAt.UTC().Format(time.RFC3339))
	switch {
	case d.Done >= d.Total:
		fmt.Fprintf(&b, "all %d statements completed but the version row was not written", d.Total)
	case d.Done == 0:
		fmt.Fprintf(&b, "statement 1 of %d%s may have partly run, none completed", d.Total, at)
	default:
		fmt.Fprintf(&b, "statements 1-%d of %d completed, statement %d%s may have partly run, the rest did not run", d.Done, d.Total, next, at)
	}
	if d.LastError != "" {
		b.WriteString("; it failed with: " + d.LastError)
	}
	return b.String()
}

// Resolution is how an operator settles a dirty migration.
type Resolution string

const (
	// ResolvedApplied: the migration's changes are all in place; its version row
	// is (up) or stays (down) in the version table.
	ResolvedApplied Resolution = "applied"
	// ResolvedNotApplied: none of its changes are in place; its version row is
	// absent afterwards, so the next run applies it again.
	ResolvedNotApplied Resolution = "not-applied"
)

// resolveSQL settles version v ($1) in one statement: the version row as the
// operator says, and the dirty row gone; not applied, the version's checksum
// row goes too when it has one (a rollback stopped partway still has it), as
// a rollback that completes deletes it, so the next run applies the version
// again instead of refusing it as recorded. The caller holds the migration
// lock, under which s was read.
func (s *State) resolveSQL(as Resolution, v int64) string {
	table := s.Qualified()
	clear := `DELETE FROM ` + s.dirtyTable() + ` WHERE version = $1`
	if as == ResolvedApplied {
		return `WITH d AS (` + clear + ` RETURNING version)
INSERT INTO ` + table + ` (version_id, is_applied) SELECT version, true FROM d
WHERE NOT EXISTS (SELECT FROM ` + table + ` WHERE version_id = $1)`
	}
	q := `WITH d AS (` + clear + ` RETURNING version)`
	if _, recorded := s.Sums[v]; recorded {
		q += `,
s AS (DELETE FROM ` + s.sumsTable() + ` WHERE version IN (SELECT version FROM d))`
	}
	return q + `
DELETE FROM ` + table + ` WHERE version_id IN (SELECT version FROM d)`
}

// resolve settles the dirty record of --resolve's version as --as says, under the
// migration lock, in one statement, and applies nothing.
func (m *Migrator) resolve(ctx context.Context, src Sources) (*Report, error) {
	v, as := m.Opts.Resolve.Value, Resolution(m.Opts.ResolveAs)
	lk, err := acquireLock(ctx, m.DB, m.Opts.LockWait, m.Log, m.Origins)
	if err != nil {
		return nil, err
	}
	defer lk.release(ctx)
	st, err := Inspect(ctx, lk.conn, m.Opts.Table)
	if err != nil {
		return nil, dbconn.Classify(fmt.Errorf("inspecting the database: %w", err))
	}
	if err := checkTable(st, Request{Mode: ModeUp}); err != nil {
		return nil, failure.AsPermanent(explainRoleDefault(st, err))
	}
	var row *DirtyRow
	for i := range st.Dirty {
		if st.Dirty[i].Version == v {
			row = &st.Dirty[i]
		}
	}
	if row == nil && len(st.Dirty) == 0 && st.Exists && settledAs(st, src, v, as) {
		// The record is gone and the version table says what --as asks: this
		// resolution (or the same one before, whose commit's answer was lost)
		// already went through, so a rerun succeeds without changing anything.
		m.Log.Info("nothing to resolve: no migration is recorded as stopped partway, and the version is already recorded as --as says",
			"version", v, "as", string(as))
		return resolvedReport(st, src, v, as), nil
	}
	if row == nil {
		dirty := make([]int64, len(st.Dirty))
		for i, d := range st.Dirty {
			dirty[i] = d.Version
		}
		what := "no migration is recorded as stopped partway"
		if len(dirty) > 0 {
			what = "the migrations recorded as stopped partway are " + joinVersions(dirty, ", ")
		}
		return nil, failure.AsPermanent(refuse(ErrNotDirty, "Nothing was changed; check the version (SELECT * FROM "+st.dirtyTable()+";)",
			"--resolve %d: %s", v, what))
	}
	if !st.Exists {
		return nil, failure.AsPermanent(refuse(ErrDirty, "Nothing was changed."+missingVersionTable(st),
			"--resolve %d: the version table %s does not exist", v, st.Qualified()))
	}
	if _, ok := src.Get(v); !ok && as == ResolvedApplied {
		return nil, failure.AsPermanent(refuse(ErrUnknownVersion, "Resolve it with the image that contains it, or --as not-applied",
			"--resolve %d --as applied: the migration is not in %s, so a later run would refuse it as unknown", v, m.Opts.Dir))
	}
	if as == ResolvedApplied {
		if err := checkRecordable(st, []int64{v}); err != nil {
			return nil, failure.AsPermanent(err)
		}
	}
	if _, recorded := st.Sums[v]; recorded && as == ResolvedNotApplied && !st.SumsWritable {
		return nil, failure.AsPermanent(refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it: GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s; or run with --role set to the table's owner. Nothing was changed", st.sumsTable(), qualify("", st.CurrentUser)),
			"--resolve %d --as not-applied: %s cannot delete the version's checksum row from %s, and with it left there the next run would refuse the version as recorded applied", v, st.CurrentUser, st.sumsTable()))
	}
	if _, err := lk.conn.ExecContext(ctx, st.resolveSQL(as, v), pgx.QueryExecModeExec, v); err != nil {
		if dbconn.Kind(err) == failure.Transient {
			// The statement commits itself: lost with its session, its outcome is unknown.
			return nil, failure.AsTransient(fmt.Errorf("resolving migration %d: whether it committed is unknown; run the same --resolve again, which finds it settled or settles it: %w", v, err))
		}
		return nil, dbconn.Classify(fmt.Errorf("resolving migration %d: %w", v, err))
	}
	m.Log.Info("resolved a migration that had stopped partway", "version", v, "file", row.File, "direction", row.Direction,
		"as", string(as), "statements-done", row.Done, "statements-total", row.Total)
	st, err = Inspect(ctx, lk.conn, m.Opts.Table)
	if err != nil {
		return nil, dbconn.Classify(fmt.Errorf("inspecting the database: %w", err))
	}
	return resolvedReport(st, src, v, as), nil
}

// settledAs reports whether the version table already records v as as says:
// applied, it has a row for v; not applied, it has none. v must be one of the
// files, so that a mistyped version is still refused.
func settledAs(st *State, src Sources, v int64, as Resolution) bool {
	recorded := slices.ContainsFunc(st.Rows, func(r Row) bool { return r.Version == v })
	_, known := src.Get(v)
	return known && recorded == (as == ResolvedApplied)
}

// resolvedReport is --resolve's report from the state read after it.
func resolvedReport(st *State, src Sources, v int64, as Resolution) *Report {
	rep := &Report{Mode: ModeResolve}
	for _, r := range st.Rows {
		rep.Current = max(rep.Current, r.Version)
	}
	rep.Target = rep.Current
	if as == ResolvedNotApplied {
		if _, ok := src.Get(v); ok {
			// Pending again: the next run applies it.
			rep.Pending = []int64{v}
			rep.Target = max(rep.Target, v)
		}
	}
	return rep
}
