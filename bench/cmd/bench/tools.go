package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tools compared with: the goose CLI of the version the module pins, Debian's
// Alembic, and the real psql binary (not Debian's pg_wrapper Perl script in
// /usr/bin, whose start-up would flatter the others).
const (
	gooseModule = "github.com/pressly/goose/v3/cmd/goose"
	gooseVer    = "v3.28.0"
	psqlBin     = "/usr/lib/postgresql/15/bin/psql"
	pythonBin   = "/usr/bin/python3"
)

// gooseCLI builds the goose CLI once into the cache: `go install goose@v3.28.0`
// from outside this module (goose's own go.mod), with only its PostgreSQL driver
// (the no_* build tags goose documents), as the migrate tests do.
func gooseCLI(ctx context.Context, c *config) (string, error) {
	dir := filepath.Join(c.cacheDir, "goose-"+gooseVer)
	bin := filepath.Join(dir, "goose")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logf("building the goose CLI %s", gooseVer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", "-trimpath", "-ldflags", "-s -w",
		"-tags", "no_clickhouse,no_mssql,no_mysql,no_sqlite3,no_vertica,no_ydb,no_libsql",
		gooseModule+"@"+gooseVer)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s@%s: %v\n%s", gooseModule, gooseVer, err, out)
	}
	return bin, nil
}

// migration is the n-th generated migration: a table and a row.
func migration(v int) (up, down string) {
	up = fmt.Sprintf("CREATE TABLE bench_%04d (id bigint PRIMARY KEY, name text NOT NULL);\nINSERT INTO bench_%04d (id, name) VALUES (1, 'm%d');", v, v, v)
	down = fmt.Sprintf("DROP TABLE bench_%04d;", v)
	return up, down
}

// writeGoose writes n goose SQL migrations into dir.
func writeGoose(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for v := 1; v <= n; v++ {
		up, down := migration(v)
		body := "-- +goose Up\n" + up + "\n-- +goose Down\n" + down + "\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d_bench_%d.sql", v, v)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeSQL writes every Up section into one file, for psql -f.
func writeSQL(path string, n int) error {
	var b strings.Builder
	for v := 1; v <= n; v++ {
		up, _ := migration(v)
		b.WriteString(up + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeAlembic writes an Alembic environment with the same n migrations as
// revisions b0001 → b000n (op.execute of the same SQL), one transaction per
// migration like goose; the database URL comes from BENCH_ALEMBIC_URL. It returns
// the alembic.ini path.
func writeAlembic(dir string, n int) (string, error) {
	versions := filepath.Join(dir, "versions")
	if err := os.MkdirAll(versions, 0o755); err != nil {
		return "", err
	}
	ini := filepath.Join(dir, "alembic.ini")
	if err := os.WriteFile(ini, []byte("[alembic]\nscript_location = "+dir+"\n"), 0o644); err != nil {
		return "", err
	}
	env := `import os
from alembic import context
from sqlalchemy import create_engine, pool

engine = create_engine(os.environ["BENCH_ALEMBIC_URL"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
`
	if err := os.WriteFile(filepath.Join(dir, "env.py"), []byte(env), 0o644); err != nil {
		return "", err
	}
	for v := 1; v <= n; v++ {
		up, down := migration(v)
		prev := "None"
		if v > 1 {
			prev = fmt.Sprintf("%q", fmt.Sprintf("b%04d", v-1))
		}
		var ups strings.Builder
		for _, stmt := range strings.Split(up, "\n") {
			fmt.Fprintf(&ups, "    op.execute(%q)\n", strings.TrimSuffix(stmt, ";"))
		}
		body := fmt.Sprintf(`"""bench %d"""
from alembic import op

revision = "b%04d"
down_revision = %s
branch_labels = None
depends_on = None


def upgrade():
%s

def downgrade():
    op.execute(%q)
`, v, v, prev, ups.String(), strings.TrimSuffix(down, ";"))
		if err := os.WriteFile(filepath.Join(versions, fmt.Sprintf("b%04d_bench.py", v)), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	return ini, nil
}

// alembicVersion is Debian's Alembic version.
func alembicVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, pythonBin, "-c", "import alembic, sqlalchemy, psycopg2; print(alembic.__version__, sqlalchemy.__version__, psycopg2.__version__.split()[0])").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("Alembic %s, SQLAlchemy %s, psycopg2 %s", f[0], f[1], f[2])
}

// cleanEnv is the environment without libpq, Chartreuse and Python variables that
// would change what a tool does.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PG"), strings.HasPrefix(kv, "CHARTREUSE_"), strings.HasPrefix(kv, "PYTHON"),
			strings.HasPrefix(kv, "KUBECONFIG="):
			continue
		}
		out = append(out, kv)
	}
	return out
}
