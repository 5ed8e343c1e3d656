package migrate

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/podaddr"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Spec describes the migrate step binary.
func Spec() step.Spec {
	db := &dbconn.Options{}
	opts := &Options{}
	return step.Spec{
		Name:  "migrate",
		Usage: "apply goose SQL migrations (or plan them, or roll back) with one migrator at a time",
		Description: "Checks the migration directory and goose's version table before changing anything, takes the " +
			"advisory lock " + strconv.FormatInt(LockID, 10) + " (goose's default), then applies each pending migration in its own transaction. " +
			"The sha256 of each migration applied is recorded in <table>_sums; every run, --plan too, refuses while an applied migration's file differs from it (--accept-changed) or is gone. " +
			"Results: git-commit (with --git-url), migrations-digest (with --migrations-image), pending, pending-versions, current-version, target-version, applied, applied-versions, rolled-back, rolled-back-versions, checksums-recorded, risks (with --plan: the lock-impact findings of the pending statements, see --risk-policy), files-digest (with --plan: the sha256 of the migration files up to target-version, for migrate --planned-files-digest), needs-downtime (with --plan: false only when every pending statement is additive, so the running application need not be stopped), lock-wait-seconds (not with --plan: how long the run waited for the migration lock), table-lock-wait-seconds (not with --plan: how long its migrations were seen waiting for table locks, sampled), sql-seconds (not with --plan: how long the migrations it applied or rolled back took, each from its start to its commit).",
		Options: []step.Options{db, opts},
		Run: func(ctx context.Context, env *step.Env) error {
			db.AppName = dbconn.ApplicationName(opts.RunID, StepName(opts.Mode()))
			cfg, err := db.Config(env.Redactor)
			if err != nil {
				return err
			}
			if opts.WaitTimeout > 0 {
				w := &dbconn.Waiter{Attempt: dbconn.Ping(cfg), Clock: poll.RealClock{}, Log: env.Log.With("target", dbconn.Describe(cfg))}
				if _, err := w.Wait(ctx, opts.WaitTimeout); err != nil {
					return err
				}
			}
			sqlDB, _ := OpenDB(cfg, opts.Sessions())
			defer sqlDB.Close()
			fsys, cleanup, err := opts.openMigrations(ctx, env.Log, env.Results, env.Redactor)
			if err != nil {
				return err
			}
			defer cleanup()
			m := &Migrator{DB: sqlDB, FS: fsys, Log: env.Log.With("database", cfg.Database), Opts: *opts,
				Secret: env.Redactor.Add, Redact: env.Redactor.String, Origins: podaddr.InCluster(podaddr.ServiceAccountDir)}
			rep, err := m.Run(ctx)
			rep.SetResults(env.Results)
			return err
		},
	}
}

// StepName names a run of the migrate binary by what it does, as the workflows
// name their steps: plan, migrate, rollback, resolve. It ends the application_name
// of the run's sessions (chartreuse/<run-id>/<step>).
func StepName(m Mode) string {
	switch m {
	case ModePlan:
		return "plan"
	case ModeDown:
		return "rollback"
	case ModeResolve:
		return "resolve"
	}
	return "migrate"
}

// SetResults records the report as step results; a nil report (nothing could be
// read) records nothing, so a failed step leaves no misleading value behind.
func (r *Report) SetResults(res *results.Set) {
	if r == nil {
		return
	}
	versions := func(steps []Step) []int64 {
		out := make([]int64, 0, len(steps))
		for _, s := range steps {
			out = append(out, s.Version)
		}
		return out
	}
	pending := r.Pending
	if pending == nil {
		pending = []int64{}
	}
	res.Set("pending", strconv.FormatBool(len(r.Pending) > 0))
	res.SetJSON("pending-versions", pending)
	res.Set("current-version", strconv.FormatInt(r.Current, 10))
	res.Set("target-version", strconv.FormatInt(r.Target, 10))
	res.Set("applied", strconv.Itoa(len(r.Applied)))
	res.SetJSON("applied-versions", versions(r.Applied))
	res.Set("rolled-back", strconv.Itoa(len(r.RolledBack)))
	res.SetJSON("rolled-back-versions", versions(r.RolledBack))
	res.Set("checksums-recorded", strconv.Itoa(r.ChecksumsRecorded))
	if r.Risks != nil {
		res.SetJSON("risks", RisksResult(r.Risks)) // bounded: plan.go
	}
	if r.FilesDigest != "" {
		res.Set("files-digest", r.FilesDigest)
	}
	if r.NeedsDowntime != nil {
		res.Set("needs-downtime", strconv.FormatBool(*r.NeedsDowntime))
	}
	if r.Mode != ModePlan {
		res.Set("lock-wait-seconds", seconds(r.LockWait))
		res.Set("table-lock-wait-seconds", seconds(r.TableLockWait))
		var sql time.Duration
		for _, s := range append(slices.Clone(r.Applied), r.RolledBack...) {
			sql += s.Duration
		}
		res.Set("sql-seconds", strconv.FormatFloat(sql.Seconds(), 'f', 3, 64))
	}
}

// seconds renders a duration for a result read by metrics: seconds, to the tenth.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
}
