package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// tool is a contender of a database section: the processes one run starts.
type tool struct {
	name string
	cmds func(db string) []command
}

func (c *config) bin(step string) string { return filepath.Join(c.binDir, step) }

// stepEnv is what a workflow gives a step: the database URL in the environment
// (from a Secret) and the manifests' version.
func (c *config) stepEnv(url string) []string {
	return []string{"CHARTREUSE_DATABASE_URL=" + url, "CHARTREUSE_MANIFEST_VERSION=" + c.version}
}

func alembicURL(srv *pgenv.Server, db string) string {
	return fmt.Sprintf("postgresql+psycopg2://postgres:%s@%s:%d/%s", srv.Password, srv.Host, srv.Port, db)
}

// sectionNothing: the path of every deploy without migrations.
func sectionNothing(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	n := c.history
	logf("section 1: nothing to do, %d applied migrations, %d runs per tool", n, c.runs1)
	dir := filepath.Join(c.work, "history")
	if err := writeGoose(dir, n); err != nil {
		return err
	}
	ini, err := writeAlembic(filepath.Join(c.work, "history-alembic"), n)
	if err != nil {
		return err
	}
	goose, err := gooseCLI(ctx, c)
	if err != nil {
		return err
	}
	dbG, err := srv.CreateDatabase(ctx, "bench_nothing_goose")
	if err != nil {
		return err
	}
	dbA, err := srv.CreateDatabase(ctx, "bench_nothing_alembic")
	if err != nil {
		return err
	}
	urlG := srv.URL(dbG)
	// Bring both databases up to date (not measured).
	if _, err := runOnce(ctx, []command{{argv: []string{c.bin("migrate"), "--dir", dir}, env: c.stepEnv(urlG)}}, false); err != nil {
		return err
	}
	if _, err := runOnce(ctx, []command{{argv: []string{pythonBin, "-m", "alembic", "-c", ini, "upgrade", "head"}, env: []string{"BENCH_ALEMBIC_URL=" + alembicURL(srv, dbA)}}}, false); err != nil {
		return err
	}
	tools := []tool{
		{"psql -c 'select 1' (floor)", func(string) []command {
			return []command{{argv: []string{psqlBin, "-X", "-q", "-d", urlG, "-c", "select 1"}}}
		}},
		// the workflows' one step on this path: plan waits for the database itself
		{"chartreuse migrate --plan --wait-timeout 5m", func(string) []command {
			return []command{{argv: []string{c.bin("migrate"), "--plan", "--wait-timeout", "5m", "--dir", dir}, env: c.stepEnv(urlG)}}
		}},
		{"goose status (CLI " + gooseVer + ")", func(string) []command {
			return []command{{argv: []string{goose, "-dir", dir, "postgres", urlG, "status"}}}
		}},
		{"alembic current", func(string) []command {
			return []command{{argv: []string{pythonBin, "-m", "alembic", "-c", ini, "current"}, env: []string{"BENCH_ALEMBIC_URL=" + alembicURL(srv, dbA)}}}
		}},
		// run only before wait-patroni now; measured for the footprint (section 4)
		{"chartreuse wait-for-db (Patroni runs only)", func(string) []command {
			return []command{{argv: []string{c.bin("wait-for-db")}, env: c.stepEnv(urlG)}}
		}},
	}
	res, err := interleave(ctx, tools, c.runs1, true, false, 3, nil)
	if err != nil {
		return err
	}
	rep.nothing = res
	rep.alembic = alembicVersion(ctx)
	_ = srv.DropDatabase(ctx, dbG)
	_ = srv.DropDatabase(ctx, dbA)
	return nil
}

// interleave runs every tool once (warm-up, not counted, when warmup is set),
// then runs times in round-robin order so that slow drifts of the machine hit
// every tool alike. Timed runs are not wrapped in GNU time unless wrapAll (for
// long runs, where its millisecond does not count); rssRuns more runs per tool
// take the peak RSS. fresh, when set, prepares a new database before each run
// and returns its name and a clean-up.
func interleave(ctx context.Context, tools []tool, runs int, warmup, wrapAll bool, rssRuns int, fresh func(i int) (string, func(), error)) ([]*series, error) {
	out := make([]*series, len(tools))
	for i, t := range tools {
		out[i] = &series{name: t.name}
	}
	first := 0
	if warmup {
		first = -1
	}
	for r := first; r < runs+rssRuns; r++ {
		timed := r >= 0 && r < runs
		wrap := wrapAll || r >= runs
		for i, t := range tools {
			db := ""
			done := func() {}
			if fresh != nil {
				var err error
				if db, done, err = fresh(i); err != nil {
					return nil, err
				}
			}
			s, err := runOnce(ctx, t.cmds(db), wrap)
			done()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			switch {
			case timed:
				out[i].samples = append(out[i].samples, s)
			case r >= runs:
				out[i].rssOnly = append(out[i].rssOnly, s)
			}
		}
		if r >= 0 {
			logf("  run %d/%d done", r+1, runs+rssRuns)
		}
	}
	return out, nil
}

// sectionApply: many migrations on an empty database.
func sectionApply(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	n := c.many
	logf("section 2: %d migrations on an empty database, %d runs per tool", n, c.runs2)
	dir := filepath.Join(c.work, "many")
	if err := writeGoose(dir, n); err != nil {
		return err
	}
	sqlFile := filepath.Join(c.work, "many.sql")
	if err := writeSQL(sqlFile, n); err != nil {
		return err
	}
	ini, err := writeAlembic(filepath.Join(c.work, "many-alembic"), n)
	if err != nil {
		return err
	}
	goose, err := gooseCLI(ctx, c)
	if err != nil {
		return err
	}
	tools := []tool{
		{"psql -f (all " + strconv.Itoa(n) + " in one file, floor)", func(db string) []command {
			return []command{{argv: []string{psqlBin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", srv.URL(db), "-f", sqlFile}}}
		}},
		{"chartreuse migrate", func(db string) []command {
			return []command{{argv: []string{c.bin("migrate"), "--dir", dir}, env: c.stepEnv(srv.URL(db))}}
		}},
		{"goose up (CLI " + gooseVer + ")", func(db string) []command {
			return []command{{argv: []string{goose, "-dir", dir, "postgres", srv.URL(db), "up"}}}
		}},
		{"alembic upgrade head", func(db string) []command {
			return []command{{argv: []string{pythonBin, "-m", "alembic", "-c", ini, "upgrade", "head"}, env: []string{"BENCH_ALEMBIC_URL=" + alembicURL(srv, db)}}}
		}},
	}
	fresh := func(int) (string, func(), error) {
		db, err := srv.CreateDatabase(ctx, "bench_apply")
		if err != nil {
			return "", nil, err
		}
		return db, func() {
			if err := checkTables(ctx, srv, db, n); err != nil {
				logf("WARNING: %v", err)
				rep.warnings = append(rep.warnings, err.Error())
			}
			_ = srv.DropDatabase(ctx, db)
		}, nil
	}
	res, err := interleave(ctx, tools, c.runs2, false, true, 0, fresh)
	if err != nil {
		return err
	}
	rep.apply = res
	return nil
}

// checkTables verifies that a run did the whole work: n tables with their row.
func checkTables(ctx context.Context, srv *pgenv.Server, db string, n int) error {
	conn, err := pgx.Connect(ctx, srv.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname ~ '^bench_[0-9]{4}$' AND relkind = 'r'`).Scan(&tables); err != nil {
		return err
	}
	if tables != n {
		return fmt.Errorf("database %s: %d of %d tables created", db, tables, n)
	}
	return nil
}

// waitPatroniRSS measures wait-patroni on a plain PostgreSQL with the operator's
// roles and default privileges in place (no Patroni REST API), for the footprint.
func waitPatroniRSS(ctx context.Context, c *config, srv *pgenv.Server) (*series, error) {
	db, err := srv.CreateDatabase(ctx, "benchp")
	if err != nil {
		return nil, err
	}
	defer srv.DropDatabase(ctx, db)
	o, w, r := db+"_owner", db+"_writer", db+"_reader"
	id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	for _, q := range []string{
		"CREATE ROLE " + id(o) + " NOLOGIN", "CREATE ROLE " + id(w) + " NOLOGIN", "CREATE ROLE " + id(r) + " NOLOGIN",
	} {
		if err := srv.Exec(ctx, "postgres", q); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, role := range []string{o, w, r} {
			_ = srv.Exec(context.Background(), db, "DROP OWNED BY "+id(role))
			_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+id(role))
		}
	}()
	for _, q := range []string{
		"GRANT USAGE, CREATE ON SCHEMA public TO " + id(o),
		"GRANT USAGE ON SCHEMA public TO " + id(w) + ", " + id(r),
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + id(o) + " IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + id(w),
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + id(o) + " IN SCHEMA public GRANT USAGE ON SEQUENCES TO " + id(w),
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + id(o) + " IN SCHEMA public GRANT SELECT ON TABLES TO " + id(r),
	} {
		if err := srv.Exec(ctx, db, q); err != nil {
			return nil, err
		}
	}
	t := tool{"wait-patroni", func(string) []command {
		return []command{{argv: []string{c.bin("wait-patroni"), "--timeout", "10s"}, env: c.stepEnv(srv.URL(db))}}
	}}
	res, err := interleave(ctx, []tool{t}, 0, true, false, 3, nil)
	if err != nil {
		return nil, err
	}
	return res[0], nil
}
