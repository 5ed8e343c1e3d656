package migrate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
)

// Reasons for refusing to migrate. Every refusal is a *RefusalError wrapping one of
// these, classified permanent (exit 1), and returned before the database changes.
var (
	// ErrNoMigrations: the directory holds no *.sql migration.
	ErrNoMigrations = errors.New("no migrations")
	// ErrBadMigrationFiles: duplicate or unparsable versions, Go migrations, files
	// without a '-- +goose Up' annotation.
	ErrBadMigrationFiles = errors.New("bad migration files")
	// ErrBranched: versions applied in the database are absent from the directory.
	ErrBranched = errors.New("applied versions missing from the directory")
	// ErrOutOfOrder: pending versions lower than the current version.
	ErrOutOfOrder = errors.New("pending versions lower than the current version")
	// ErrNotGooseTable: the version table exists but is not goose's.
	ErrNotGooseTable = errors.New("not a goose version table")
	// ErrInconsistentTable: the version table's rows contradict each other.
	ErrInconsistentTable = errors.New("inconsistent version table")
	// ErrEmptyDatabase: --allow-empty-database=false and the database is empty.
	ErrEmptyDatabase = errors.New("empty database")
	// ErrUnknownVersion: --to/--down-to names no migration in the directory.
	ErrUnknownVersion = errors.New("unknown version")
	// ErrIrreversible: a migration to roll back has no Down statements.
	ErrIrreversible = errors.New("migration cannot be rolled back")
	// ErrAppliedByAnother: --only-this-run, and a version to roll back was
	// not applied by this run.
	ErrAppliedByAnother = errors.New("migration to roll back applied by another run")
	// ErrNoPrivilege: the (role's) session cannot read or write the version table.
	ErrNoPrivilege = errors.New("missing privilege on the version table")
	// ErrDirty: a migration without a transaction stopped partway (see dirty.go);
	// nothing runs until an operator settles it with --resolve.
	ErrDirty = errors.New("a migration stopped partway")
	// ErrNotDirty: --resolve names a version that has no dirty record.
	ErrNotDirty = errors.New("no dirty record for the version")
	// ErrChanged: an applied migration's file differs from the checksum recorded
	// when it was applied (checksum.go); --accept-changed accepts it.
	ErrChanged = errors.New("applied migration edited")
	// ErrPlanChanged: the files migrate would apply are not the ones plan judged
	// (--planned-files-digest).
	ErrPlanChanged = errors.New("migrations changed since plan")
	// ErrCannotRecord: the version table could not take the version row of a
	// migration to apply (a NOT NULL column without a default that goose's
	// INSERT leaves out; an integer version_id below a version), so the row's
	// write would fail after the migration ran.
	ErrCannotRecord = errors.New("the version table cannot record a migration")
	// ErrTableElsewhere: --table names no schema, the schema it resolves to
	// (the search_path's first) has no version table, and another schema has
	// one: a schema created since or a changed search_path moved where it
	// resolves, and running would apply every migration again.
	ErrTableElsewhere = errors.New("the version table is in another schema")
	// ErrReadOnly: the server is a primary whose sessions are read-only by
	// default (default_transaction_read_only = on), so nothing can be written.
	ErrReadOnly = errors.New("the database's sessions are read-only by default")
)

// ErrInProgress: a migration without a transaction is recorded as running while
// another session holds the migration lock: it may be running now, or have
// stopped partway; which one is known only under the lock. Transient (exit 75).
var ErrInProgress = errors.New("a migration is in progress")

// ErrLockBusy: another migrator held the migration lock for all of --lock-wait.
// Returned as a *LockBusyError, classified transient (exit 75).
var ErrLockBusy = errors.New("migration lock busy")

// RefusalError explains why nothing was changed and how to repair it.
type RefusalError struct {
	Reason  error  // one of the Err* reasons above
	Problem string // what is wrong, naming versions, files, tables
	Repair  string // what to do; for the version table, the exact SQL
}

func (e *RefusalError) Error() string {
	msg := "refusing to migrate: " + e.Problem
	if e.Repair != "" {
		msg += ". " + e.Repair
	}
	return msg
}

func (e *RefusalError) Unwrap() error { return e.Reason }

func refuse(reason error, repair string, format string, args ...any) *RefusalError {
	return &RefusalError{Reason: reason, Problem: fmt.Sprintf(format, args...), Repair: repair}
}

// LockBusyError names the session holding the migration lock, when it can be seen.
type LockBusyError struct {
	Waited time.Duration
	Holder *Session // nil when the holder could not be identified
	// Planning: --plan found the lock held (it never waits for it).
	Planning bool
}

func (e *LockBusyError) Error() string {
	if e.Planning {
		msg := fmt.Sprintf("another migrator holds the migration lock (advisory lock %d), so this plan would be out of date before it is acted on: nothing was judged and nothing stopped", LockID)
		if e.Holder != nil {
			msg += fmt.Sprintf("; held by %s; if that session is stuck, end it with SELECT pg_terminate_backend(%d)", e.Holder, e.Holder.PID)
		}
		return msg + "; rerun when it has finished"
	}
	msg := fmt.Sprintf("another migrator holds the migration lock (advisory lock %d) and did not release it within --lock-wait %s", LockID, e.Waited)
	if e.Holder != nil {
		msg += fmt.Sprintf(": held by %s; if that session is stuck, end it with SELECT pg_terminate_backend(%d)", e.Holder, e.Holder.PID)
	}
	return msg + "; rerun later"
}

func (e *LockBusyError) Unwrap() error { return ErrLockBusy }

// Session describes another database session for messages (never its query text,
// which may hold secrets).
type Session struct {
	PID             int
	User            string
	ApplicationName string
	State           string
	XactAge         time.Duration // 0 when unknown or not in a transaction
	ClientAddr      string        // host(client_addr); "" for a Unix socket or when unknown
	BackendStart    time.Time     // when the session began; zero when unknown
	// Origin says where the session comes from (podaddr.Finder.Describe): its pod,
	// or what could not be told. "" when not looked up.
	Origin string
}

func (s *Session) String() string {
	parts := []string{fmt.Sprintf("pid %d", s.PID)}
	// Any session can name itself: what it chose is shown quoted unless it is
	// a plain name, so that it cannot pass for the message's other parts (a
	// user, a pod) or end the sentence.
	if run, step, shortened, ok := dbconn.ParseApplicationName(s.ApplicationName); ok {
		run, step = plainOrQuoted(run), plainOrQuoted(step)
		switch {
		case run == `""`:
			parts = append(parts, "a Chartreuse "+step+" step given no run id")
		case shortened:
			parts = append(parts, fmt.Sprintf("Chartreuse run %s (shortened to fit application_name), step %s", run, step))
		default:
			parts = append(parts, fmt.Sprintf("Chartreuse run %s, step %s", run, step))
		}
	} else if s.ApplicationName != "" {
		parts = append(parts, "application_name "+plainOrQuoted(s.ApplicationName))
	}
	if s.User != "" {
		parts = append(parts, "user "+plainOrQuoted(s.User))
	}
	if s.State != "" {
		st := s.State
		if s.XactAge > 0 {
			st += fmt.Sprintf(", transaction open for %s", s.XactAge.Round(time.Second))
		}
		parts = append(parts, st)
	}
	if s.Origin != "" {
		parts = append(parts, s.Origin)
	} else if s.ClientAddr != "" {
		parts = append(parts, "connected from "+s.ClientAddr)
	}
	return strings.Join(parts, ", ")
}

// plainOrQuoted is s when it is made of letters, digits and . _ - ~ : / only
// (every Argo and Tekton run name), else s quoted.
func plainOrQuoted(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-~:/", c)) {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// MigrationError is a migration that failed to apply or roll back. Earlier
// migrations of the run stay applied. A transactional one was rolled back; one
// without a transaction that had started is Dirty: its record stays in the
// database and every later run refuses until it is resolved.
type MigrationError struct {
	Version   int64
	File      string
	Direction string // "up" or "down"
	NoTx      bool   // ran without a transaction
	Ran       bool   // a statement was sent to the server
	Dirty     bool   // NoTx and Ran, or its transaction ended early: the dirty record stays
	// Unrecorded: Dirty, but the migration removed the version table and
	// writing the records back failed, so nothing records it (Detail says
	// what to do before any rerun).
	Unrecorded bool
	// CommitUnknown: the session ended while the commit recording the
	// migration was in flight; the rerun reads from the version table whether
	// it committed (transient).
	CommitUnknown bool
	Statement     int    // 0-based index of the failing statement, -1 when not in one
	Detail        string // SQLSTATE, message, position in the file, lock wait, ...
	Err           error
}

func (e *MigrationError) Error() string {
	verb := "applying"
	if e.Direction == "down" {
		verb = "rolling back"
	}
	msg := fmt.Sprintf("%s migration %d (%s) failed: %s", verb, e.Version, e.File, e.Detail)
	switch {
	case e.CommitUnknown:
		found, again, as := "applied", "applies it again from the start", "applied"
		if e.Direction == "down" {
			found, again, as = "rolled back", "rolls it back again", "not-applied"
		}
		if e.NoTx {
			msg += fmt.Sprintf("; all its statements had run (it runs without a transaction, -- +goose NO TRANSACTION), and that commit also deletes its record as stopped partway; rerun: under the migration lock the rerun finds it %s and goes on if the commit went through, or else refuses it as stopped partway with every statement completed, to settle with migrate --resolve %d --as %s", found, e.Version, as)
		} else {
			msg += fmt.Sprintf("; its version row commits with it, so rerun: under the migration lock the rerun finds it %s if the commit went through, or else %s", found, again)
		}
	case e.Dirty && !e.NoTx:
		msg += fmt.Sprintf("; its statement %d ended the transaction goose runs it in (COMMIT or ROLLBACK), so the statements before it may stay applied and it is recorded as stopped partway: every run refuses until you check what it did and settle it with migrate --resolve %d --as applied (all its changes are in place) or --as not-applied (none are); then remove the transaction control from the file", e.Statement+1, e.Version)
	case e.Unrecorded:
		msg += "; this migration runs without a transaction (-- +goose NO TRANSACTION), so what it did stays applied, and nothing records it: do as said above before any rerun"
	case e.Dirty:
		ran := "the statements before the failing one stay applied"
		if e.Statement < 0 {
			ran = "what its statements did stays applied"
		}
		msg += fmt.Sprintf("; this migration runs without a transaction (-- +goose NO TRANSACTION), so %s and it is recorded as stopped partway: every run refuses until you check what it did and settle it with migrate --resolve %d --as applied (all its changes are in place) or --as not-applied (none are)", ran, e.Version)
	case !e.Ran:
		msg += "; none of its statements ran"
	default:
		msg += "; it was rolled back"
	}
	return msg
}

func (e *MigrationError) Unwrap() error { return e.Err }
