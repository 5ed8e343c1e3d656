package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// The checksum record. goose keeps no checksum of what it applied, so an applied
// migration edited afterwards (or removed) goes unnoticed. This step keeps the
// sha256 of every file it applies in a table next to goose's version table
// (<table>_sums, same schema; goose's own table is never changed, so the goose
// CLI keeps working), one row per applied version, and refuses to run (--plan
// included) while an applied migration's file differs from its record.
//
//   - A transactional migration's row is written in the transaction that writes
//     its version row; one without a transaction gets its row in the statement
//     that writes its version row and clears its dirty record; a rollback deletes
//     the row with the version row. Every write is guarded by the lock.
//   - Each row names goose's version row it belongs to (version_row_id). A
//     version whose row was written again since (rolled back and applied again
//     by the goose CLI, or the version table repaired by hand after its rows
//     were deleted) is still compared with its record: an unchanged file only
//     moves the record to the new row (keeping when it was applied, recorded
//     now as backfilled by the run that moved it); a different one is
//     refused like an edit, since nothing tells which file the new row applied.
//   - An applied version without a row (a database migrated before checksums
//     were kept, a version applied by the goose CLI, or settled with --resolve)
//     gets the current file's checksum, under the lock, said in one log line.
//   - A pending version with a record was applied before and its version row
//     deleted since: rolled back by the goose CLI (its Down ran), or deleted by
//     hand (its changes are still there). Nothing tells which, so the run
//     refuses rather than risk applying it twice; the refusal gives the repair
//     for each case.
//   - An edited file is accepted deliberately, version by version
//     (--accept-changed), which records its new checksum and keeps the old one
//     (previous_sha256).

// ErrRecordedNotApplied: a pending version has a checksum record, so it was
// applied before and its version row was deleted since.
var ErrRecordedNotApplied = errors.New("pending migration recorded as applied")

// SumRow is the recorded checksum of one applied version.
type SumRow struct {
	Version      int64
	VersionRowID int64  // id of goose's row for the version the checksum was recorded for
	File         string // file name when recorded
	SHA256       string
	Recorded     string // applied, backfilled or accepted
	RunID        string // the run that recorded it (--run-id)
	// Relinked: the version's record belonged to an earlier version row and
	// matches the file; settling moves it to VersionRowID as backfilled by this run.
	Relinked bool
}

// ChangedFile is an applied migration whose file differs from its record.
type ChangedFile struct {
	Version      int64
	File         string // the file now
	RecordedFile string // the file name recorded
	Recorded     string // recorded sha256
	Current      string // the file's sha256 now
	VersionRowID int64  // id of goose's row for the version now
	// Rewritten: the record belongs to an earlier version row of the version.
	Rewritten bool
}

func (c ChangedFile) describe() string {
	name := c.File
	if c.RecordedFile != "" && c.RecordedFile != c.File {
		name += ", applied as " + c.RecordedFile
	}
	if c.Rewritten {
		return fmt.Sprintf("migration %d (%s) differs from the checksum recorded when it was applied, and its version row was written again since (rolled back and applied again by another tool, or the version table repaired by hand): recorded sha256 %s, the file's sha256 now %s", c.Version, name, c.Recorded, c.Current)
	}
	return fmt.Sprintf("migration %d (%s) was edited after it was applied: recorded sha256 %s, the file's sha256 now %s", c.Version, name, c.Recorded, c.Current)
}

// sumsName is the checksum table's name for a version table name; it fits in
// the room dbconn.ValidVersionTable leaves for the dirty table's suffix.
func sumsName(table string) string { return table + "_sums" }

func (s *State) sumsTable() string { return qualify(s.Schema, sumsName(s.Name)) }

// SumsExists reports whether a relation named like the checksum table exists.
func (s *State) SumsExists() bool { return s.SumsKind != "" }

// sumsColumns are the checksum table's columns, as createSumsSQL makes them,
// and sumsTypes their types.
var (
	sumsColumns = []string{"version", "version_row_id", "file", "sha256", "recorded", "applied_at", "duration_ms",
		"run_id", "role", "login", "recorded_at", "previous_sha256"}
	sumsTypes = map[string]string{"version": "bigint", "version_row_id": "bigint", "file": "text", "sha256": "text",
		"recorded": "text", "applied_at": "timestamp with time zone", "duration_ms": "bigint", "run_id": "text",
		"role": "text", "login": "text", "recorded_at": "timestamp with time zone", "previous_sha256": "text"}
)

// sumsProblem says why an existing relation cannot be the checksum table; "" if it can.
func (s *State) sumsProblem() string {
	if !s.SumsExists() {
		return ""
	}
	if s.SumsKind != "r" && s.SumsKind != "p" {
		return fmt.Sprintf("it is not a table (relkind %q)", s.SumsKind)
	}
	var missing []string
	for _, c := range sumsColumns {
		if !slices.Contains(s.SumsColumns, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return "it has no column " + strings.Join(missing, ", ")
	}
	// What the writes need, checked before anything runs: a write that failed
	// on it after a migration without a transaction would leave that migration
	// recorded as stopped partway.
	var probs []string
	for _, c := range sumsColumns {
		if got := s.SumsTypes[c]; got != sumsTypes[c] {
			probs = append(probs, fmt.Sprintf("column %s is %s, not %s", c, got, sumsTypes[c]))
		}
	}
	if !s.SumsUnique {
		probs = append(probs, "no primary key or unique index on version alone")
	}
	if len(s.SumsRequired) > 0 {
		probs = append(probs, "column "+strings.Join(s.SumsRequired, ", ")+" must be filled (NOT NULL without a default)")
	}
	return strings.Join(probs, "; ")
}

// versionRowIDs maps each applied version to the id of its latest version row.
func (s *State) versionRowIDs() map[int64]int64 {
	ids := map[int64]int64{}
	for _, r := range s.Rows { // in id order: the latest row wins
		ids[r.Version] = r.ID
	}
	return ids
}

// sumsUsable: the checksum table exists, is one, and can be read.
func (s *State) sumsUsable() bool { return s.SumsExists() && s.sumsProblem() == "" && s.SumsReadable }

// createSumsSQL creates the checksum table; run under the migration lock, on the
// lock's session after SET ROLE, so that it belongs to --role.
func (s *State) createSumsSQL() string {
	return `CREATE TABLE IF NOT EXISTS ` + s.sumsTable() + ` (
	version bigint PRIMARY KEY,
	version_row_id bigint NOT NULL,
	file text NOT NULL,
	sha256 text NOT NULL,
	recorded text NOT NULL CHECK (recorded IN ('applied', 'backfilled', 'accepted')),
	applied_at timestamptz,
	duration_ms bigint,
	run_id text NOT NULL,
	role text NOT NULL,
	login text NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	previous_sha256 text
)`
}

// appliedSQL records version $1 applied, in one statement: goose's version row
// (only while the lock is held, and only if none exists) and the checksum row
// that belongs to it ($2 file, $3 sha256, $4 duration in ms, $5 run id). With
// clearDirty the version's dirty record goes too. It changes no row when the
// version row was not written.
func (s *State) appliedSQL(clearDirty bool) string {
	q := `WITH v AS (INSERT INTO ` + s.Qualified() + ` (version_id, is_applied) SELECT $1::bigint, true WHERE ` + heldSQL +
		` AND NOT EXISTS (SELECT FROM ` + s.Qualified() + ` WHERE version_id = $1::bigint) RETURNING id, version_id)`
	if clearDirty {
		q += `,
d AS (DELETE FROM ` + s.dirtyTable() + ` WHERE version IN (SELECT version_id FROM v))`
	}
	return q + `
INSERT INTO ` + s.sumsTable() + ` AS t (version, version_row_id, file, sha256, recorded, applied_at, duration_ms, run_id, role, login, recorded_at)
SELECT version_id, id, $2::text, $3::text, 'applied', clock_timestamp(), $4::bigint, $5::text, current_user, session_user, clock_timestamp() FROM v
ON CONFLICT (version) DO UPDATE SET version_row_id = EXCLUDED.version_row_id, file = EXCLUDED.file, sha256 = EXCLUDED.sha256,
	recorded = EXCLUDED.recorded, applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms, run_id = EXCLUDED.run_id,
	role = EXCLUDED.role, login = EXCLUDED.login, recorded_at = EXCLUDED.recorded_at, previous_sha256 = NULL`
}

// rolledBackSQL removes version v's checksum row, then its version row (guarded
// by the lock): the last statement's count is the version row's.
func (s *State) rolledBackSQL(v int64) string {
	return `DELETE FROM ` + s.sumsTable() + ` WHERE version = ` + fmt.Sprint(v) + `;
` + versionWriteSQL(s, v, false)
}

// relinkSQL moves the records of versions whose version row was written again
// to the new rows ($1 versions, $2 the new row ids, $3 the recorded sha256s,
// which still match the files), as backfilled by this run ($4): whoever wrote
// the new row, the run named before did not (--only-this-run reads it).
const relinkSQL = `UPDATE %s AS t SET version_row_id = u.row_id, recorded = 'backfilled', run_id = $4::text,
	role = current_user, login = session_user, recorded_at = clock_timestamp()
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(version, row_id, sha256)
WHERE t.version = u.version AND t.sha256 = u.sha256 AND ` + "%s"

// backfillSQL records the current files' checksums of versions applied without
// one ($1 versions, $2 their version row ids, $3 files, $4 sha256s, $5 run id).
const backfillSQL = `INSERT INTO %s (version, version_row_id, file, sha256, recorded, run_id, role, login, recorded_at)
SELECT u.version, u.row_id, u.file, u.sha256, 'backfilled', $5::text, current_user, session_user, clock_timestamp()
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(version, row_id, file, sha256)
WHERE ` + "%s" + `
ON CONFLICT (version) DO UPDATE SET version_row_id = EXCLUDED.version_row_id, file = EXCLUDED.file, sha256 = EXCLUDED.sha256,
	recorded = EXCLUDED.recorded, applied_at = NULL, duration_ms = NULL, run_id = EXCLUDED.run_id, role = EXCLUDED.role,
	login = EXCLUDED.login, recorded_at = EXCLUDED.recorded_at, previous_sha256 = NULL`

// acceptSQL replaces the recorded checksum of edited versions that an operator
// accepted ($1 versions, $2 files, $3 new sha256s, $4 recorded sha256s, $5 run
// id, $6 the versions' row ids now), keeping the one it replaces. A sha256
// emptied by hand (NULL) was read as "", and is replaced like any other.
const acceptSQL = `UPDATE %s AS t SET previous_sha256 = t.sha256, sha256 = u.sha256, file = u.file, recorded = 'accepted',
	version_row_id = u.row_id, run_id = $5::text, role = current_user, login = session_user, recorded_at = clock_timestamp()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $6::bigint[]) AS u(version, file, sha256, old, row_id)
WHERE t.version = u.version AND coalesce(t.sha256, '') = u.old AND ` + "%s"

// checkSums compares the applied versions' files with their recorded checksums
// and fills p.Backfill and p.Accept. It refuses (ErrChanged) when an applied
// file was edited and not accepted, and when the run would need a checksum
// table it cannot create, read or write.
func checkSums(src Sources, st *State, p *Plan, req Request) error {
	table, user := st.sumsTable(), qualify("", st.CurrentUser)
	if prob := st.sumsProblem(); prob != "" {
		return refuse(ErrNotGooseTable,
			fmt.Sprintf("If it is another tool's table, rename it (ALTER TABLE %s RENAME TO %s_old;) or choose another --table: this step keeps the checksums of the applied migrations of %s in %s",
				table, sumsName(st.Name), st.Qualified(), table),
			"%s exists but is not the checksum table of %s: %s", table, st.Qualified(), prob)
	}
	grant := fmt.Sprintf("Grant it: GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s; or run with --role set to the table's owner", table, user)
	if st.SumsExists() && !st.SumsReadable {
		return refuse(ErrNoPrivilege, grant, "%s cannot read the checksum table %s", st.CurrentUser, table)
	}
	rowID := st.versionRowIDs()
	var changed []ChangedFile
	for _, v := range p.Applied {
		s, _ := src.Get(v)
		rec, ok := st.Sums[v]
		rewritten := ok && rec.VersionRowID != rowID[v]
		if !ok || (rewritten && rec.SHA256 == s.SHA256) {
			if !slices.Contains(p.Down, v) { // a version rolled back now needs no record
				p.Backfill = append(p.Backfill, SumRow{Version: v, VersionRowID: rowID[v], File: s.File, SHA256: s.SHA256, Recorded: "backfilled", Relinked: rewritten})
			}
			continue
		}
		if rec.SHA256 == s.SHA256 {
			continue
		}
		c := ChangedFile{Version: v, File: s.File, RecordedFile: rec.File, Recorded: rec.SHA256, Current: s.SHA256, VersionRowID: rowID[v], Rewritten: rewritten}
		if slices.Contains(req.AcceptChanged, v) {
			p.Accept = append(p.Accept, c)
		} else {
			changed = append(changed, c)
		}
	}
	for _, v := range req.AcceptChanged {
		if !slices.Contains(p.Applied, v) {
			return refuse(ErrUnknownVersion,
				"Name in --accept-changed only applied versions whose file was edited (the refusal that led here lists them)",
				"--accept-changed %d: version %d is not applied, so no checksum of it is recorded", v, v)
		}
	}
	if len(changed) > 0 {
		probs := make([]string, len(changed))
		versions := make([]int64, len(changed))
		rewritten := ""
		for i, c := range changed {
			probs[i], versions[i] = c.describe(), c.Version
			if c.Rewritten {
				rewritten = "If a version row was written again by the goose CLI applying the file as it is now, accepting records what it applied. "
			}
		}
		return refuse(ErrChanged,
			rewritten+fmt.Sprintf("If the edit is a mistake, restore %s as applied (from the image or commit %s applied from); if it is deliberate and the database needs nothing more from it (a comment, a fix already made by hand), accept it: rerun with --accept-changed=%s, which records the new %s (a change the database needs belongs in a new migration). The record: SELECT * FROM %s;",
				plural(len(changed), "the file", "the files"), plural(len(changed), "it was", "they were"), joinVersions(versions, ","),
				plural(len(changed), "checksum of exactly this version", "checksums of exactly these versions"), table),
			"%s", strings.Join(probs, "; "))
	}
	if err := checkRecordedPending(st, p); err != nil {
		return err
	}
	writes := len(p.Pending) > 0 || len(p.Down) > 0 || len(p.Backfill) > 0 || len(p.Accept) > 0
	if !writes || (req.Mode == ModePlan && len(p.Pending) == 0) {
		return nil
	}
	switch {
	case !st.SumsExists() && !st.CanCreate:
		return refuse(ErrNoPrivilege,
			fmt.Sprintf("Grant it (GRANT CREATE ON SCHEMA %s TO %s;), or run with --role set to the schema's owner", qualify("", st.Schema), user),
			"%s cannot create the checksum table %s, where this step records the sha256 of each migration it applies: no CREATE privilege on schema %s", st.CurrentUser, table, st.Schema)
	case st.SumsExists() && !st.SumsWritable:
		return refuse(ErrNoPrivilege, grant, "%s cannot write (INSERT, UPDATE and DELETE) the checksum table %s", st.CurrentUser, table)
	}
	return nil
}

// checkRecordedPending refuses a pending version whose checksum is recorded:
// its version row was deleted after it was applied, and applying it again is
// right only if its Down ran.
func checkRecordedPending(st *State, p *Plan) error {
	var versions []int64
	var probs []string
	for _, v := range p.Pending {
		if rec, ok := st.Sums[v]; ok {
			versions = append(versions, v)
			probs = append(probs, fmt.Sprintf("%d (%s, recorded sha256 %s)", v, rec.File, rec.SHA256))
		}
	}
	if len(versions) == 0 {
		return nil
	}
	list := joinVersions(versions, ", ")
	if !st.Exists {
		// The version table was dropped: putting rows back needs it first.
		return refuse(ErrRecordedNotApplied,
			fmt.Sprintf("If %s changes are in place, recreate it with %s rows: %s; INSERT INTO %s (version_id, is_applied) VALUES (0, true), %s; if %s rolled back before it was dropped (%s Down section ran), forget %s record: DELETE FROM %s WHERE version IN (%s);",
				plural(len(versions), "its", "their"), plural(len(versions), "its", "their"), strings.Join(strings.Fields(createVersionSQL(st)), " "), st.Qualified(), valuesApplied(versions),
				plural(len(versions), "it was", "they were"), plural(len(versions), "its", "their"), plural(len(versions), "its", "their"), st.sumsTable(), list),
			"the version table %s does not exist, but %s records %s %s as applied. The table was dropped after %s applied, and nothing tells whether %s changes are still in place: applying %s again would run %s twice if they are",
			st.Qualified(), st.sumsTable(), plural(len(versions), "migration", "migrations"), strings.Join(probs, ", "),
			plural(len(versions), "it was", "they were"), plural(len(versions), "its", "their"), plural(len(versions), "it", "them"), plural(len(versions), "it", "them"))
	}
	return refuse(ErrRecordedNotApplied,
		fmt.Sprintf("If %s rolled back (by the goose CLI: %s Down section ran), forget %s record: DELETE FROM %s WHERE version IN (%s); if %s version %s deleted by hand and %s changes are in place, put %s back: INSERT INTO %s (version_id, is_applied) VALUES %s;",
			plural(len(versions), "it was", "they were"), plural(len(versions), "its", "their"), plural(len(versions), "its", "their"),
			st.sumsTable(), list, plural(len(versions), "its", "their"), plural(len(versions), "row was", "rows were"),
			plural(len(versions), "its", "their"), plural(len(versions), "it", "them"), st.Qualified(), valuesApplied(versions)),
		"%s %s %s pending in %s but recorded as applied in %s. %s version %s deleted after %s applied, by a rollback with another tool or by hand, and nothing tells which: applying %s again would run %s twice if %s changes are still in place",
		plural(len(versions), "migration", "migrations"), strings.Join(probs, ", "), plural(len(versions), "is", "are"), st.Qualified(), st.sumsTable(),
		plural(len(versions), "Its", "Their"), plural(len(versions), "row was", "rows were"), plural(len(versions), "it was", "they were"),
		plural(len(versions), "it", "them"), plural(len(versions), "it", "them"), plural(len(versions), "its", "their"))
}

// valuesApplied is "(v1, true), (v2, true)".
func valuesApplied(versions []int64) string {
	parts := make([]string, len(versions))
	for i, v := range versions {
		parts[i] = fmt.Sprintf("(%d, true)", v)
	}
	return strings.Join(parts, ", ")
}

// SumsToWrite reports whether the run records checksums before any migration:
// versions applied without one, or edited files accepted.
func (p *Plan) SumsToWrite() bool { return len(p.Backfill) > 0 || len(p.Accept) > 0 }

// logSumsPlan says what --plan found about the checksums, changing nothing.
func (m *Migrator) logSumsPlan(st *State, p *Plan) {
	switch {
	case !st.SumsExists() && len(p.Applied) > 0:
		m.Log.Info("no checksums of the applied migrations are recorded yet, so none were compared: the first migrate records the current files' checksums",
			"table", st.sumsTable(), "applied", len(p.Applied))
	case len(p.Backfill) > 0:
		relinks, fills := splitRelinks(p.Backfill)
		if len(fills) > 0 {
			m.Log.Info("applied migrations without a recorded checksum (applied before checksums were kept, by another tool, or settled with --resolve) were not compared: migrate records their current files' checksums",
				"table", st.sumsTable(), "versions", joinVersions(sumVersions(fills), ","))
		}
		if len(relinks) > 0 {
			m.Log.Info("applied migrations whose version rows were written again since their checksums were recorded match the records: migrate moves the records to the new rows",
				"table", st.sumsTable(), "versions", joinVersions(sumVersions(relinks), ","))
		}
	}
	for _, c := range p.Accept {
		m.Log.Info("migrate would accept an edited migration (--accept-changed)", "version", c.Version, "file", c.File,
			"recorded-sha256", c.Recorded, "sha256", c.Current)
	}
}

func sumVersions(rows []SumRow) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.Version
	}
	return out
}

// needsSettle reports whether the run must create the checksum table or record
// checksums (settleSums) before its first migration's checksum row.
func needsSettle(st *State, p *Plan) bool { return !st.SumsExists() || p.SumsToWrite() }

// settleSums creates the checksum table if it is missing, and records the
// checksums of versions applied without one and the accepted edits, in the
// transaction open on the lock's session (reset to --role), every write
// guarded by the lock. It logs nothing: settled says what was done once the
// transaction has committed. The first transactional migration of a run
// carries it in its own transaction, so a run whose migration fails changes
// nothing; otherwise it has a transaction of its own (settleSumsAlone).
func (m *Migrator) settleSums(ctx context.Context, pc *pgx.Conn, st *State, p *Plan) error {
	table := st.sumsTable()
	if !st.SumsExists() {
		if _, err := pc.Exec(ctx, st.createSumsSQL()); err != nil {
			return fmt.Errorf("creating the checksum table %s: %w", table, err)
		}
	}
	runID := m.Opts.RunID
	relinks, fills := splitRelinks(p.Backfill)
	if n := len(relinks); n > 0 {
		vs, ids, sums := make([]int64, n), make([]int64, n), make([]string, n)
		for i, r := range relinks {
			vs[i], ids[i], sums[i] = r.Version, r.VersionRowID, r.SHA256
		}
		tag, err := pc.Exec(ctx, fmt.Sprintf(relinkSQL, table, heldSQL), pgx.QueryExecModeExec, vs, ids, sums, runID)
		if err == nil && tag.RowsAffected() != int64(n) {
			err = errVersionRow
		}
		if err != nil {
			return fmt.Errorf("moving in %s the checksums of versions whose version row was written again: %w", table, err)
		}
	}
	if n := len(fills); n > 0 {
		vs, ids := make([]int64, n), make([]int64, n)
		files, sums := make([]string, n), make([]string, n)
		for i, r := range fills {
			vs[i], ids[i], files[i], sums[i] = r.Version, r.VersionRowID, r.File, r.SHA256
		}
		tag, err := pc.Exec(ctx, fmt.Sprintf(backfillSQL, table, heldSQL), pgx.QueryExecModeExec, vs, ids, files, sums, runID)
		if err == nil && tag.RowsAffected() != int64(n) {
			err = errVersionRow
		}
		if err != nil {
			return fmt.Errorf("recording in %s the checksums of versions applied without one: %w", table, err)
		}
	}
	if n := len(p.Accept); n > 0 {
		vs, ids := make([]int64, n), make([]int64, n)
		files, sums, olds := make([]string, n), make([]string, n), make([]string, n)
		for i, c := range p.Accept {
			vs[i], ids[i], files[i], sums[i], olds[i] = c.Version, c.VersionRowID, c.File, c.Current, c.Recorded
		}
		tag, err := pc.Exec(ctx, fmt.Sprintf(acceptSQL, table, heldSQL), pgx.QueryExecModeExec, vs, files, sums, olds, runID, ids)
		if err == nil && tag.RowsAffected() != int64(n) {
			err = errVersionRow
		}
		if err != nil {
			return fmt.Errorf("recording in %s the checksums --accept-changed accepts: %w", table, err)
		}
	}
	return nil
}

// splitRelinks separates the records to move to a new version row from the
// ones to write.
func splitRelinks(rows []SumRow) (relinks, fills []SumRow) {
	for _, r := range rows {
		if r.Relinked {
			relinks = append(relinks, r)
		} else {
			fills = append(fills, r)
		}
	}
	return relinks, fills
}

// settleSumsAlone is settleSums in a transaction of its own: for a run with no
// migration to run, or whose first one runs without a transaction.
func (m *Migrator) settleSumsAlone(ctx context.Context, pc *pgx.Conn, st *State, p *Plan, serverVersion string) error {
	if _, err := pc.Exec(ctx, resetSQL(m.settings(), serverVersion)+";\nBEGIN"); err != nil {
		m.rollback(pc)
		return m.sessionError(ctx, pc, err)
	}
	err := m.settleSums(ctx, pc, st, p)
	if err == nil {
		_, err = pc.Exec(ctx, "COMMIT")
	}
	if err != nil {
		m.rollback(pc)
		if errors.Is(err, errVersionRow) && !pc.PgConn().IsClosed() && ctx.Err() == nil {
			return failure.AsTransient(fmt.Errorf("%w: the migration lock was released during the run (pg_advisory_unlock?); rerun", err))
		}
		return m.sessionError(ctx, pc, err)
	}
	return nil
}

// settled logs what settleSums did once it committed, updates st, and returns
// the number of rows recorded.
func (m *Migrator) settled(st *State, p *Plan) int {
	create := !st.SumsExists()
	if create {
		st.SumsKind, st.SumsColumns, st.SumsTypes, st.SumsUnique, st.SumsReadable, st.SumsWritable = "r", sumsColumns, sumsTypes, true, true, true
	}
	relinks, fills := splitRelinks(p.Backfill)
	if len(relinks) > 0 {
		m.Log.Info("the version rows of applied migrations were written again since their checksums were recorded (rolled back and applied again by another tool, or the version table repaired by hand); their files match the records, which now belong to the new rows, recorded as backfilled by this run",
			"table", st.sumsTable(), "versions", joinVersions(sumVersions(relinks), ","))
	}
	if len(fills) > 0 {
		what := "recorded the current files' checksums of applied migrations that had none (applied before checksums were kept, by another tool, or settled with --resolve)"
		if create {
			what = "created the checksum table and recorded the current files' checksums of the migrations applied before it"
		}
		m.Log.Info(what, "table", st.sumsTable(), "versions", joinVersions(sumVersions(fills), ","))
	} else if create {
		m.Log.Info("created the checksum table", "table", st.sumsTable())
	}
	for _, c := range p.Accept {
		m.Log.Info("accepted an edited migration (--accept-changed): recorded its new checksum", "version", c.Version, "file", c.File,
			"recorded-sha256", c.Recorded, "sha256", c.Current)
	}
	return len(p.Backfill) + len(p.Accept)
}

// defaultRunID is the host name (the pod's name), as scale-down records by default.
func defaultRunID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// durationMillis is d in whole milliseconds, at least 0.
func durationMillis(d time.Duration) int64 { return max(d.Milliseconds(), 0) }
