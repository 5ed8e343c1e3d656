package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// Migrator runs one migrate step against one database.
type Migrator struct {
	DB   *sql.DB // pool whose connections carry the session settings (see OpenDB)
	FS   fs.FS   // the migration directory, Opts.Dir
	Log  *slog.Logger
	Opts Options
	// Secret, when set, registers a value that must never be printed (an ENVSUB
	// file's expanded values); Redact masks the registered values in a string.
	Secret func(string)
	Redact func(string) string
	// Origins, when set, names the pod of the session holding a lock this run
	// waits for (*podaddr.Finder); nil keeps the bare client address.
	Origins Origins

	parsed map[parsedKey]bool // migrations preparse found valid
}

// Step is one migration applied or rolled back.
type Step struct {
	Version  int64
	File     string
	Duration time.Duration
}

// Report is what a run found and did. Run returns it with its error whenever the
// database could be read, so results are written for failed runs too.
type Report struct {
	Mode       Mode
	Current    int64   // highest applied version after the run
	Target     int64   // version the run migrates to
	Pending    []int64 // pending versions up to Target after the run (plan: what would be applied)
	Applied    []Step
	RolledBack []Step
	// ChecksumsRecorded counts the checksum rows the run wrote: one per migration
	// applied, versions applied without one, edits accepted.
	ChecksumsRecorded int
	// Risks are what --plan found in the pending statements (plan.go); nil
	// for the other modes.
	Risks []sqlrisk.Risk
	// NeedsDowntime is --plan's verdict on whether the application must be
	// stopped for the pending migrations (downtime.go); nil for the other modes.
	NeedsDowntime *bool
	// LockWait is how long the run waited for the migration lock (another
	// migrator held it); TableLockWait how long its migrations were seen
	// waiting for locks on tables (watch.go). Both zero for --plan.
	LockWait, TableLockWait time.Duration
	// FilesDigest is --plan's Sources.Digest up to Target, for migrate's
	// --planned-files-digest; "" for the other modes.
	FilesDigest string
}

// Run checks, locks and migrates. Errors are classified for failure.Code: refusals
// (*RefusalError) and SQL errors in migrations (*MigrationError) are permanent, as
// is a migration without a transaction that stopped partway (it leaves a dirty
// record); a busy lock (*LockBusyError), lock timeouts, interruptions of a
// transactional migration and lost connections are transient.
func (m *Migrator) Run(ctx context.Context) (*Report, error) {
	start := time.Now()
	mode := m.Opts.Mode()
	// Connecting is mostly waiting for the server: read the directory meanwhile. A
	// directory error still comes first, and the connection is then dropped unused.
	type connected struct {
		conn *sql.Conn
		err  error
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	connCh := make(chan connected, 1)
	go func() {
		c, err := m.DB.Conn(cctx)
		connCh <- connected{c, err}
	}()
	src, err := ScanDir(m.FS, m.Opts.Dir)
	if err != nil {
		cancel()
		if c := <-connCh; c.conn != nil {
			c.conn.Close()
		}
		return nil, failure.AsPermanent(err)
	}
	for _, f := range UnreadSubdirs(m.FS) {
		m.Log.Warn("a subdirectory holds files named like migrations, which are not read: only the migration directory itself is; move them into it, or point --dir at the subdirectory if they are the ones to run",
			"dir", m.Opts.Dir, "file", f)
	}
	c := <-connCh
	if c.err != nil {
		return nil, dbconn.Classify(fmt.Errorf("connecting to the database: %w", dbconn.ExplainConnect(c.err)))
	}
	if mode == ModeResolve {
		c.conn.Close()
		return m.resolve(ctx, src)
	}
	// A new connection has just proven the server answers: no ping before reading.
	conn := c.conn
	st, plan, err := m.check(ctx, conn, src)
	if err == nil && mode == ModePlan {
		// A plan judged while another migrator works would be stale before the
		// workflow acts on it (stops the application, then waits for the lock).
		err = m.refuseIfLockHeld(ctx, conn)
	}
	conn.Close()
	// A migration recorded as running while another session holds the lock is
	// judged under the lock: wait for it (--plan cannot, and exits 75).
	// Before the lock a migrator only reads: whatever it sees of another's
	// migration without a transaction is judged again under the lock.
	inProgress := (errors.Is(err, ErrInProgress) || errors.Is(err, ErrDirty)) && mode != ModePlan
	if err != nil && !inProgress {
		return nil, err
	}
	var rep *Report
	switch {
	case errors.Is(err, ErrDirty) && inProgress:
		// most often a stopped migration: the lock tells whether anyone still runs it
		m.Log.Info("a migration is recorded as stopped partway; taking the migration lock to confirm it is not still running in another session")
	case inProgress:
		m.Log.Info("a migration is in progress in another session; waiting for the migration lock to judge its outcome")
	default:
		rep = newReport(plan)
		m.Log.Info("migration plan", "mode", mode.String(), "table", st.Qualified(), "current-version", plan.Current,
			"target-version", plan.Target, "pending-versions", joinVersions(plan.Pending, ","), "roll-back-versions", joinVersions(plan.Down, ","))
		// Every file the run would apply is parsed whole before anything changes, so a
		// malformed later file stops the run before the first migration.
		if err := m.preparse(ctx, src, plan); err != nil {
			return rep, err
		}
		if mode == ModePlan {
			rep.FilesDigest = src.Digest(plan.Target)
			m.logSumsPlan(st, plan)
			risks, err := m.lintPending(ctx, src, plan) // plan.go
			rep.Risks = risks
			needs := m.needsDowntime(ctx, src, plan, risks) // downtime.go
			rep.NeedsDowntime = &needs
			return rep, err
		}
		if plan.NothingToDo() && !plan.SumsToWrite() {
			m.Log.Info("nothing to migrate", "current-version", plan.Current, "target-version", plan.Target)
			return rep, nil
		}
	}

	asked := time.Now()
	lk, err := acquireLock(ctx, m.DB, m.Opts.LockWait, m.Log, m.Origins)
	if err != nil {
		return rep, err
	}
	defer lk.release(ctx)
	lockWait := time.Since(asked)
	// Check again under the lock: another migrator may have finished meanwhile. Its
	// migrations ran on its lock's session, so once the lock was free they had
	// committed or rolled back: what is read now is final.
	st, plan, err = m.check(ctx, lk.conn, src)
	if err != nil {
		return rep, err
	}
	if rep == nil {
		m.Log.Info("migration plan", "mode", mode.String(), "table", st.Qualified(), "current-version", plan.Current,
			"target-version", plan.Target, "pending-versions", joinVersions(plan.Pending, ","), "roll-back-versions", joinVersions(plan.Down, ","))
	}
	rep = newReport(plan)
	rep.LockWait = lockWait
	if plan.NothingToDo() && !plan.SumsToWrite() {
		m.Log.Info("nothing left to migrate: another migrator got there first", "current-version", plan.Current)
		return rep, nil
	}
	if err := m.preparse(ctx, src, plan); err != nil {
		return rep, err
	}
	err = lk.conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		return m.execute(ctx, pc, st, src, plan, rep)
	})
	if err == nil {
		m.Log.Info("migration finished", "mode", mode.String(), "applied", len(rep.Applied), "rolled-back", len(rep.RolledBack),
			"current-version", rep.Current, "duration", time.Since(start).Round(time.Millisecond).String())
	}
	return rep, err
}

// check inspects the database and analyzes it against the directory.
func (m *Migrator) check(ctx context.Context, q Querier, src Sources) (*State, *Plan, error) {
	st, err := Inspect(ctx, q, m.Opts.Table)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("inspecting the database: %w", ctx.Err())
		}
		return nil, nil, dbconn.Classify(fmt.Errorf("inspecting the database: %w", err))
	}
	mode, to := m.Opts.Mode(), m.Opts.To
	planned := mode == ModeUp && m.Opts.PlannedTarget.IsSet
	if planned && (!to.IsSet || to.Value > m.Opts.PlannedTarget.Value) {
		to = m.Opts.PlannedTarget
	}
	plan, err := Analyze(src, st, Request{
		Mode: mode, To: to, DownTo: m.Opts.DownTo, Dir: m.Opts.Dir, OnlyAppliedBy: onlyAppliedBy(&m.Opts),
		AllowOutOfOrder: m.Opts.AllowOutOfOrder, AllowEmptyDatabase: m.Opts.AllowEmptyDatabase, AcceptChanged: m.Opts.AcceptChanged,
		StatementLines: func(d DirtyRow) []int { return statementLines(ctx, m.FS, d.File, d.Version, d.Direction != "down") },
	})
	if err != nil {
		return st, nil, failure.AsPermanent(err)
	}
	if planned {
		if got := src.Digest(m.Opts.PlannedTarget.Value); got != m.Opts.PlannedDigest {
			return st, nil, failure.AsPermanent(refuse(ErrPlanChanged,
				"Pin the step image by digest (image@sha256:...), or take the migrations from git-url or migrations-image, which plan pins for the whole run; then start a new run, whose plan judges the files it will apply",
				"the migrations up to version %d in %s are not the ones plan judged (files-digest %s at plan, %s now): they changed between plan and migrate, e.g. an image tag pushed again and pulled by this step's node; nothing was applied",
				m.Opts.PlannedTarget.Value, m.Opts.Dir, m.Opts.PlannedDigest, got))
		}
	}
	return st, plan, nil
}

// onlyAppliedBy is the run a rollback is limited to (--only-this-run), or "".
func onlyAppliedBy(o *Options) string {
	if o.OnlyThisRun {
		return o.RunID
	}
	return ""
}

// preparse parses every migration the plan would run, one file at a time, and
// keeps nothing of them. An ENVSUB file's expanded values become secrets.
func (m *Migrator) preparse(ctx context.Context, src Sources, plan *Plan) error {
	up := plan.Mode != ModeDown
	versions := plan.Pending
	if !up {
		versions = plan.Down
	}
	for _, v := range versions {
		key := parsedKey{v, up}
		if m.parsed[key] {
			continue // parsed before the lock was taken
		}
		s, _ := src.Get(v)
		if usesEnvsub(m.FS, s.File) && m.Secret != nil {
			for _, val := range envsubValues(m.FS, s.File) {
				m.Secret(val)
			}
		}
		p, err := parseMigration(ctx, m.FS, s.File, v, up)
		if err != nil {
			return failure.AsPermanent(refuse(ErrBadMigrationFiles,
				"Fix the file in the image (goose's annotations: -- +goose Up / Down / StatementBegin / StatementEnd / NO TRANSACTION / ENVSUB ON); nothing was applied",
				"migration %d (%s) cannot be parsed for %s: %v", v, s.File, direction(up), err))
		}
		if err := checkTransactionControl(ctx, m.FS, s, up, p); err != nil {
			return failure.AsPermanent(err)
		}
		if err := checkCopyFromClient(ctx, m.FS, s, up, p); err != nil {
			return failure.AsPermanent(err)
		}
		if m.parsed == nil {
			m.parsed = map[parsedKey]bool{}
		}
		m.parsed[key] = true
	}
	return nil
}

// checkTransactionControl refuses a migration that runs in a transaction and
// ends it itself: what ran before a COMMIT would stay committed when a later
// statement fails, and the retry a transient failure invites would run it
// again; after a ROLLBACK the migration would be recorded applied with its first
// statements undone.
func checkTransactionControl(ctx context.Context, fsys fs.FS, s Source, up bool, p *Parsed) error {
	if !p.UseTx {
		return nil
	}
	for i, stmt := range p.Statements {
		cmd := sqlrisk.EndsTransaction(stmt)
		if cmd == "" {
			continue
		}
		where := fmt.Sprintf("statement %d", i+1)
		if lines := statementLines(ctx, fsys, s.File, s.Version, up); i < len(lines) {
			where += fmt.Sprintf(" (line %d)", lines[i])
		}
		if cmd == sqlrisk.Unsplittable {
			return refuse(ErrBadMigrationFiles,
				"Close the quote, dollar quote or comment (a statement whose lines end in ; inside a string or function body needs -- +goose StatementBegin and StatementEnd around it); nothing was applied",
				"migration %d (%s) runs in one transaction for %s, and its %s cannot be split into its commands: a quote, dollar quote or block comment is left open (read with standard_conforming_strings on and off), so a COMMIT or ROLLBACK in it, which would end that transaction, cannot be ruled out", s.Version, s.File, direction(up), where)
		}
		return refuse(ErrBadMigrationFiles,
			fmt.Sprintf("Remove the %s (goose commits the migration when its last statement has run), or mark the file -- +goose NO TRANSACTION if its statements must commit one by one; nothing was applied", cmd),
			"migration %d (%s) runs in one transaction for %s, and its %s is %s, which ends that transaction: the statements before it would commit or roll back on their own, and a failure after it could not be undone", s.Version, s.File, direction(up), where, cmd)
	}
	return nil
}

// checkCopyFromClient refuses a migration with COPY ... FROM STDIN (a
// pg_dump data section, say): the server then waits for the rows in the COPY
// protocol, which a migration's statement never sends, and neither
// statement_timeout nor lock_timeout ends that wait, so the step hung until
// it was killed, and the retry hung again (session12 finding 6).
func checkCopyFromClient(ctx context.Context, fsys fs.FS, s Source, up bool, p *Parsed) error {
	for i, stmt := range p.Statements {
		if !sqlrisk.CopyFromClient(stmt) {
			continue
		}
		where := fmt.Sprintf("statement %d", i+1)
		if lines := statementLines(ctx, fsys, s.File, s.Version, up); i < len(lines) {
			where += fmt.Sprintf(" (line %d)", lines[i])
		}
		return refuse(ErrBadMigrationFiles,
			"Load the rows with INSERT statements (pg_dump --inserts or --column-inserts writes them) or COPY from a file the server can read; nothing was applied",
			"migration %d (%s) for %s has COPY ... FROM STDIN at %s, which waits for the rows from the client: a migration's statements send none, so it would wait until the step is killed", s.Version, s.File, direction(up), where)
	}
	return nil
}

type parsedKey struct {
	version int64
	up      bool
}

func direction(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func newReport(p *Plan) *Report {
	return &Report{Mode: p.Mode, Current: p.Current, Target: p.Target, Pending: slices.Clone(p.Pending)}
}
