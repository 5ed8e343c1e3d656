package migrate

import (
	"context"
	"fmt"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// needsDowntime is plan's needs-downtime: false only when something is
// pending and every pending statement is additive (sqlrisk.Additive), so the
// running version of the application may keep running through the
// migration. With nothing pending it is false without the parser; when the
// risk analysis did not run (--risk-policy=off, or too little memory to start
// the parser), --lock-timeout does not bound lock waits to
// sqlrisk.MaxLockTimeout, or a file or statement cannot be analysed, it is true. One log line says why,
// naming the first statement that needs the application stopped.
func (m *Migrator) needsDowntime(ctx context.Context, src Sources, plan *Plan, risks []sqlrisk.Risk) bool {
	redact := m.Redact
	if redact == nil {
		redact = func(s string) string { return s }
	}
	verdict := func(needs bool, why string, args ...any) bool {
		m.Log.Info(fmt.Sprintf("needs-downtime %v: %s", needs, redact(fmt.Sprintf(why, args...))), "needs-downtime", needs)
		return needs
	}
	if len(plan.Pending) == 0 {
		return verdict(false, "nothing is pending")
	}
	// The parser is started by the risk analysis only: where it did not run,
	// it is not started here either.
	if m.Opts.RiskPolicy == RiskOff {
		return verdict(true, "the pending statements were not analysed (--risk-policy=off)")
	}
	for _, r := range risks {
		if r.Rule == sqlrisk.NotAnalysed {
			return verdict(true, "%s", r.What)
		}
	}
	// The additive forms' locks are brief only while lock_timeout bounds their wait.
	if lt := m.Opts.LockTimeout; lt <= 0 || lt > sqlrisk.MaxLockTimeout {
		return verdict(true, "with --lock-timeout %s a waiting lock, even an additive statement's, holds the running version's queries behind it for longer than %s", lt, sqlrisk.MaxLockTimeout)
	}
	count := 0
	var run sqlrisk.Run
	for _, v := range plan.Pending {
		s, _ := src.Get(v)
		p, err := parseMigration(ctx, m.FS, s.File, v, true)
		if err != nil {
			return verdict(true, "%s cannot be read for the analysis: %v", s.File, err)
		}
		for i, stmt := range p.Statements {
			ok, why, err := run.Additive(ctx, m.DB, sqlrisk.Statement{File: s.File, SQL: stmt, InTx: p.UseTx})
			if ok {
				count++
				continue
			}
			where := fmt.Sprintf("%s statement %d", s.File, i+1)
			if lines := statementLines(ctx, m.FS, s.File, v, true); i < len(lines) {
				where = fmt.Sprintf("%s:%d", s.File, lines[i])
			}
			if err != nil {
				return verdict(true, "%s is not analysed: the SQL parser rejects it", where)
			}
			return verdict(true, "%s is not additive: %s (stop-workloads=auto stops the application for it; docs/operations.md)", where, why)
		}
	}
	return verdict(false, "every pending statement (%d) is additive: the running version can keep running", count)
}
