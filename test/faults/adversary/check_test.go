package adversary

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// migration is one generated migration file. Statement i (from 1) INSERTs the
// row (version, i) into adv_log, after sleeping sleeps[i-1] when that is set.
type migration struct {
	version int64
	name    string
	noTx    bool
	sleeps  []time.Duration // one per statement
	// special replaces the SQL of some statements (TestStoppedPartway's stoppers);
	// each must still log (version, i) when it completes.
	special map[int]string
}

func (m migration) file() string { return fmt.Sprintf("%d_%s.sql", m.version, m.name) }

func (m migration) n() int { return len(m.sleeps) }

func (m migration) kind() string {
	if m.noTx {
		return "NO TRANSACTION"
	}
	return "transactional"
}

// logInsert is the SQL of a statement that logs (version, stmt) after sleep.
func logInsert(version int64, stmt int, sleep time.Duration) string {
	const cols = "INSERT INTO adv_log (version, stmt, pid, app) "
	vals := fmt.Sprintf("%d, %d, pg_backend_pid(), current_setting('application_name')", version, stmt)
	if sleep <= 0 {
		return cols + "VALUES (" + vals + ");"
	}
	return cols + "SELECT " + vals + fmt.Sprintf(" FROM pg_sleep(%g);", sleep.Seconds())
}

func (m migration) source() string {
	var b strings.Builder
	if m.noTx {
		b.WriteString("-- +goose NO TRANSACTION\n")
	}
	b.WriteString("-- +goose Up\n")
	for i, d := range m.sleeps {
		if s, ok := m.special[i+1]; ok {
			b.WriteString(s + "\n")
			continue
		}
		b.WriteString(logInsert(m.version, i+1, d) + "\n")
	}
	fmt.Fprintf(&b, "-- +goose Down\nDELETE FROM adv_log WHERE version = %d;\n", m.version)
	return b.String()
}

// check lists every way the database contradicts the invariants (see the
// package documentation). complete also requires every migration applied, no
// dirty record and no lock holder.
func (s snapshot) check(migs []migration, complete bool) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	known := map[int64]bool{}
	for _, m := range migs {
		known[m.version] = true
		v := m.version
		counts := make([]int, m.n()+1)
		for i := 1; i <= m.n(); i++ {
			e := s.ran[stmtKey{v, i}]
			counts[i] = len(e.pids)
			if len(e.pids) > 1 {
				add("%s migration %d: statement %d ran %d times (backends %v, application_name %q)",
					m.kind(), v, i, len(e.pids), e.pids, e.apps)
			}
		}
		ranIdx := func(pred func(i, c int) bool) []int {
			var out []int
			for i := 1; i <= m.n(); i++ {
				if pred(i, counts[i]) {
					out = append(out, i)
				}
			}
			return out
		}
		missing := ranIdx(func(_, c int) bool { return c == 0 })
		ran := ranIdx(func(_, c int) bool { return c > 0 })
		rows := s.rows[v]
		d, dirty := s.dirty[v]
		if rows > 1 {
			add("migration %d has %d version rows", v, rows)
		}
		switch {
		case !m.noTx && dirty:
			add("transactional migration %d has a dirty record (%+v)", v, d)
		case !m.noTx && rows > 0 && len(missing) > 0:
			add("transactional migration %d is recorded as applied, but statements %v never ran", v, missing)
		case !m.noTx && rows == 0 && len(ran) > 0:
			add("transactional migration %d is not recorded, but statements %v ran (committed without its version row)", v, ran)
		case m.noTx && dirty && rows > 0:
			add("NO TRANSACTION migration %d has both a version row and a dirty record (%+v)", v, d)
		case m.noTx && dirty:
			problems = append(problems, d.check(m, counts)...)
		case m.noTx && rows > 0 && len(missing) > 0:
			add("NO TRANSACTION migration %d is recorded as applied, but statements %v never ran", v, missing)
		case m.noTx && rows == 0 && len(ran) > 0:
			add("NO TRANSACTION migration %d ran statements %v but has neither a version row nor a dirty record", v, ran)
		}
		if complete && (rows == 0 || dirty) {
			add("after the runs converged, migration %d is not applied (version rows %d, dirty %v)", v, rows, dirty)
		}
	}
	for _, v := range sortedVersions(s.rows) {
		if !known[v] {
			add("the version table records %d, which is not a migration of this run", v)
		}
	}
	for _, v := range sortedVersions(s.dirty) {
		if !known[v] {
			add("a dirty record names %d, which is not a migration of this run", v)
		}
	}
	for k, e := range s.ran {
		if !known[k.version] {
			add("adv_log has rows for unknown version %d (%v)", k.version, e.pids)
		}
	}
	if complete && len(s.lockPIDs) > 0 {
		add("backends %v still hold the migration lock after the runs", s.lockPIDs)
	}
	return problems
}

// check compares a dirty row with what ran: statements 1..done once, done+1 at
// most once, the rest never.
func (d dirtyRow) check(m migration, counts []int) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("NO TRANSACTION migration %d, dirty with %d of %d statements done: ", m.version, d.Done, d.Total)+fmt.Sprintf(format, args...))
	}
	if d.Total != m.n() {
		add("statements_total is %d, the file has %d", d.Total, m.n())
	}
	if d.Direction != "up" {
		add("direction %q, want up", d.Direction)
	}
	if d.File != m.file() {
		add("file %q, want %q", d.File, m.file())
	}
	if d.Done < 0 || d.Done > m.n() {
		add("statements_done out of range")
		return problems
	}
	for i := 1; i <= m.n(); i++ {
		switch c := counts[i]; {
		case i <= d.Done && c != 1:
			add("statement %d is counted as done but ran %d times", i, c)
		case i == d.Done+1 && c > 1:
			add("statement %d (the one in flight) ran %d times", i, c)
		case i > d.Done+1 && c != 0:
			add("statement %d, after the one in flight, ran %d times", i, c)
		}
	}
	return problems
}

// namesStatement reports whether out says which migration stopped and where:
// the version, and the statement it stopped at ("statement 3"), or how far it
// got ("2 of 5", "all 5 statements" when only the version row is missing).
func namesStatement(out string, d dirtyRow) bool {
	version := regexp.MustCompile(`\b` + strconv.FormatInt(d.Version, 10) + `\b`)
	where := fmt.Sprintf(`(?i)statement\D{0,12}\b%d\b|\b%d\s+of\s+%d\b`, d.Done+1, d.Done, d.Total)
	if d.Done >= d.Total {
		where = fmt.Sprintf(`(?i)\ball\s+%d\s+statements|\b%d\s+of\s+%d\b`, d.Total, d.Done, d.Total)
	}
	return version.MatchString(out) && regexp.MustCompile(where).MatchString(out)
}

// operatorComplete does by hand what a dirty migration did not: it logs every
// statement that has not run, as an operator finishing the migration would
// before resolving it as applied.
func (r *run) operatorComplete(m migration) {
	r.t.Helper()
	r.super(r.db, `INSERT INTO adv_log (version, stmt, pid, app)
		SELECT $1, i, 0, 'operator' FROM generate_series(1, $2::int) i
		WHERE NOT EXISTS (SELECT FROM adv_log WHERE version = $1 AND stmt = i)`, m.version, m.n())
}

// operatorUndo undoes what a dirty migration did, as an operator would before
// resolving it as not applied.
func (r *run) operatorUndo(m migration) {
	r.t.Helper()
	r.super(r.db, `DELETE FROM adv_log WHERE version = $1`, m.version)
}

// resolve runs migrate --resolve until it is not transient, and checks that the
// dirty record is gone and the version row is there iff applied.
func (r *run) resolve(m migration, applied bool) []string {
	r.t.Helper()
	as := "not-applied"
	if applied {
		as = "applied"
	}
	var problems []string
	for attempt := 1; ; attempt++ {
		res := r.migrate(fmt.Sprintf("resolve %d as %s", m.version, as), appDefault,
			"--resolve", strconv.FormatInt(m.version, 10), "--as", as, "--lock-wait", "30s")
		if res.Code == 75 && attempt < 5 {
			continue
		}
		if res.Code != 0 {
			return append(problems, fmt.Sprintf("migrate --resolve %d --as %s exited %d:\n%s", m.version, as, res.Code, tail(res.Output(), 6)))
		}
		break
	}
	s := r.snapshot()
	if _, ok := s.dirty[m.version]; ok {
		problems = append(problems, fmt.Sprintf("after --resolve %d --as %s the dirty record is still there", m.version, as))
	}
	if got := s.rows[m.version] > 0; got != applied {
		problems = append(problems, fmt.Sprintf("after --resolve %d --as %s: version row present = %v", m.version, as, got))
	}
	return problems
}

// refuses checks that a run and a plan, while d exists, exit 1 naming the
// version and the statement.
func (r *run) refuses(d dirtyRow) []string {
	r.t.Helper()
	var problems []string
	for _, args := range [][]string{{"--lock-wait", "30s"}, {"--plan"}} {
		label := "migrate " + strings.Join(args, " ")
		res := r.migrate(label+" while dirty", appDefault, args...)
		switch {
		case res.Code != 1:
			problems = append(problems, fmt.Sprintf("%s exited %d while migration %d is dirty, want 1:\n%s", label, res.Code, d.Version, tail(res.Output(), 6)))
		case !namesStatement(res.Output(), d):
			problems = append(problems, fmt.Sprintf("%s refused, but its output does not name version %d and statement %d:\n%s", label, d.Version, d.Done+1, tail(res.Output(), 6)))
		}
	}
	return problems
}

// killBackend ends one session with pg_terminate_backend, as an operator
// following the old troubleshooting advice would.
func (r *run) killBackend(pid int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.exec(ctx, r.srv.URL("postgres"), "SELECT pg_terminate_backend($1)", pid)
}
