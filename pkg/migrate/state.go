package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
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
	Schema       string // resolved schema of the version table; "" when none
	SchemaExists bool
	Name         string // table name without schema
	Exists       bool   // a relation with that name exists in Schema
	Kind         string // pg_class.relkind when Exists
	Columns      []Column
	// Required are the version table's columns that goose's INSERT (version_id,
	// is_applied) leaves out but must be filled: NOT NULL, no default, not an
	// identity or generated column (checkRecordable).
	Required   []string
	Rows       []Row // by id; read only when the table looks like goose's and is readable
	CanRead    bool
	CanWrite   bool   // INSERT and DELETE, what goose does, and USAGE on an old serial id's sequence
	NoSeqUsage string // the id column's sequence when CanWrite is false for want of USAGE on it
	// IDSeq is where the id column's identity (or serial) sequence stands, when
	// the session may read it; nil otherwise (checkRecordable then skips it).
	IDSeq         *IDSequence
	Dirty         []DirtyRow // migrations stopped partway (see dirty.go)
	DirtyExists   bool       // a relation named like the dirty table exists
	DirtyWritable bool       // and the session can read, insert, update and delete its rows
	// DirtyKind is its pg_class.relkind, DirtyTypes its columns' types
	// (format_type) by name, DirtyRequired its columns an INSERT must fill
	// (NOT NULL, no default): what dirtyProblem checks.
	DirtyKind     string
	DirtyTypes    map[string]string
	DirtyRequired []string
	// LockHeldElsewhere: another session held the migration lock when dirty rows
	// were read, so they may belong to a migration still running (readDirtySettled).
	LockHeldElsewhere bool
	// The checksum table <table>_sums (checksum.go).
	SumsKind    string   // its pg_class.relkind; "" when absent
	SumsColumns []string // its columns, when it exists
	// SumsTypes are its columns' types (format_type) by name; SumsRequired its
	// other columns an INSERT must fill (NOT NULL, no default); SumsUnique: a
	// unique index on version alone, which every write's ON CONFLICT needs.
	SumsTypes    map[string]string
	SumsRequired []string
	SumsUnique   bool
	SumsReadable bool // SELECT
	SumsWritable bool // SELECT, INSERT, UPDATE and DELETE
	// Sums are the recorded checksums of the versions in Rows, by version; read
	// with the rows when the checksum table exists, has its columns and is readable.
	Sums        map[int64]SumRow
	CanCreate   bool // CREATE on Schema, needed when the table is missing
	CurrentUser string
	SessionUser string // the login role (current_user is --role's)
	// RoleSource says that CurrentUser is the login's role default, and which
	// one: "user" (ALTER ROLE login SET role), "database user" (... IN
	// DATABASE), "database" (ALTER DATABASE ... SET role); "" when it is not.
	RoleSource string
	// Elsewhere: with an unqualified --table and no version table in Schema,
	// the tables named like it or like its checksum table in other schemas,
	// which checkTable refuses: the search_path no longer leads to them.
	Elsewhere []Relation
	// ForeignSums: with no version table where --table points, the checksum
	// rows kept with the database's other version tables (readForeignSums).
	ForeignSums []ForeignSum
	UserTables  int // ordinary and partitioned tables outside the system schemas
	// InRecovery: the server is a standby (pg_is_in_recovery). ReadOnlySource:
	// where the sessions' default_transaction_read_only = on comes from
	// (pg_settings.source: client, user, database, database user,
	// configuration file, ...); "" when they are read-write by default.
	InRecovery     bool
	ReadOnlySource string
	ServerVersion  string
}

// ForeignSum is a checksum row of this step's kept with another version
// table of the database (its <table>_sums): version Version was applied there
// from a file whose sha256 was SHA256.
type ForeignSum struct {
	Table   Relation // the version table the checksum table belongs to
	Version int64
	SHA256  string
}

// foreignSumsQuery finds, in every schema, the checksum tables of other
// version tables (named <table>_sums, with a version and a sha256 column,
// next to a table named <table>), that the session may read; $1 and $2 are
// the schema and name of the version table the run uses, left out.
const foreignSumsQuery = `SELECT n.nspname::text, left(c.relname, -5)::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relname LIKE '%\_sums' AND NOT (n.nspname = $1::text AND c.relname = $2::text || '_sums')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)'
  AND has_table_privilege(c.oid, 'SELECT')
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'version' AND NOT a.attisdropped)
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'sha256' AND NOT a.attisdropped)
  AND EXISTS (SELECT FROM pg_catalog.pg_class v WHERE v.relnamespace = n.oid AND v.relname = left(c.relname, -5) AND v.relkind IN ('r', 'p'))
ORDER BY 1, 2`

// readForeignSums fills st.ForeignSums when the version table --table names
// does not exist: the checksum rows of the database's other version tables,
// which tell whether the directory's migrations were applied under another
// --table (checkForeignRecords). Before, a qualified --table pointing where
// no version table was (a schema the migrations leave alone, a typo) made
// the run apply every migration again (session14 finding 3).
func readForeignSums(ctx context.Context, q Querier, st *State) error {
	rows, err := q.QueryContext(ctx, foreignSumsQuery, pgx.QueryExecModeExec, st.Schema, st.Name)
	if err != nil {
		return fmt.Errorf("looking for other version tables' checksum tables: %w", err)
	}
	var tables []Relation
	for rows.Next() {
		var r Relation
		if err := rows.Scan(&r.Schema, &r.Name); err != nil {
			rows.Close()
			return fmt.Errorf("looking for other version tables' checksum tables: %w", err)
		}
		tables = append(tables, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("looking for other version tables' checksum tables: %w", err)
	}
	for _, t := range tables {
		sums := qualify(t.Schema, sumsName(t.Name))
		rows, err := q.QueryContext(ctx, "SELECT version::bigint, sha256::text FROM "+sums+" WHERE sha256 IS NOT NULL", pgx.QueryExecModeExec)
		if err != nil {
			return fmt.Errorf("reading %s: %w", sums, err)
		}
		for rows.Next() {
			f := ForeignSum{Table: t}
			if err := rows.Scan(&f.Version, &f.SHA256); err != nil {
				rows.Close()
				return fmt.Errorf("reading %s: %w", sums, err)
			}
			st.ForeignSums = append(st.ForeignSums, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", sums, err)
		}
	}
	return nil
}

// IDSequence is the sequence the version table's id column takes its values
// from: Next is what its next nextval returns, then Next+Increment, ...,
// within [Min, Max].
type IDSequence struct {
	Name                      string // schema-qualified, for SQL
	Next, Increment, Min, Max int64
	Cycle                     bool // past a bound it starts again at the other
	// Exhausted: the last value handed out is the bound, so the next nextval
	// fails (or, with Cycle, starts again at the other bound); Next is unset.
	Exhausted bool
}

// Relation is a table by schema and name, as the catalog spells them.
type Relation struct{ Schema, Name string }

// Qualified is the version table's name for SQL the operator can paste into psql.
func (s *State) Qualified() string { return qualify(s.Schema, s.Name) }

// qualify is schema.name (or name) for SQL, each part through dbconn.QuoteIdent.
func qualify(schema, name string) string {
	if schema == "" {
		return dbconn.QuoteIdent(name)
	}
	return dbconn.QuoteIdent(schema) + "." + dbconn.QuoteIdent(name)
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
		case !slices.Contains(want.types, c.Type):
			out = append(out, fmt.Sprintf("column %s is %s, goose uses %s", want.name, c.Type, want.types[0]))
		case want.notNull && !c.NotNull:
			out = append(out, fmt.Sprintf("column %s allows NULL", want.name))
		}
	}
	return out
}

// inspectQuery reads, in one statement, everything Inspect needs but the version
// table's rows: each query is a round trip, which is most of a --plan run's time.
const inspectQuery = `
SELECT x.s, n.oid IS NOT NULL, current_user::text, current_setting('server_version'),
       coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
       (SELECT count(*) FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN
          (SELECT oid FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)')),
       r.relkind::text,
       coalesce(has_table_privilege(r.oid, 'SELECT'), false),
       coalesce(has_table_privilege(r.oid, 'INSERT') AND has_table_privilege(r.oid, 'DELETE'), false),
       (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod), attnotnull,
                attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = '') ORDER BY attnum)::text
        FROM pg_attribute WHERE attrelid = r.oid AND attnum > 0 AND NOT attisdropped),
       (SELECT format('%I.%I', sn.nspname, sq.relname) FROM pg_depend d
        JOIN pg_class sq ON sq.oid = d.objid
        JOIN pg_namespace sn ON sn.oid = sq.relnamespace
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.refobjid = r.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'a' AND sq.relkind = 'S'
          AND a.attname = 'id' AND a.attidentity = ''
          AND CASE WHEN sq.relkind = 'S' THEN NOT has_sequence_privilege(sq.oid, 'USAGE') ELSE false END LIMIT 1),
       dt.relkind::text,
       coalesce(has_table_privilege(dt.oid, 'SELECT') AND has_table_privilege(dt.oid, 'INSERT')
                AND has_table_privilege(dt.oid, 'UPDATE') AND has_table_privilege(dt.oid, 'DELETE'), false),
       (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod),
                attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = '') ORDER BY attnum)::text
        FROM pg_attribute WHERE attrelid = dt.oid AND attnum > 0 AND NOT attisdropped),
       sm.relkind::text,
       (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod),
                attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = '') ORDER BY attnum)::text
        FROM pg_attribute WHERE attrelid = sm.oid AND attnum > 0 AND NOT attisdropped),
       EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = sm.oid AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indnatts = 1
                 AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'version'),
       coalesce(has_table_privilege(sm.oid, 'SELECT'), false),
       coalesce(has_table_privilege(sm.oid, 'SELECT') AND has_table_privilege(sm.oid, 'INSERT')
                AND has_table_privilege(sm.oid, 'UPDATE') AND has_table_privilege(sm.oid, 'DELETE'), false),
       session_user::text,
       CASE WHEN $1::text = '' AND r.oid IS NULL THEN
         (SELECT json_agg(json_build_array(en.nspname, ec.relname) ORDER BY ec.relname <> $2::text, en.nspname, ec.relname)::text
          FROM pg_class ec JOIN pg_namespace en ON en.oid = ec.relnamespace
          WHERE ec.relname IN ($2::text::name, $4::text::name) AND ec.relkind IN ('r', 'p') AND en.oid IS DISTINCT FROM n.oid
            AND en.nspname <> 'information_schema' AND en.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)') END,
       ids.name, ids.seqincrement, ids.seqmin, ids.seqmax, coalesce(ids.seqcycle, false), coalesce(ids.can_select, false), coalesce(ids.can_use, false),
       rd.source, rd.role, pg_catalog.pg_is_in_recovery(),
       (SELECT ps.source FROM pg_catalog.pg_settings ps WHERE ps.name = 'default_transaction_read_only' AND ps.setting = 'on')
FROM (SELECT coalesce(nullif($1::text, ''), current_schema()::text) AS s) AS x
LEFT JOIN pg_namespace n ON n.nspname = x.s
LEFT JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = $2::text::name
LEFT JOIN pg_class dt ON dt.relnamespace = n.oid AND dt.relname = $3::text::name
LEFT JOIN pg_class sm ON sm.relnamespace = n.oid AND sm.relname = $4::text::name
LEFT JOIN LATERAL (
  -- The id column's identity or serial sequence. Where it stands is read with
  -- the rows (readRows), after them: an id a row took is then always behind it.
  SELECT format('%I.%I', sn.nspname, sq.relname) AS name, ps.seqincrement, ps.seqmin, ps.seqmax, ps.seqcycle,
         has_sequence_privilege(sq.oid, 'SELECT') AS can_select, has_sequence_privilege(sq.oid, 'USAGE') AS can_use
  FROM pg_depend d
  JOIN pg_class sq ON sq.oid = d.objid AND sq.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = sq.relnamespace
  JOIN pg_sequence ps ON ps.seqrelid = sq.oid
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  WHERE d.refobjid = r.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND a.attname = 'id'
  LIMIT 1) ids ON true
LEFT JOIN LATERAL (
  -- The role every session of the login switches to by default (ALTER ROLE
  -- ... [IN DATABASE ...] SET role, ALTER DATABASE ... SET role), the most
  -- specific first, as the server applies them; pg_settings hides role.
  SELECT CASE WHEN s.setrole = 0 THEN 'database' WHEN s.setdatabase = 0 THEN 'user' ELSE 'database user' END AS source,
         substr(c, 6) AS role
  FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
  WHERE c LIKE 'role=%'
    AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
    AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
  ORDER BY s.setrole <> 0 AND s.setdatabase <> 0 DESC, s.setrole <> 0 DESC
  LIMIT 1) rd ON true`

// Inspect reads the version table and counts user tables. It only reads: it takes
// no lock beyond what SELECT takes and creates nothing. table is --table. It makes
// one round trip, two when the table is goose's and readable; q must be a pool of
// pgx's stdlib driver (its queries pass pgx.QueryExecModeExec, which skips the
// separate prepare round trip).
func Inspect(ctx context.Context, q Querier, table string) (*State, error) {
	st := &State{}
	schemaArg := ""
	st.Name = table
	if s, n, ok := strings.Cut(table, "."); ok {
		schemaArg, st.Name = s, n
	}
	var (
		schema, kind, columns, noSeq sql.NullString
		sumsKind, sumsCols           sql.NullString
		dirtyKind, dirtyCols         sql.NullString
		elsewhere                    sql.NullString
		canRead, canWrite            bool
		seqName                      sql.NullString
		seqInc, seqMin, seqMax       sql.NullInt64
		seqSelect, seqUse, seqCycle  bool
		roleSource, roleDefault      sql.NullString
		readOnly                     sql.NullString
	)
	err := q.QueryRowContext(ctx, inspectQuery, pgx.QueryExecModeExec, schemaArg, st.Name, dirtyName(st.Name), sumsName(st.Name)).Scan(
		&schema, &st.SchemaExists, &st.CurrentUser, &st.ServerVersion, &st.CanCreate, &st.UserTables,
		&kind, &canRead, &canWrite, &columns, &noSeq, &dirtyKind, &st.DirtyWritable, &dirtyCols,
		&sumsKind, &sumsCols, &st.SumsUnique, &st.SumsReadable, &st.SumsWritable, &st.SessionUser, &elsewhere,
		&seqName, &seqInc, &seqMin, &seqMax, &seqCycle, &seqSelect, &seqUse, &roleSource, &roleDefault,
		&st.InRecovery, &readOnly)
	if err != nil {
		return nil, fmt.Errorf("reading the schema and the version table %s from the catalog: %w", qualify(schemaArg, st.Name), err)
	}
	st.Schema = schema.String
	st.ReadOnlySource = readOnly.String
	if roleDefault.String == st.CurrentUser {
		st.RoleSource = roleSource.String
	}
	st.SumsKind = sumsKind.String
	if elsewhere.Valid {
		var rels [][2]string
		if err := json.Unmarshal([]byte(elsewhere.String), &rels); err != nil {
			return nil, fmt.Errorf("looking for %s in other schemas: %w", st.Name, err)
		}
		for _, r := range rels {
			st.Elsewhere = append(st.Elsewhere, Relation{Schema: r[0], Name: r[1]})
		}
	}
	st.DirtyKind, st.DirtyExists = dirtyKind.String, dirtyKind.Valid
	if dirtyCols.Valid {
		var cols [][3]any
		if err := json.Unmarshal([]byte(dirtyCols.String), &cols); err != nil {
			return nil, fmt.Errorf("reading the columns of %s: %w", st.dirtyTable(), err)
		}
		st.DirtyTypes = map[string]string{}
		for _, c := range cols {
			name, _ := c[0].(string)
			typ, _ := c[1].(string)
			required, _ := c[2].(bool)
			st.DirtyTypes[name] = typ
			if required && !slices.Contains(dirtyFilled, name) {
				st.DirtyRequired = append(st.DirtyRequired, name)
			}
		}
	}
	if sumsCols.Valid {
		var cols [][3]any
		if err := json.Unmarshal([]byte(sumsCols.String), &cols); err != nil {
			return nil, fmt.Errorf("reading the columns of %s: %w", st.sumsTable(), err)
		}
		st.SumsTypes = map[string]string{}
		for _, c := range cols {
			name, _ := c[0].(string)
			typ, _ := c[1].(string)
			required, _ := c[2].(bool)
			st.SumsColumns = append(st.SumsColumns, name)
			st.SumsTypes[name] = typ
			if required && !slices.Contains(sumsColumns, name) {
				st.SumsRequired = append(st.SumsRequired, name)
			}
		}
	}
	if !st.SchemaExists || !kind.Valid {
		if st.sumsUsable() { // the version table was dropped: what the records say
			if err := readRows(ctx, q, st, ""); err != nil {
				return nil, err
			}
		}
		// A migration stopped partway is one whatever became of the version
		// table: before, a run that found none did not read the dirty record
		// and applied every migration again, the stopped one included
		// (session13 finding 1).
		if st.SchemaExists && st.DirtyExists && st.dirtyProblem() == "" {
			if err := readDirtySettled(ctx, q, st); err != nil {
				return nil, err
			}
		}
		if err := readForeignSums(ctx, q, st); err != nil {
			return nil, err
		}
		return st, nil
	}
	st.Exists, st.Kind, st.CanRead, st.CanWrite = true, kind.String, canRead, canWrite && !noSeq.Valid
	st.NoSeqUsage = noSeq.String
	seqRead := "" // how readRows reads where the id sequence stands
	if seqName.Valid && (seqSelect || seqUse) {
		st.IDSeq = &IDSequence{Name: seqName.String, Increment: seqInc.Int64, Min: seqMin.Int64, Max: seqMax.Int64, Cycle: seqCycle}
		seqRead = "(SELECT last_value FROM " + seqName.String + "), (SELECT is_called FROM " + seqName.String + ")"
		if !seqSelect { // USAGE alone: its last value once called, NULL before
			seqRead = "pg_sequence_last_value(" + sqlLiteral(seqName.String) + "::regclass), true"
		}
	}
	if columns.Valid {
		var cols [][4]any
		if err := json.Unmarshal([]byte(columns.String), &cols); err != nil {
			return nil, fmt.Errorf("reading the columns of %s: %w", st.Qualified(), err)
		}
		for _, c := range cols {
			name, _ := c[0].(string)
			typ, _ := c[1].(string)
			notNull, _ := c[2].(bool)
			required, _ := c[3].(bool)
			st.Columns = append(st.Columns, Column{Name: name, Type: typ, NotNull: notNull})
			if required && name != "version_id" && name != "is_applied" {
				st.Required = append(st.Required, name)
			}
		}
	}
	if st.DirtyExists && st.dirtyProblem() == "" {
		if err := readDirtySettled(ctx, q, st); err != nil {
			return nil, err
		}
	}
	if len(st.ShapeProblems()) > 0 || !st.CanRead {
		st.IDSeq = nil
		return st, nil
	}
	if err := readRows(ctx, q, st, seqRead); err != nil {
		return nil, err
	}
	return st, nil
}

// readRows reads the version table's rows into st, in id order, and in the same
// query the checksum recorded for each version, when there is a checksum table
// to read (no round trip of its own), records of versions without a row
// included. Without a version table (st.Exists false), only the records.
// seq, when not "", reads where the id sequence (st.IDSeq) stands, its
// last_value and is_called, in the same statement after the rows' snapshot:
// any id a visible row took from it is then behind what it hands out next.
func readRows(ctx context.Context, q Querier, st *State, seq string) error {
	versions := pgx.Identifier{st.Schema, st.Name}.Sanitize()
	next := "NULL::bigint, NULL::boolean"
	if seq != "" {
		next = seq
	}
	query := `SELECT v.id::bigint, v.version_id::bigint, v.is_applied, NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text, ` + next + ` FROM ` +
		versions + ` v ORDER BY v.id`
	switch {
	case st.sumsUsable() && st.Exists:
		query = `SELECT v.id::bigint, v.version_id::bigint, v.is_applied, s.version, s.version_row_id, s.file, s.sha256, s.recorded, s.run_id, ` + next + ` FROM ` +
			versions + ` v FULL JOIN ` + st.sumsTable() + ` s ON s.version = v.version_id ORDER BY v.id NULLS LAST, s.version`
	case st.sumsUsable():
		query = `SELECT NULL::bigint, NULL::bigint, NULL::boolean, s.version, s.version_row_id, s.file, s.sha256, s.recorded, s.run_id, NULL::bigint, NULL::boolean FROM ` +
			st.sumsTable() + ` s ORDER BY s.version`
	}
	nextKnown := false
	rows, err := q.QueryContext(ctx, query, pgx.QueryExecModeExec)
	if err != nil {
		return fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, version, sumVersion, rowID sql.NullInt64
			applied                        sql.NullBool
			file, sum, recordedHow, runID  sql.NullString
			seqLast                        sql.NullInt64
			seqCalled                      sql.NullBool
		)
		if err := rows.Scan(&id, &version, &applied, &sumVersion, &rowID, &file, &sum, &recordedHow, &runID, &seqLast, &seqCalled); err != nil {
			return fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
		}
		if q := st.IDSeq; q != nil && seqLast.Valid && !nextKnown {
			q.Next, nextKnown = seqLast.Int64, true
			if seqCalled.Bool { // the next follows the last, unless that is past its bound
				if (q.Increment > 0 && q.Next <= q.Max-q.Increment) || (q.Increment < 0 && q.Next >= q.Min-q.Increment) {
					q.Next += q.Increment
				} else {
					q.Exhausted = true
				}
			}
		}
		if id.Valid { // a version row (not only a record)
			st.Rows = append(st.Rows, Row{ID: id.Int64, Version: version.Int64, Applied: applied.Bool})
		}
		if sumVersion.Valid {
			if st.Sums == nil {
				st.Sums = map[int64]SumRow{}
			}
			st.Sums[sumVersion.Int64] = SumRow{Version: sumVersion.Int64, VersionRowID: rowID.Int64, File: file.String, SHA256: sum.String, Recorded: recordedHow.String, RunID: runID.String}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the version table %s: %w", st.Qualified(), err)
	}
	if !nextKnown {
		st.IDSeq = nil // no rows (nothing an id could collide with), or not readable
	}
	return nil
}
