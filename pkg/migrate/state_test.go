package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestInspect checks every field Inspect reads with its one catalog query (and the
// rows query), against states set up by hand.
func TestInspect(t *testing.T) {
	reader := plainRole(t, "mig_reader")
	nobody := plainRole(t, "mig_nobody")
	d := newDB(t)
	db := d.sqlDB(t, nil)
	ctx := context.Background()
	inspect := func(t *testing.T, q Querier, table string) *State {
		t.Helper()
		st, err := Inspect(ctx, q, table)
		if err != nil {
			t.Fatalf("Inspect(%s): %v", table, err)
		}
		old, err := inspectSeparately(ctx, q, table)
		if err != nil {
			t.Fatalf("inspectSeparately(%s): %v", table, err)
		}
		if !reflect.DeepEqual(st, old) {
			t.Fatalf("Inspect(%s) = %+v\nwith one query per fact:  %+v", table, st, old)
		}
		return st
	}

	t.Run("fresh database", func(t *testing.T) {
		st := inspect(t, db, DefaultTable)
		if st.Schema != "public" || !st.SchemaExists || st.Name != DefaultTable || st.Exists || st.Kind != "" ||
			!st.CanCreate || st.CurrentUser != "postgres" || !strings.HasPrefix(st.ServerVersion, "15") ||
			st.UserTables != 0 || st.Columns != nil || st.Rows != nil || st.CanRead || st.CanWrite {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("missing schema", func(t *testing.T) {
		st := inspect(t, db, "nosuch.goose_db_version")
		if st.Schema != "nosuch" || st.SchemaExists || st.Exists || st.CanCreate || st.Name != "goose_db_version" {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("no schema on the search path", func(t *testing.T) {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, "SET search_path = ''"); err != nil {
			t.Fatal(err)
		}
		defer c.ExecContext(ctx, "RESET search_path")
		st := inspect(t, c, DefaultTable)
		if st.Schema != "" || st.SchemaExists || st.Exists || st.CanCreate {
			t.Fatalf("%+v", st)
		}
	})

	dir := writeDir(t, subset(threeTables, "00001_a.sql", "00002_b.sql"))
	mustRun(t, d.url(), dir)
	d.exec("CREATE SCHEMA insp")
	d.exec(`CREATE TABLE insp.odd (id bigint NOT NULL, "we""ird\col ""x""" varchar(7), gone int, is_applied boolean NOT NULL)`)
	d.exec("ALTER TABLE insp.odd DROP COLUMN gone")
	d.exec("CREATE VIEW insp.v AS SELECT 1 AS id")
	d.exec("GRANT USAGE ON SCHEMA insp TO " + reader + ", " + nobody)
	d.exec("GRANT SELECT ON goose_db_version, insp.odd TO " + reader)
	d.exec("GRANT INSERT ON insp.odd TO " + reader)

	t.Run("goose table", func(t *testing.T) {
		st := inspect(t, db, DefaultTable)
		wantCols := []Column{{"id", "integer", true}, {"version_id", "bigint", true}, {"is_applied", "boolean", true}, {"tstamp", "timestamp without time zone", true}}
		wantRows := []Row{{1, 0, true}, {2, 1, true}, {3, 2, true}}
		if st.Schema != "public" || !st.Exists || st.Kind != "r" || !st.CanRead || !st.CanWrite || st.UserTables != 5 ||
			!reflect.DeepEqual(st.Columns, wantCols) || !reflect.DeepEqual(st.Rows, wantRows) || len(st.ShapeProblems()) != 0 {
			t.Fatalf("%+v", st)
		}
		// The checksum table, read with the rows: each applied version's row
		// belongs to its version row.
		if st.SumsKind != "r" || !st.SumsReadable || !st.SumsWritable || st.sumsProblem() != "" || len(st.Sums) != 2 ||
			st.Sums[1].VersionRowID != 2 || st.Sums[2].VersionRowID != 3 || st.Sums[1].File != "00001_a.sql" ||
			st.Sums[1].SHA256 != sha256Hex(threeTables["00001_a.sql"]) || st.Sums[2].Recorded != "applied" {
			t.Fatalf("checksums: %+v", st)
		}
	})
	t.Run("other table", func(t *testing.T) {
		st := inspect(t, db, "insp.odd")
		wantCols := []Column{{"id", "bigint", true}, {`we"ird\col "x"`, "character varying(7)", false}, {"is_applied", "boolean", true}}
		if st.Schema != "insp" || !st.Exists || st.Kind != "r" || !reflect.DeepEqual(st.Columns, wantCols) || st.Rows != nil ||
			len(st.ShapeProblems()) == 0 || !reflect.DeepEqual(st.Required, []string{"id"}) {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("view", func(t *testing.T) {
		st := inspect(t, db, "insp.v")
		if !st.Exists || st.Kind != "v" || len(st.Columns) != 1 || st.Rows != nil {
			t.Fatalf("%+v", st)
		}
	})
	asRole := func(t *testing.T, role string) *sql.Conn {
		t.Helper()
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, "SET ROLE "+role); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = c.ExecContext(ctx, "RESET ROLE")
			c.Close()
		})
		return c
	}
	t.Run("read-only role", func(t *testing.T) {
		c := asRole(t, reader)
		st := inspect(t, c, DefaultTable)
		if st.CurrentUser != reader || !st.CanRead || st.CanWrite || st.CanCreate || len(st.Rows) != 3 {
			t.Fatalf("%+v", st)
		}
		if st := inspect(t, c, "insp.odd"); !st.CanRead || st.CanWrite {
			t.Fatalf("SELECT and INSERT but no DELETE: %+v", st)
		}
	})
	t.Run("statements", func(t *testing.T) {
		tr := &pgenv.QueryCounter{}
		counted := d.sqlDB(t, tr)
		if err := counted.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		tr.Queries, tr.Prepares = 0, 0
		if _, err := Inspect(ctx, counted, DefaultTable); err != nil {
			t.Fatal(err)
		}
		// Each query and each prepare is a round trip.
		if tr.Queries != 2 || tr.Prepares != 0 {
			t.Fatalf("Inspect ran %d queries and %d prepares, want 2 queries (catalog, rows) and no prepare", tr.Queries, tr.Prepares)
		}
	})
	t.Run("role without privileges", func(t *testing.T) {
		st := inspect(t, asRole(t, nobody), DefaultTable)
		if st.CurrentUser != nobody || !st.Exists || st.CanRead || st.CanWrite || st.CanCreate || st.Rows != nil || len(st.Columns) != 4 {
			t.Fatalf("%+v", st)
		}
	})
}

// inspectSeparately is Inspect as it was written with one query per fact, kept to
// check that the merged query reads the same state.
func inspectSeparately(ctx context.Context, q Querier, table string) (*State, error) {
	st := &State{}
	var schemaArg sql.NullString
	st.Name = table
	if s, n, ok := strings.Cut(table, "."); ok {
		schemaArg, st.Name = sql.NullString{String: s, Valid: true}, n
	}
	var schema sql.NullString
	err := q.QueryRowContext(ctx, `
		SELECT s, s IS NOT NULL AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s),
		       current_user, session_user, current_setting('server_version'),
		       s IS NOT NULL AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)
		           AND has_schema_privilege((SELECT oid FROM pg_namespace WHERE nspname = s), 'CREATE')
		FROM (SELECT coalesce($1::text, current_schema()::text) AS s) AS x`, schemaArg,
	).Scan(&schema, &st.SchemaExists, &st.CurrentUser, &st.SessionUser, &st.ServerVersion, &st.CanCreate)
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
	elsewhere := func() (*State, error) {
		if schemaArg.Valid {
			return st, nil
		}
		rows, err := q.QueryContext(ctx, `
			SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relname IN ($1, $2) AND c.relkind IN ('r', 'p') AND n.nspname IS DISTINCT FROM $3
			  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)'
			ORDER BY c.relname <> $1, 1, 2`, st.Name, sumsName(st.Name), schema)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var r Relation
			if err := rows.Scan(&r.Schema, &r.Name); err != nil {
				return nil, err
			}
			st.Elsewhere = append(st.Elsewhere, r)
		}
		return st, rows.Err()
	}
	if !st.SchemaExists {
		return elsewhere()
	}
	var oid uint32
	err = q.QueryRowContext(ctx, `
		SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, st.Schema, st.Name).Scan(&oid, &st.Kind)
	if errors.Is(err, sql.ErrNoRows) {
		return elsewhere()
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
		SELECT attname, format_type(atttypid, atttypmod), attnotnull, attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = ''
		FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
	}
	for rows.Next() {
		var (
			c        Column
			required bool
		)
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &required); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
		}
		st.Columns = append(st.Columns, c)
		if required && c.Name != "version_id" && c.Name != "is_applied" {
			st.Required = append(st.Required, c.Name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
	}
	if err := inspectSumsSeparately(ctx, q, st); err != nil {
		return nil, err
	}
	if len(st.ShapeProblems()) > 0 || !st.CanRead {
		return st, nil
	}
	if err := readRows(ctx, q, st, ""); err != nil {
		return nil, err
	}
	if len(st.Rows) > 0 {
		if err := idSeqSeparately(ctx, q, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// idSeqSeparately reads where the id column's sequence stands, by reading the
// sequence itself when the session may (SELECT), else by pg_sequence_last_value.
func idSeqSeparately(ctx context.Context, q Querier, st *State) error {
	var name sql.NullString
	if err := q.QueryRowContext(ctx, `SELECT pg_get_serial_sequence($1, 'id')`, st.Qualified()).Scan(&name); err != nil || !name.Valid {
		return err
	}
	seq := &IDSequence{Name: name.String}
	var canSelect, canUse bool
	if err := q.QueryRowContext(ctx, `SELECT seqincrement, seqmin, seqmax, has_sequence_privilege(seqrelid, 'SELECT'), has_sequence_privilege(seqrelid, 'USAGE')
		FROM pg_sequence WHERE seqrelid = $1::regclass`, name.String).Scan(&seq.Increment, &seq.Min, &seq.Max, &canSelect, &canUse); err != nil {
		return err
	}
	switch {
	case canSelect:
		var called bool
		if err := q.QueryRowContext(ctx, `SELECT last_value, is_called FROM `+name.String).Scan(&seq.Next, &called); err != nil {
			return err
		}
		if called {
			seq.Next += seq.Increment
		}
	case canUse:
		var last sql.NullInt64
		if err := q.QueryRowContext(ctx, `SELECT pg_sequence_last_value($1::regclass)`, name.String).Scan(&last); err != nil || !last.Valid {
			return err
		}
		seq.Next = last.Int64 + seq.Increment
	default:
		return nil
	}
	st.IDSeq = seq
	return nil
}

// inspectSumsSeparately reads the checksum table's kind, columns and privileges
// with one query per fact.
func inspectSumsSeparately(ctx context.Context, q Querier, st *State) error {
	var oid uint32
	err := q.QueryRowContext(ctx, `
		SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, st.Schema, sumsName(st.Name)).Scan(&oid, &st.SumsKind)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up the checksum table: %w", err)
	}
	if err := q.QueryRowContext(ctx, `
		SELECT has_table_privilege($1::oid, 'SELECT'), has_table_privilege($1::oid, 'SELECT') AND has_table_privilege($1::oid, 'INSERT')
		       AND has_table_privilege($1::oid, 'UPDATE') AND has_table_privilege($1::oid, 'DELETE')`,
		oid).Scan(&st.SumsReadable, &st.SumsWritable); err != nil {
		return fmt.Errorf("checking privileges on the checksum table: %w", err)
	}
	if err := q.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = $1::oid AND indisunique AND indisvalid AND indimmediate AND indnatts = 1
		       AND indpred IS NULL AND indexprs IS NULL
		       AND indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = $1::oid AND attname = 'version' AND NOT attisdropped))`,
		oid).Scan(&st.SumsUnique); err != nil {
		return fmt.Errorf("looking for the checksum table's unique index: %w", err)
	}
	rows, err := q.QueryContext(ctx, `SELECT attname, format_type(atttypid, atttypmod), attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = ''
		FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return fmt.Errorf("reading the columns of the checksum table: %w", err)
	}
	defer rows.Close()
	st.SumsTypes = map[string]string{}
	for rows.Next() {
		var (
			c, typ   string
			required bool
		)
		if err := rows.Scan(&c, &typ, &required); err != nil {
			return err
		}
		st.SumsColumns = append(st.SumsColumns, c)
		st.SumsTypes[c] = typ
		if required && !slices.Contains(sumsColumns, c) {
			st.SumsRequired = append(st.SumsRequired, c)
		}
	}
	return rows.Err()
}
