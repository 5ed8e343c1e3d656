package kit

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SnapshotDB describes what a migration could change in a database, as text to
// compare before and after a run: every relation, sequence, function, type and
// schema outside the system schemas with its owner, every role, the content of
// any goose version table, and the advisory locks held. Run it as a superuser.
func SnapshotDB(ctx context.Context, url string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var b strings.Builder
	queries := []struct{ name, sql string }{
		{"schemas", `SELECT nspname || ' owner=' || nspowner::regrole FROM pg_namespace
			WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_(toast|temp_|toast_temp_)' ORDER BY 1`},
		{"relations", `SELECT n.nspname || '.' || c.relname || ' kind=' || c.relkind::text || ' owner=' || c.relowner::regrole || ' cols=' ||
				coalesce((SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute
				          WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' ORDER BY 1`},
		{"functions", `SELECT p.oid::regprocedure::text || ' owner=' || p.proowner::regrole FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`},
		{"types", `SELECT t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' AND t.typtype <> 'c' AND t.typelem = 0 ORDER BY 1`},
		{"roles", `SELECT rolname || ' login=' || rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1`},
		{"advisory locks", `SELECT l.classid || ':' || l.objid || ':' || l.objsubid FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1`},
	}
	for _, q := range queries {
		rows, err := conn.Query(ctx, q.sql)
		if err != nil {
			return "", fmt.Errorf("snapshot %s: %w", q.name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", fmt.Errorf("snapshot %s: %w", q.name, err)
		}
		fmt.Fprintf(&b, "== %s\n%s\n", q.name, strings.Join(lines, "\n"))
	}
	// Every table that looks like goose's, whatever it is called.
	rows, err := conn.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'version_id')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		return "", err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, tbl := range tables {
		rows, err := conn.Query(ctx, `SELECT row_to_json(t)::text FROM `+tbl+` t ORDER BY 1`)
		if err != nil {
			return "", fmt.Errorf("snapshot %s: %w", tbl, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", fmt.Errorf("snapshot %s: %w", tbl, err)
		}
		fmt.Fprintf(&b, "== version table %s\n%s\n", tbl, strings.Join(lines, "\n"))
	}
	return b.String(), nil
}

// Diff is a short line-based difference of two snapshots ("" when equal).
func Diff(before, after string) string {
	if before == after {
		return ""
	}
	bl, al := strings.Split(before, "\n"), strings.Split(after, "\n")
	in := func(list []string) map[string]int {
		m := map[string]int{}
		for _, l := range list {
			m[l]++
		}
		return m
	}
	bm, am := in(bl), in(al)
	var out []string
	for _, l := range bl {
		if am[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range al {
		if bm[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		out = append(out, "(same lines, different order or counts)")
	}
	return strings.Join(out, "\n")
}
