package sqlrisk

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Additive tells whether stmt may run while the application's current
// version keeps running: it only adds things that version does not use, takes
// no lock stronger than ADD COLUMN's brief ACCESS EXCLUSIVE, rewrites nothing
// and changes nothing the running version reads or writes. The test is an
// allowlist: a statement that is not one of the forms below, or that the
// parser rejects, is not additive (when unsure, the application is stopped).
//
//   - CREATE TABLE, not PARTITION OF or INHERITS but of a table an earlier
//     pending statement creates
//   - CREATE INDEX CONCURRENTLY outside a transaction, not UNIQUE, without
//     expressions, and with no predicate beyond comparisons and NULL tests
//   - CREATE INDEX, ALTER TABLE and INSERT of constant rows (VALUES) into a
//     table an earlier pending statement creates (in no schema yet), but for
//     what reaches another table
//   - ALTER TABLE whose every subcommand is ADD COLUMN of a type that is not a
//     domain, with no default or a constant one, NOT NULL only with a default,
//     and no other constraint (no PRIMARY KEY, UNIQUE, REFERENCES, CHECK,
//     identity, generated or serial), named like no function of the table's
//     rows, on a table whose rows no function returns
//   - CREATE SEQUENCE, CREATE SCHEMA (without elements), CREATE TYPE (enum,
//     composite, range)
//   - CREATE VIEW without OR REPLACE; CREATE FUNCTION or PROCEDURE without OR
//     REPLACE, of a name no routine or type has in any schema
//   - the tables, views, sequences and types above only of a name no table,
//     view, sequence or type has in another schema
//   - COMMENT ON, GRANT (not REVOKE, and not USAGE on a schema)
//   - SET (LOCAL) statement_timeout, or lock_timeout to at most MaxLockTimeout
//
// why says what makes a statement not additive; it is empty when ok. The
// catalog is asked which type a new column has; without one, no ADD COLUMN
// is additive.
func Additive(ctx context.Context, cat Catalog, stmt Statement) (ok bool, why string, err error) {
	return new(Run).Additive(ctx, cat, stmt)
}

// Run judges the pending statements of one plan in order. It remembers the
// tables their CREATE TABLEs make, the only new relations constant rows may
// go into: a view of a new name can pass them on to a table in use.
type Run struct {
	created map[string]bool
}

// Additive is the package's Additive for the run's next statement.
func (r *Run) Additive(ctx context.Context, cat Catalog, stmt Statement) (ok bool, why string, err error) {
	text := stmt.SQL
	inTx := stmt.InTx
	if pieces, split := splitStatements(text); split {
		inTx = inTx || len(pieces) > 1
		if len(pieces) == 0 {
			return true, "", nil // comments only
		}
		for _, p := range pieces {
			// Rows are parsed only in small amounts, to see whether a table
			// this run creates is all they go to: a data migration can be
			// megabytes of rows.
			if isData(p) && (len(p) > maxParsedRows || strings.EqualFold(firstWord(p), "COPY")) {
				return false, strings.ToUpper(firstWord(p)) + " changes rows the running version reads", nil
			}
		}
	}
	tree, err := parse(text)
	if err != nil {
		return false, "", fmt.Errorf("%s:%d: %w", stmt.File, stmt.Line, err)
	}
	inTx = inTx || len(tree.GetStmts()) > 1
	for _, raw := range tree.GetStmts() {
		if why := r.additive(ctx, cat, raw.GetStmt(), inTx); why != "" {
			return false, why, nil
		}
		if c := raw.GetStmt().GetCreateStmt(); c != nil {
			if r.created == nil {
				r.created = map[string]bool{}
			}
			r.created[c.GetRelation().GetRelname()] = true
		}
	}
	return true, "", nil
}

// MaxLockTimeout is the longest lock_timeout an additive migration may set:
// the migrate step's default --lock-timeout, which bounds how long the brief
// locks of the additive forms can hold the running version's queries behind
// them while they wait.
const MaxLockTimeout = 10 * time.Second

// setDuration is the duration a SET of a time setting gives (PostgreSQL's
// units; a bare number is milliseconds); ok is false for DEFAULT, RESET or a
// value it cannot read.
func setDuration(s *pg.VariableSetStmt) (d time.Duration, ok bool) {
	if s.GetKind() != pg.VariableSetKind_VAR_SET_VALUE || len(s.GetArgs()) != 1 {
		return 0, false
	}
	c := s.GetArgs()[0].GetAConst()
	var v string
	switch {
	case c.GetIval() != nil:
		v = strconv.Itoa(int(c.GetIval().GetIval()))
	case c.GetFval() != nil:
		v = c.GetFval().GetFval()
	case c.GetSval() != nil:
		v = c.GetSval().GetSval()
	default:
		return 0, false
	}
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := v, "ms"
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[unit]
	if err != nil || scale == 0 {
		return 0, false
	}
	return time.Duration(f * float64(scale)), true
}

// additive is why n is not additive, or "" when it is.
func (r *Run) additive(ctx context.Context, cat Catalog, n *pg.Node, inTx bool) string {
	switch {
	case n.GetCreateStmt() != nil:
		s := n.GetCreateStmt()
		// A partition or child of a table this run creates reaches nothing in use.
		for _, parent := range s.GetInhRelations() {
			switch {
			case newRelation(ctx, cat, parent.GetRangeVar()):
			case s.GetPartbound() != nil:
				return "CREATE TABLE ... PARTITION OF attaches a partition to a table the running version uses"
			default:
				return "CREATE TABLE ... INHERITS adds rows to what the running version reads from its parent"
			}
		}
		return newTypeName(ctx, cat, s.GetRelation().GetSchemaname(), s.GetRelation().GetRelname())
	case n.GetIndexStmt() != nil:
		s := n.GetIndexStmt()
		switch {
		case s.GetConcurrent() && inTx:
			return "CREATE INDEX CONCURRENTLY inside a transaction fails"
		case newRelation(ctx, cat, s.GetRelation()):
			return ""
		case !s.GetConcurrent():
			return "CREATE INDEX without CONCURRENTLY blocks writes while it reads the table"
		case inTx:
			return "CREATE INDEX CONCURRENTLY inside a transaction fails"
		case s.GetUnique():
			return "a UNIQUE index can make the running version's inserts and updates fail"
		case computedIndex(s):
			return "an index expression or predicate is computed on each of the running version's writes, which fail where it fails (a cast, a division)"
		}
		return ""
	case n.GetAlterTableStmt() != nil:
		return addColumnsOnly(ctx, cat, n.GetAlterTableStmt())
	case n.GetCreateSeqStmt() != nil:
		rv := n.GetCreateSeqStmt().GetSequence()
		return newTypeName(ctx, cat, rv.GetSchemaname(), rv.GetRelname())
	case n.GetCompositeTypeStmt() != nil:
		rv := n.GetCompositeTypeStmt().GetTypevar()
		return newTypeName(ctx, cat, rv.GetSchemaname(), rv.GetRelname())
	case n.GetCreateEnumStmt() != nil:
		schema, name := splitName(n.GetCreateEnumStmt().GetTypeName())
		return newTypeName(ctx, cat, schema, name)
	case n.GetCreateRangeStmt() != nil:
		// A range type brings a multirange type and constructor functions of
		// both names.
		s := n.GetCreateRangeStmt()
		schema, name := splitName(s.GetTypeName())
		multi := name + "_multirange"
		if i := strings.Index(name, "range"); i >= 0 {
			multi = name[:i] + "multi" + name[i:]
		}
		for _, p := range s.GetParams() {
			if d := p.GetDefElem(); d.GetDefname() == "multirange_type_name" {
				_, multi = splitName(d.GetArg().GetTypeName().GetNames())
			}
		}
		for _, why := range []string{newTypeName(ctx, cat, schema, name), newTypeName(ctx, cat, schema, multi),
			newRoutineName(ctx, cat, name), newRoutineName(ctx, cat, multi)} {
			if why != "" {
				return why
			}
		}
		return ""
	case n.GetCommentStmt() != nil:
		return ""
	case n.GetInsertStmt() != nil:
		s := n.GetInsertStmt()
		if !r.created[s.GetRelation().GetRelname()] {
			return "INSERT changes rows the running version reads"
		}
		return newRows(ctx, cat, s)
	case n.GetCreateSchemaStmt() != nil:
		if len(n.GetCreateSchemaStmt().GetSchemaElts()) > 0 {
			return "CREATE SCHEMA with elements of its own"
		}
		return ""
	case n.GetViewStmt() != nil:
		s := n.GetViewStmt()
		if s.GetReplace() {
			return "CREATE OR REPLACE VIEW can change a view the running version reads"
		}
		return newTypeName(ctx, cat, s.GetView().GetSchemaname(), s.GetView().GetRelname())
	case n.GetCreateFunctionStmt() != nil:
		s := n.GetCreateFunctionStmt()
		if s.GetReplace() {
			return "CREATE OR REPLACE FUNCTION can change a function the running version calls"
		}
		_, name := splitName(s.GetFuncname())
		return newRoutineName(ctx, cat, name)
	case n.GetGrantStmt() != nil:
		s := n.GetGrantStmt()
		if !s.GetIsGrant() {
			return "REVOKE can take away what the running version uses"
		}
		if s.GetObjtype() == pg.ObjectType_OBJECT_SCHEMA {
			// A search_path skips the schemas its role may not use.
			usage := len(s.GetPrivileges()) == 0 // ALL
			for _, p := range s.GetPrivileges() {
				usage = usage || strings.EqualFold(p.GetAccessPriv().GetPrivName(), "usage")
			}
			if usage {
				return "GRANT USAGE ON SCHEMA puts its tables, types and functions on the search_path of roles that skipped it, in front of those in later schemas"
			}
		}
		return ""
	case n.GetVariableSetStmt() != nil:
		s := n.GetVariableSetStmt()
		switch strings.ToLower(s.GetName()) {
		case "statement_timeout":
			return ""
		case "lock_timeout":
			if d, ok := setDuration(s); ok && d > 0 && d <= MaxLockTimeout {
				return ""
			}
			return "SET lock_timeout to 0, its default or above " + MaxLockTimeout.String() + " lets ADD COLUMN's ACCESS EXCLUSIVE wait behind a long transaction with every query on the table waiting behind it"
		}
		return "SET " + s.GetName() + " changes how the next statements are read"
	}
	return kindOf(n) + " is not one of the additive statements"
}

// addColumnsOnly is why s is not an ALTER TABLE of additive ADD COLUMNs.
func addColumnsOnly(ctx context.Context, cat Catalog, s *pg.AlterTableStmt) string {
	if s.GetObjtype() != pg.ObjectType_OBJECT_TABLE {
		return kindOf(&pg.Node{Node: &pg.Node_AlterTableStmt{AlterTableStmt: s}}) + " is not one of the additive statements"
	}
	if newRelation(ctx, cat, s.GetRelation()) {
		return ownChangesOnly(s)
	}
	for _, c := range s.GetCmds() {
		cmd := c.GetAlterTableCmd()
		cd := cmd.GetDef().GetColumnDef()
		if cmd == nil || cmd.GetSubtype() != pg.AlterTableType_AT_AddColumn || cd == nil {
			return "ALTER TABLE does more than ADD COLUMN"
		}
		col := cd.GetColname()
		if cd.GetIdentity() != "" || cd.GetGenerated() != "" {
			return "ADD COLUMN " + col + " is an identity or generated column (every row is written)"
		}
		notNull, hasDefault := cd.GetIsNotNull(), cd.GetRawDefault() != nil
		for _, cc := range cd.GetConstraints() {
			con := cc.GetConstraint()
			switch con.GetContype() {
			case pg.ConstrType_CONSTR_NULL:
			case pg.ConstrType_CONSTR_NOTNULL:
				notNull = true
			case pg.ConstrType_CONSTR_DEFAULT:
				if !constant(con.GetRawExpr()) {
					return "ADD COLUMN " + col + " has a default that is not a constant"
				}
				// DEFAULT NULL fills nothing in for the old version's inserts
				hasDefault = !isNull(con.GetRawExpr())
			default:
				return "ADD COLUMN " + col + " adds a constraint (PRIMARY KEY, UNIQUE, REFERENCES, CHECK, identity or generated)"
			}
		}
		if cd.GetRawDefault() != nil && !constant(cd.GetRawDefault()) {
			return "ADD COLUMN " + col + " has a default that is not a constant"
		}
		if notNull && !hasDefault {
			return "ADD COLUMN " + col + " is NOT NULL without a default: the running version's inserts fail"
		}
		if why := plainType(ctx, cat, cd.GetTypeName()); why != "" {
			return "ADD COLUMN " + col + ": " + why
		}
		if why := computedField(ctx, cat, s.GetRelation(), col); why != "" {
			return "ADD COLUMN " + col + ": " + why
		}
	}
	return returnedRows(ctx, cat, s.GetRelation())
}

// returnedRows is why a new column breaks a function declared to return
// rel's rows: what its body returns must have exactly rel's columns, and a
// body that names them fails on every call once there is one more (42P13,
// 42804).
func returnedRows(ctx context.Context, cat Catalog, rel *pg.RangeVar) string {
	if cat == nil {
		return "whether a function returns the table's rows is not known without the database"
	}
	var name sql.NullString
	err := cat.QueryRowContext(ctx, `SELECT min(oid::regprocedure::text) FROM pg_proc WHERE prorettype = (SELECT reltype FROM pg_class WHERE oid = to_regclass($1))`,
		qualified(rel)).Scan(&name)
	switch {
	case err != nil:
		return "whether a function returns the table's rows could not be looked up"
	case name.Valid:
		return "function " + name.String + " returns the table's rows, and a body naming their columns fails once there is one more"
	}
	return ""
}

// computedField is why a new column col of rel hides a function: x.col calls
// col(x) only while rel has no column col, so the running version's queries
// would read the new, empty column instead.
func computedField(ctx context.Context, cat Catalog, rel *pg.RangeVar, col string) string {
	var exists bool
	err := cat.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_proc WHERE proname = $1 AND pronargs >= 1
		AND proargtypes[0] = (SELECT reltype FROM pg_class WHERE oid = to_regclass($2)))`, col, qualified(rel)).Scan(&exists)
	switch {
	case err != nil:
		return "whether a function " + col + " of the table's rows exists could not be looked up"
	case exists:
		return "a function " + col + " takes the table's rows, and the running version's x." + col + " calls it until the column exists"
	}
	return ""
}

// newRoutineName is why a routine of this name may change what the running
// version calls, or "" when no routine or type has the name: an overload can
// win the running version's calls (an exact match beats a cast) or make them
// ambiguous (42725), and a function named after a type replaces its
// function-style casts. Any schema counts: the running version's search_path
// is not known.
func newRoutineName(ctx context.Context, cat Catalog, name string) string {
	if cat == nil {
		return "function " + name + ": whether it overloads one the running version calls is not known without the database"
	}
	var taken bool
	err := cat.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_proc WHERE proname = $1) OR EXISTS (SELECT FROM pg_type WHERE typname = $1)`, name).Scan(&taken)
	switch {
	case err != nil:
		return "function " + name + ": whether it overloads one the running version calls could not be looked up"
	case taken:
		return "function " + name + " overloads a routine or type of that name: the running version's calls may resolve to it or become ambiguous"
	}
	return ""
}

// newTypeName is why a new table, view, sequence or type called name (in
// schema, "" for unqualified) may take over one the running version uses, or
// "" when no relation or type of that name is in another schema: in a schema
// the running version's search_path reads first, the new one wins its
// unqualified names. An unqualified one may be created in any schema (a
// pending CREATE SCHEMA can make "$user" resolve), so every schema counts but
// the system's: pg_catalog is searched before any other unless a search_path
// names it, temporary schemas first, and information_schema only by name.
func newTypeName(ctx context.Context, cat Catalog, schema, name string) string {
	if cat == nil {
		return name + ": whether it takes over a name the running version uses is not known without the database"
	}
	var taken bool
	err := cat.QueryRowContext(ctx, `WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname <> $2 AND nspname !~ '^pg_' AND nspname <> 'information_schema')
		SELECT EXISTS (SELECT FROM pg_class WHERE relname = $1 AND relnamespace IN (SELECT oid FROM ns))
			OR EXISTS (SELECT FROM pg_type WHERE typname = $1 AND typnamespace IN (SELECT oid FROM ns))`, name, schema).Scan(&taken)
	switch {
	case err != nil:
		return name + ": whether it takes over a name the running version uses could not be looked up"
	case taken:
		return name + " is also the name of a table, view, sequence or type in another schema: the running version's queries may read the new one instead"
	}
	return ""
}

// splitName is a dotted name list's schema ("" if none) and last part.
func splitName(names []*pg.Node) (schema, name string) {
	if len(names) == 0 {
		return "", ""
	}
	if len(names) > 1 {
		schema = names[len(names)-2].GetString_().GetSval()
	}
	return schema, names[len(names)-1].GetString_().GetSval()
}

// computedIndex reports whether the index computes something on each write
// that may fail for some value: an expression, or a predicate other than
// comparisons, IN, NULL tests and AND/OR/NOT of columns and constants.
func computedIndex(s *pg.IndexStmt) bool {
	for _, p := range s.GetIndexParams() {
		if p.GetIndexElem().GetExpr() != nil {
			return true
		}
	}
	return s.GetWhereClause() != nil && !plainPredicate(s.GetWhereClause())
}

func plainPredicate(n *pg.Node) bool {
	all := func(ns []*pg.Node) bool {
		for _, x := range ns {
			if !plainPredicate(x) {
				return false
			}
		}
		return true
	}
	switch {
	case n.GetColumnRef() != nil, n.GetAConst() != nil:
		return true
	case n.GetTypeCast() != nil:
		return n.GetTypeCast().GetArg().GetAConst() != nil // cast once, when the index is made
	case n.GetNullTest() != nil:
		return plainPredicate(n.GetNullTest().GetArg())
	case n.GetBooleanTest() != nil:
		return plainPredicate(n.GetBooleanTest().GetArg())
	case n.GetBoolExpr() != nil:
		return all(n.GetBoolExpr().GetArgs())
	case n.GetList() != nil:
		return all(n.GetList().GetItems())
	case n.GetAExpr() != nil:
		e := n.GetAExpr()
		switch e.GetKind() {
		case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		default:
			return false
		}
		_, op := splitName(e.GetName())
		switch op {
		case "=", "<>", "<", ">", "<=", ">=":
			return len(e.GetName()) == 1 && (e.GetLexpr() == nil || plainPredicate(e.GetLexpr())) && plainPredicate(e.GetRexpr())
		}
	}
	return false
}

// maxParsedRows is the longest INSERT Additive parses: one that fills a new
// lookup table, not a data migration.
const maxParsedRows = 64 << 10

// newRows is why an INSERT into a table created by an earlier statement of the
// run is not additive: only constant rows (VALUES) into a table still in no
// schema are, which the running version does not read.
func newRows(ctx context.Context, cat Catalog, s *pg.InsertStmt) string {
	const why = "INSERT changes rows the running version reads"
	sel := s.GetSelectStmt().GetSelectStmt()
	if s.GetWithClause() != nil || s.GetOnConflictClause() != nil || len(s.GetReturningList()) > 0 || sel == nil ||
		len(sel.GetValuesLists()) == 0 || !newRelation(ctx, cat, s.GetRelation()) {
		return why
	}
	for _, row := range sel.GetValuesLists() {
		for _, v := range row.GetList().GetItems() {
			if !constant(v) {
				return why
			}
		}
	}
	return ""
}

// newRelation reports whether no relation of rel's name exists in any schema:
// an earlier pending statement creates it (or the migration fails), so the
// running version does not use it, and the locks taken on it hold up no one.
// Without a catalog, or when the lookup fails, it is not
// known to be new.
func newRelation(ctx context.Context, cat Catalog, rel *pg.RangeVar) bool {
	if cat == nil || rel == nil {
		return false
	}
	var exists bool
	err := cat.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_class WHERE relname = $1)`, rel.GetRelname()).Scan(&exists)
	return err == nil && !exists
}

// ownChangesOnly is why an ALTER TABLE of a new table is not additive: only
// what reaches another table is, a partition or parent (ATTACH, INHERIT) or a
// foreign key checked against every row of the table it references.
func ownChangesOnly(s *pg.AlterTableStmt) string {
	for _, c := range s.GetCmds() {
		cmd := c.GetAlterTableCmd()
		switch cmd.GetSubtype() {
		case pg.AlterTableType_AT_AttachPartition, pg.AlterTableType_AT_DetachPartition,
			pg.AlterTableType_AT_DetachPartitionFinalize, pg.AlterTableType_AT_AddInherit, pg.AlterTableType_AT_DropInherit:
			return "ALTER TABLE of a new table attaches or detaches a partition or parent the running version may use"
		case pg.AlterTableType_AT_AddConstraint:
			if checkedForeignKey(cmd.GetDef().GetConstraint()) {
				return "a FOREIGN KEY without NOT VALID blocks writes to the table it references while it checks every row"
			}
		case pg.AlterTableType_AT_AddColumn:
			for _, cc := range cmd.GetDef().GetColumnDef().GetConstraints() {
				if checkedForeignKey(cc.GetConstraint()) {
					return "a FOREIGN KEY without NOT VALID blocks writes to the table it references while it checks every row"
				}
			}
		}
	}
	return ""
}

func checkedForeignKey(con *pg.Constraint) bool {
	return con.GetContype() == pg.ConstrType_CONSTR_FOREIGN && !con.GetSkipValidation()
}

// constant reports whether expr is a literal, possibly cast (DEFAULT 0,
// DEFAULT 'x'::text, DEFAULT -1, DEFAULT NULL).
func constant(expr *pg.Node) bool {
	switch {
	case expr == nil:
		return false
	case expr.GetAConst() != nil:
		return true
	case expr.GetTypeCast() != nil:
		return constant(expr.GetTypeCast().GetArg())
	}
	return false
}

// isNull reports whether expr is the NULL literal, possibly cast.
func isNull(expr *pg.Node) bool {
	if c := expr.GetTypeCast(); c != nil {
		return isNull(c.GetArg())
	}
	return expr.GetAConst() != nil && expr.GetAConst().GetIsnull()
}

// plainType is why the column type tn is not known to be a plain type: serial
// types fill every row from a sequence, a domain's constraints are checked on
// every row, and a type the catalog does not know yet (created by an earlier
// pending statement) or without a catalog cannot be told apart from a domain.
func plainType(ctx context.Context, cat Catalog, tn *pg.TypeName) string {
	name := typeNameText(tn)
	if name == "" {
		return "its type is not named"
	}
	_, last := splitName(tn.GetNames())
	switch last {
	case "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8":
		return "a serial column fills every row from a sequence"
	}
	if cat == nil {
		return "its type is not known without the database"
	}
	var typtype sql.NullString
	err := cat.QueryRowContext(ctx, `SELECT typtype::text FROM pg_type WHERE oid = to_regtype($1)`, name).Scan(&typtype)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && !typtype.Valid:
		return "its type " + name + " is not in the database yet"
	case err != nil:
		return "its type " + name + " could not be looked up"
	case typtype.String == "d":
		return "its type " + name + " is a domain, whose constraints are checked on every row"
	}
	return ""
}
