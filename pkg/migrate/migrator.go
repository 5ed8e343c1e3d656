package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Migrator runs one migrate step against one database.
type Migrator struct {
	DB    *sql.DB // pool whose connections carry the session settings (see OpenDB)
	FS    fs.FS   // the migration directory, Opts.Dir
	Log   *slog.Logger
	Opts  Options
	Probe *Probe // optional (from OpenDB): names lock waits and places SQL errors in files
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
}

// Run checks, locks and migrates. Errors are classified for failure.Code: refusals
// (*RefusalError) and SQL errors in migrations (*MigrationError) are permanent; a
// busy lock (*LockBusyError), lock or statement timeouts, interruptions and lost
// connections are transient.
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
	src, contents, err := scanDir(m.FS, m.Opts.Dir)
	if err != nil {
		cancel()
		if c := <-connCh; c.conn != nil {
			c.conn.Close()
		}
		return nil, failure.AsPermanent(err)
	}
	c := <-connCh
	if c.err != nil {
		return nil, dbconn.Classify(fmt.Errorf("connecting to the database: %w", c.err))
	}
	// A new connection has just proven the server answers: no ping before reading.
	conn := c.conn
	st, plan, err := m.check(ctx, conn, src)
	conn.Close()
	if err != nil {
		return nil, err
	}
	rep := newReport(plan)
	m.Log.Info("migration plan", "mode", mode.String(), "table", st.Qualified(), "current-version", plan.Current,
		"target-version", plan.Target, "pending-versions", joinVersions(plan.Pending, ","), "roll-back-versions", joinVersions(plan.Down, ","))
	if mode == ModePlan {
		return rep, nil
	}
	if plan.NothingToDo() {
		m.Log.Info("nothing to migrate", "current-version", plan.Current, "target-version", plan.Target)
		return rep, nil
	}

	lk, err := acquireLock(ctx, m.DB, m.Opts.LockWait, m.Log)
	if err != nil {
		return rep, err
	}
	defer lk.release(ctx)
	if err := lk.settle(ctx, m.Opts.LockWait); err != nil {
		return rep, err
	}
	// Check again under the lock: another migrator may have finished meanwhile.
	st, plan, err = m.check(ctx, lk.conn, src)
	if err != nil {
		return rep, err
	}
	rep = newReport(plan)
	if plan.NothingToDo() {
		m.Log.Info("nothing left to migrate: another migrator got there first", "current-version", plan.Current)
		return rep, nil
	}
	err = m.execute(ctx, lk, readFS{m.FS, contents}, st, src, plan, rep)
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
	plan, err := Analyze(src, st, Request{
		Mode: m.Opts.Mode(), To: m.Opts.To, DownTo: m.Opts.DownTo, Dir: m.Opts.Dir,
		AllowOutOfOrder: m.Opts.AllowOutOfOrder, AllowEmptyDatabase: m.Opts.AllowEmptyDatabase,
	})
	if err != nil {
		return st, nil, failure.AsPermanent(err)
	}
	return st, plan, nil
}

func newReport(p *Plan) *Report {
	return &Report{Mode: p.Mode, Current: p.Current, Target: p.Target, Pending: slices.Clone(p.Pending)}
}

func (m *Migrator) execute(ctx context.Context, lk *migrationLock, fsys fs.FS, st *State, src Sources, plan *Plan, rep *Report) error {
	applied := slices.Clone(plan.Applied)
	store, err := newVersionStore(m.Opts.Table, lk.token,
		func(v int64) bool { return slices.Contains(applied, v) },
		func(v int64) bool { s, _ := src.Get(v); return s.NoTx })
	if err != nil {
		return failure.Permanentf("loading the migrations in %s: %w", m.Opts.Dir, err)
	}
	provider, err := goose.NewProvider(goose.DialectCustom, m.DB, fsys,
		goose.WithStore(store), goose.WithDisableGlobalRegistry(true),
		// Out-of-order versions were refused or allowed by Analyze already.
		goose.WithAllowOutofOrder(true))
	if err != nil {
		return failure.Permanentf("loading the migrations in %s: %w", m.Opts.Dir, err)
	}
	if !st.Exists {
		// goose creates its table (and version 0) on first use; do it here, under the
		// lock and on a pooled connection, so it is owned by --role like the rest.
		if _, err := provider.GetDBVersion(ctx); err != nil {
			if errors.Is(err, errLockCheck) {
				return lk.lost(ctx)
			}
			return dbconn.Classify(fmt.Errorf("creating the version table %s: %w", st.Qualified(), err))
		}
		m.Log.Info("created the version table", "table", st.Qualified())
	}
	up := plan.Mode != ModeDown
	versions := plan.Pending
	if !up {
		versions = plan.Down
	}
	w := startWatcher(ctx, lk.conn, m.Probe.PIDs, watchInterval(m.Opts.LockTimeout), m.Log)
	defer w.Stop()
	for _, v := range versions {
		s, _ := src.Get(v)
		// A transaction's migration is checked as it writes its version row (see
		// versionStore); the statements of one without cannot be undone, so the
		// lock is checked before they start.
		if s.NoTx {
			if err := lk.held(ctx); err != nil {
				return err
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		w.Begin("version", v, "file", s.File)
		res, err := provider.ApplyVersion(ctx, v, up)
		wait := w.End()
		if errors.Is(err, errLockCheck) {
			return lk.lost(ctx) // the migration was rolled back
		}
		if err != nil {
			return m.failed(ctx, s, up, err, wait)
		}
		step := Step{Version: v, File: s.File, Duration: res.Duration}
		if up {
			rep.Applied = append(rep.Applied, step)
			rep.Pending = slices.DeleteFunc(rep.Pending, func(p int64) bool { return p == v })
			applied = append(applied, v)
			m.Log.Info("migration applied", "version", v, "file", s.File, "duration", res.Duration.Round(time.Millisecond).String())
		} else {
			rep.RolledBack = append(rep.RolledBack, step)
			applied = slices.DeleteFunc(applied, func(a int64) bool { return a == v })
			m.Log.Info("migration rolled back", "version", v, "file", s.File, "duration", res.Duration.Round(time.Millisecond).String())
		}
		rep.Current = 0
		if len(applied) > 0 {
			rep.Current = slices.Max(applied)
		}
	}
	return nil
}

// failed turns a goose error for one migration into a classified *MigrationError.
func (m *Migrator) failed(ctx context.Context, s Source, up bool, err error, wait *LockWait) error {
	me := &MigrationError{Version: s.Version, File: s.File, Direction: "up", NoTx: s.NoTx, Err: err}
	if !up {
		me.Direction = "down"
	}
	if ctx.Err() != nil {
		me.Detail = "interrupted (SIGTERM or cancelled); rerun to continue"
		me.Err = errors.Join(ctx.Err(), err)
		return failure.AsTransient(me)
	}
	if errors.Is(err, goose.ErrAlreadyApplied) || errors.Is(err, goose.ErrNotApplied) {
		me.Detail = "the version table changed under the migration lock: a migrator that does not take the lock (the goose CLI?) runs at the same time; rerun when it is done: " + err.Error()
		return failure.AsTransient(me)
	}
	var pgErr *pgconn.PgError
	switch {
	case !errors.As(err, &pgErr):
		me.Detail = err.Error()
	case pgErr.Code == dbconn.LockNotAvailable:
		me.Detail = lockTimeoutDetail(m.Opts.LockTimeout, wait)
	case pgErr.Code == dbconn.QueryCanceled:
		me.Detail = fmt.Sprintf("statement_timeout (--statement-timeout %s) expired or the statement was cancelled by an administrator (SQLSTATE %s); raise --statement-timeout if the migration needs longer", m.Opts.StatementTimeout, pgErr.Code)
	default:
		me.Detail = m.sqlErrorDetail(pgErr, s)
	}
	return dbconn.Classify(me)
}

// sqlErrorDetail renders a server error with its place in the migration file.
func (m *Migrator) sqlErrorDetail(e *pgconn.PgError, s Source) string {
	msg := fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
	if pos := m.position(e, s); pos != "" {
		msg += " at " + pos
	}
	if e.Detail != "" {
		msg += "; detail: " + e.Detail
	}
	if e.Hint != "" {
		msg += "; hint: " + e.Hint
	}
	if e.Where != "" {
		msg += "; context: " + e.Where
	}
	return msg
}

// position maps the error's character position in the failed statement to
// file:line:column. goose's statements are lines of the file, trimmed, so they are
// found verbatim unless ENVSUB rewrote them.
func (m *Migrator) position(e *pgconn.PgError, s Source) string {
	if e.Position <= 0 {
		return ""
	}
	stmt, ok := m.Probe.FailedStatement(e)
	if !ok {
		return fmt.Sprintf("character %d of the failing statement", e.Position)
	}
	if content, err := fs.ReadFile(m.FS, s.File); err == nil {
		if line, col, ok := locate(string(content), stmt, int(e.Position)); ok {
			return fmt.Sprintf("%s:%d:%d", s.File, line, col)
		}
	}
	first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if utf8.RuneCountInString(first) > 60 {
		first = string([]rune(first)[:60]) + "..."
	}
	return fmt.Sprintf("character %d of the statement %q", e.Position, first)
}

// locate finds stmt in content and returns the 1-based line and column of its
// pos-th character (PostgreSQL counts characters, not bytes).
func locate(content, stmt string, pos int) (line, col int, ok bool) {
	idx := strings.Index(content, stmt)
	if idx < 0 || stmt == "" {
		return 0, 0, false
	}
	off := idx
	for i := 1; i < pos && off < idx+len(stmt); i++ {
		_, size := utf8.DecodeRuneInString(content[off:])
		off += size
	}
	before := content[:off]
	line = strings.Count(before, "\n") + 1
	col = utf8.RuneCountInString(before[strings.LastIndex(before, "\n")+1:]) + 1
	return line, col, true
}
