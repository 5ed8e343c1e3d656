package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is what Inspect needs: *sql.DB and *sql.Conn both fit.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Column is one column of the version table.
type Column struct {
	Name    string
	Type    string // format_type(), e.g. "bigint"
	NotNull bool
}

// Row is one row of the version table.
type Row struct {
	ID      int64
	Version int64
	Applied bool
}

// State is what the database holds, read without changing anything.
type State struct {
	Schema        string // resolved schema of the version table; "" when none
	SchemaExists  bool
	Name          string // table name without schema
	Exists        bool   // a relation with that name exists in Schema
	Kind          string // pg_class.relkind when Exists
	Columns       []Column
	Rows          []Row // by id; read only when the table looks like goose's and is readable
	CanRead       bool
	CanWrite      bool // INSERT and DELETE, what goose does
	CanCreate     bool // CREATE on Schema, needed when the table is missing
	CurrentUser   string
	UserTables    int // ordinary and partitioned tables outside the system schemas
	ServerVersion string
}

// Qualified is the version table's name for SQL the operator can paste into psql.
func (s *State) Qualified() string { return qualify(s.Schema, s.Name) }

var simpleIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func qualify(schema, name string) string {
	part := func(s string) string {
		if simpleIdent.MatchString(s) {
			return s
		}
		return pgx.Identifier{s}.Sanitize()
	}
	if schema == "" {
		return part(name)
	}
	return part(schema) + "." + part(name)
}

// gooseShape lists the columns goose reads and writes, with the types any goose
// version has created them with.
var gooseShape = []struct {
	name    string
	types   []string
	notNull bool
}{
	{"id", []string{"integer", "bigint"}, true},
	{"version_id", []string{"bigint", "integer"}, true},
	{"is_applied", []string{"boolean"}, true},
	{"tstamp", []string{"timestamp without time zone", "timestamp with time zone"}, false},
}

// ShapeProblems lists how the table differs from goose's; empty means it is goose's.
func (s *State) ShapeProblems() []string {
	if !s.Exists {
		return nil
	}
	if s.Kind != "r" && s.Kind != "p" {
		return []string{fmt.Sprintf("it is not a table (relkind %q)", s.Kind)}
	}
	cols := map[string]Column{}
	for _, c := range s.Columns {
		cols[c.Name] = c
	}
	var out []string
	for _, want := range gooseShape {
		c, ok := cols[want.name]
		switch {
		case !ok:
			out = append(out, "column "+want.name+" is missing")
		case !contains(want.types, c.Type):
			out = append(out, fmt.Sprintf("column %s is %s, goose uses %s", want.name, c.Type, want.types[0]))
		case want.notNull && !c.NotNull:
			out = append(out, fmt.Sprintf("column %s allows NULL", want.name))
		}
	}
	return out
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Inspect reads the version table and counts user tables. It only reads: it takes
// no lock beyond what SELECT takes and creates nothing. table is --table.
func Inspect(ctx context.Context, q Querier, table string) (*State, error) {
	st := &State{}
	var schemaArg sql.NullString
	st.Name = table
	if s, n, ok := strings.Cut(table, "."); ok {
		schemaArg, st.Name = sql.NullString{String: s, Valid: true}, n
	}
	var schema sql.NullString
	err := q.QueryRowContext(ctx, `
		SELECT s, s IS NOT NULL AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s),
		       current_user, current_setting('server_version'),
		       s IS NOT NULL AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)
		           AND has_schema_privilege((SELECT oid FROM pg_namespace WHERE nspname = s), 'CREATE')
		FROM (SELECT coalesce($1::text, current_schema()::text) AS s) AS x`, schemaArg,
	).Scan(&schema, &st.SchemaExists, &st.CurrentUser, &st.ServerVersion, &st.CanCreate)
	if err != nil {
		return nil, fmt.Errorf("reading the current schema: %w", err)
	}
	st.Schema = schema.String
	if err := q.QueryRowContext(ctx, `
		SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
		  AND n.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)'`,
	).Scan(&st.UserTables); err != nil {
		return nil, fmt.Errorf("counting tables: %w", err)
	}
	if !st.SchemaExists {
		return st, nil
	}
	var oid uint32
	err = q.QueryRowContext(ctx, `
		SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, st.Schema, st.Name).Scan(&oid, &st.Kind)
	if err == sql.ErrNoRows {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up the version table %s: %w", st.Qualified(), err)
	}
	st.Exists = true
	if err := q.QueryRowContext(ctx, `
		SELECT has_table_privilege($1::oid, 'SELECT'), has_table_privilege($1::oid, 'INSERT') AND has_table_privilege($1::oid, 'DELETE')`,
		oid).Scan(&st.CanRead, &st.CanWrite); err != nil {
		return nil, fmt.Errorf("checking privileges on %s: %w", st.Qualified(), err)
	}
	rows, err := q.QueryContext(ctx, `
		SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
		WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
	}
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
		}
		st.Columns = append(st.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
	}
	if len(st.ShapeProblems()) > 0 || !st.CanRead {
		return st, nil
	}
	rows, err = q.QueryContext(ctx, `SELECT id::bigint, version_id::bigint, is_applied FROM `+
		pgx.Identifier{st.Schema, st.Name}.Sanitize()+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.ID, &r.Version, &r.Applied); err != nil {
			return nil, fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
		}
		st.Rows = append(st.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
	}
	return st, nil
}
