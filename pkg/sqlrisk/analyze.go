package sqlrisk

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
)

// Catalog answers the read-only catalog queries the analysis makes (table
// sizes, function volatility, existing constraints): a *sql.DB or *sql.Conn.
// nil analyses without a database: sizes are unknown and every function in a
// column default is taken as volatile.
type Catalog interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Statement is one statement of a migration file as goose will send it.
type Statement struct {
	File string
	Line int // where it starts in the file, 1-based; 0 if unknown
	SQL  string
	// InTx: goose runs it inside the migration's transaction. Several
	// statements sent as one query run in a transaction of their own anyway
	// (PostgreSQL's implicit block), so Analyze and Additive count them as in one.
	InTx  bool
	Allow []string // rules its file waives for it (-- chartreuse:allow <rule>)
}

// Finding is what one statement does.
type Finding struct {
	File     string
	Line     int
	Kind     string // e.g. "ALTER TABLE"
	Lock     string // the strongest table lock it takes (LockNone: none, or not known)
	Table    string // the table that lock is on
	Rewrites bool
	Scans    bool
	// SizeBytes is the table's pg_total_relation_size; -1 when not known (no
	// catalog, or a table created by an earlier pending statement).
	SizeBytes int64
	Rules     []*Rule // every rule that applies, info rules included
	Risks     []Risk
}

// Risk is one hazard of one statement: an error or warning rule that applies.
type Risk struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Kind      string `json:"kind"`
	Lock      string `json:"lock"`
	Table     string `json:"table"`
	SizeBytes int64  `json:"size-bytes"`
	Size      string `json:"size"`
	Rewrites  bool   `json:"rewrites"`
	Scans     bool   `json:"scans"`
	Rule      string `json:"rule"`
	Level     Level  `json:"level"`
	What      string `json:"what,omitempty"`
	Advice    string `json:"advice"`
	// Allowed: the file waives the rule for this statement; the risk is
	// reported but never fails the plan.
	Allowed bool `json:"allowed,omitempty"`
}

// hit is one rule found in a statement, on one table.
type hit struct {
	rule  *Rule
	table *pg.RangeVar
	index string // the index whose table the lock is on (DROP INDEX, REINDEX INDEX)
	lock  string // overrides rule.Lock (LOCK TABLE IN <mode>)
	kind  string // of the statement it is in (a goose statement can hold several)
}

// Analyze parses stmt and tells what it does. Only read-only catalog queries
// are made.
func Analyze(ctx context.Context, cat Catalog, stmt Statement) (*Finding, error) {
	f := &Finding{File: stmt.File, Line: stmt.Line, SizeBytes: -1}
	// Data (INSERT, COPY) takes a row lock at most: never worth starting the
	// parser for, nor feeding it megabytes of rows. goose sends statements
	// that share a line as one, so data can carry an ALTER TABLE after it:
	// what is not data is parsed.
	text := stmt.SQL
	inTx := stmt.InTx
	if pieces, ok := splitStatements(text); ok {
		inTx = inTx || len(pieces) > 1
		schema := slices.DeleteFunc(pieces, isData)
		if len(schema) == 0 {
			f.Kind = strings.ToUpper(firstWord(text))
			if f.Kind == "INSERT" {
				f.Lock = RowExclusiveLock
			}
			return f, nil
		}
		text = strings.Join(schema, ";\n")
	}
	tree, err := parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", stmt.File, stmt.Line, err)
	}
	inTx = inTx || len(tree.GetStmts()) > 1
	var hits []hit
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		if f.Kind == "" {
			f.Kind = kindOf(n)
		}
		h, err := classify(ctx, cat, n, inTx)
		if err != nil {
			return nil, err
		}
		for i := range h {
			h[i].kind = kindOf(n)
		}
		hits = append(hits, h...)
	}
	// Each hit's lock and table, resolved once (an index's table is a catalog query).
	locks, tables := make([]string, len(hits)), make([]string, len(hits))
	for i, h := range hits {
		locks[i], tables[i] = h.rule.Lock, qualified(h.table)
		if h.lock != "" {
			locks[i] = h.lock
		}
		if h.index != "" {
			tables[i] = indexTable(ctx, cat, h.index)
		}
	}
	for i, h := range hits {
		lock, table := locks[i], tables[i]
		if Stronger(lock, f.Lock) || f.Table == "" {
			f.Lock, f.Table = lock, table
		}
		f.Rewrites = f.Rewrites || h.rule.Rewrites
		f.Scans = f.Scans || h.rule.Scans
		f.Rules = append(f.Rules, h.rule)
	}
	if f.Table != "" {
		f.SizeBytes = tableSize(ctx, cat, f.Table)
	}
	for i, h := range hits {
		if h.rule.Level == LevelInfo {
			continue
		}
		lock, table := locks[i], tables[i]
		size := f.SizeBytes
		if table != f.Table {
			size = tableSize(ctx, cat, table)
		}
		f.Risks = append(f.Risks, Risk{
			File: stmt.File, Line: stmt.Line, Kind: h.kind, Lock: lock, Table: table,
			SizeBytes: size, Size: HumanSize(size), Rewrites: h.rule.Rewrites, Scans: h.rule.Scans,
			Rule: h.rule.Name, Level: h.rule.Level, What: h.rule.What, Advice: h.rule.Advice,
			Allowed: slices.Contains(stmt.Allow, h.rule.Name),
		})
	}
	return f, nil
}

// splitStatements cuts s at its semicolons outside quotes, dollar quotes and
// comments, leaving out the pieces that hold only white space and comments.
// ok is false when a quote is left open: then s is parsed whole.
func splitStatements(s string) (pieces []string, ok bool) {
	start := 0
	cut := func(end int) {
		if p := s[start:end]; strings.TrimSpace(stripLeadingComments(p)) != "" {
			pieces = append(pieces, p)
		}
		start = end + 1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				i = len(s)
				continue
			}
			i += j
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			// PostgreSQL nests block comments.
			depth := 0
			for ; i < len(s); i++ {
				switch {
				case strings.HasPrefix(s[i:], "/*"):
					depth++
					i++
				case strings.HasPrefix(s[i:], "*/"):
					depth--
					i++
				}
				if depth == 0 {
					break
				}
			}
		case c == ';':
			cut(i)
		case c == '\'' || c == '"':
			// A doubled quote is one quote inside; in an E'' string a
			// backslash escapes the next byte.
			escapes := c == '\'' && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i == 1 || !identByte(s[i-2])) // not LIKE'...'
			closed := false
			for i++; i < len(s) && !closed; i++ {
				switch {
				case escapes && s[i] == '\\':
					i++
				case s[i] == c && i+1 < len(s) && s[i+1] == c:
					i++
				case s[i] == c:
					closed = true
					i--
				}
			}
			if !closed {
				return nil, false
			}
		case c == '$' && (i == 0 || !identByte(s[i-1])): // a$b$ is an identifier
			if tag, ok := dollarTag(s[i:]); ok {
				end := strings.Index(s[i+len(tag):], tag)
				if end < 0 {
					return nil, false
				}
				i += len(tag) + end + len(tag) - 1
			}
		}
	}
	cut(len(s))
	return pieces, true
}

// isData: a statement that only writes rows (INSERT, COPY).
func isData(sql string) bool {
	head := strings.ToUpper(firstWord(sql))
	return head == "INSERT" || head == "COPY"
}

// identByte: c can continue an identifier (or a parameter: $1).
func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// dollarTag is the $tag$ that opens a dollar-quoted string at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || (j > 1 && c >= '0' && c <= '9'):
		default:
			return "", false
		}
	}
	return "", false
}

func firstWord(s string) string {
	s = strings.TrimSpace(stripLeadingComments(s))
	if i := strings.IndexFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '(' || r == ';' }); i >= 0 {
		return s[:i]
	}
	return s
}

func stripLeadingComments(s string) string {
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "--"):
			_, rest, ok := strings.Cut(s, "\n")
			if !ok {
				return ""
			}
			s = rest
		case strings.HasPrefix(s, "/*"):
			_, rest, ok := strings.Cut(s, "*/")
			if !ok {
				return ""
			}
			s = rest
		default:
			return s
		}
	}
}

// kindOf names a statement the way PostgreSQL's command tags do.
func kindOf(n *pg.Node) string {
	switch {
	case n.GetAlterTableStmt() != nil:
		if n.GetAlterTableStmt().GetObjtype() == pg.ObjectType_OBJECT_INDEX {
			return "ALTER INDEX"
		}
		return "ALTER TABLE"
	case n.GetIndexStmt() != nil:
		return "CREATE INDEX"
	case n.GetCreateStmt() != nil:
		return "CREATE TABLE"
	case n.GetRenameStmt() != nil:
		if n.GetRenameStmt().GetRenameType() == pg.ObjectType_OBJECT_INDEX {
			return "ALTER INDEX"
		}
		return "ALTER TABLE"
	case n.GetDropStmt() != nil:
		switch n.GetDropStmt().GetRemoveType() {
		case pg.ObjectType_OBJECT_TABLE:
			return "DROP TABLE"
		case pg.ObjectType_OBJECT_INDEX:
			return "DROP INDEX"
		}
		return "DROP"
	case n.GetRefreshMatViewStmt() != nil:
		return "REFRESH MATERIALIZED VIEW"
	}
	// Anything else: the node's own name, which is the command tag for VACUUM,
	// CLUSTER, REINDEX, LOCK, TRUNCATE, UPDATE, DELETE, INSERT and SELECT
	// (VacuumStmt: VACUUM), and e.g. CREATE_FUNCTION for CreateFunctionStmt.
	m := n.ProtoReflect()
	if f := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); f != nil {
		return strings.ToUpper(strings.TrimSuffix(string(f.Name()), "_stmt"))
	}
	return "UNKNOWN"
}

func classify(ctx context.Context, cat Catalog, n *pg.Node, inTx bool) ([]hit, error) {
	r := RuleByName
	switch {
	case n.GetIndexStmt() != nil:
		s := n.GetIndexStmt()
		switch {
		case s.GetConcurrent() && inTx:
			return []hit{{rule: r("concurrently-in-transaction"), table: s.GetRelation()}}, nil
		case s.GetConcurrent():
			return []hit{{rule: r("create-index-concurrently"), table: s.GetRelation()}}, nil
		case isNew(ctx, cat, s.GetRelation()):
			return nil, nil // an index on a table this run creates blocks no one
		}
		return []hit{{rule: r("create-index"), table: s.GetRelation()}}, nil
	case n.GetAlterTableStmt() != nil:
		return alterTable(ctx, cat, n.GetAlterTableStmt(), inTx)
	case n.GetRenameStmt() != nil:
		s := n.GetRenameStmt()
		switch s.GetRenameType() {
		case pg.ObjectType_OBJECT_COLUMN:
			return []hit{{rule: r("rename-column"), table: s.GetRelation()}}, nil
		case pg.ObjectType_OBJECT_TABLE:
			return []hit{{rule: r("rename-table"), table: s.GetRelation()}}, nil
		}
	case n.GetDropStmt() != nil:
		s := n.GetDropStmt()
		var out []hit
		for _, o := range s.GetObjects() {
			name := nameOf(o)
			switch s.GetRemoveType() {
			case pg.ObjectType_OBJECT_TABLE:
				out = append(out, hit{rule: r("drop-table"), table: rangeVar(name)})
			case pg.ObjectType_OBJECT_INDEX:
				switch {
				case s.GetConcurrent() && inTx:
					out = append(out, hit{rule: r("concurrently-in-transaction"), index: name})
				case !s.GetConcurrent():
					out = append(out, hit{rule: r("drop-index"), index: name})
				}
			}
		}
		return out, nil
	case n.GetVacuumStmt() != nil:
		s := n.GetVacuumStmt()
		full := false
		for _, o := range s.GetOptions() {
			if d := o.GetDefElem(); d != nil && strings.EqualFold(d.GetDefname(), "full") && (d.GetArg() == nil || !isFalse(d.GetArg())) {
				full = true
			}
		}
		if !full {
			return nil, nil
		}
		var out []hit
		for _, rel := range s.GetRels() {
			out = append(out, hit{rule: r("vacuum-full"), table: rel.GetVacuumRelation().GetRelation()})
		}
		return out, nil
	case n.GetClusterStmt() != nil:
		return []hit{{rule: r("cluster"), table: n.GetClusterStmt().GetRelation()}}, nil
	case n.GetReindexStmt() != nil:
		s := n.GetReindexStmt()
		concurrent := false
		for _, o := range s.GetParams() {
			if d := o.GetDefElem(); d != nil && strings.EqualFold(d.GetDefname(), "concurrently") {
				concurrent = true
			}
		}
		if concurrent && !inTx {
			return nil, nil
		}
		h := hit{rule: r("reindex")}
		if concurrent {
			h.rule = r("concurrently-in-transaction")
		}
		switch s.GetKind() {
		case pg.ReindexObjectType_REINDEX_OBJECT_TABLE:
			h.table = s.GetRelation()
		case pg.ReindexObjectType_REINDEX_OBJECT_INDEX:
			h.index = qualified(s.GetRelation())
		default:
			return []hit{h}, nil // a schema or the database: no one table
		}
		return []hit{h}, nil
	case n.GetLockStmt() != nil:
		s := n.GetLockStmt()
		var out []hit
		for _, rel := range s.GetRelations() {
			out = append(out, hit{rule: r("lock-table"), table: rel.GetRangeVar(), lock: lockModeName(s.GetMode())})
		}
		return out, nil
	case n.GetTruncateStmt() != nil:
		var out []hit
		for _, rel := range n.GetTruncateStmt().GetRelations() {
			out = append(out, hit{rule: r("truncate"), table: rel.GetRangeVar()})
		}
		return out, nil
	case n.GetRefreshMatViewStmt() != nil:
		s := n.GetRefreshMatViewStmt()
		if s.GetConcurrent() {
			return nil, nil
		}
		return []hit{{rule: r("refresh-materialized-view"), table: s.GetRelation()}}, nil
	case n.GetUpdateStmt() != nil && n.GetUpdateStmt().GetWhereClause() == nil:
		return []hit{{rule: r("update-all-rows"), table: n.GetUpdateStmt().GetRelation()}}, nil
	case n.GetDeleteStmt() != nil && n.GetDeleteStmt().GetWhereClause() == nil:
		return []hit{{rule: r("update-all-rows"), table: n.GetDeleteStmt().GetRelation()}}, nil
	}
	return nil, nil
}

func alterTable(ctx context.Context, cat Catalog, s *pg.AlterTableStmt, inTx bool) ([]hit, error) {
	if s.GetObjtype() != pg.ObjectType_OBJECT_TABLE {
		return nil, nil
	}
	r := RuleByName
	rel := s.GetRelation()
	var out []hit
	for _, c := range s.GetCmds() {
		cmd := c.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		switch cmd.GetSubtype() {
		case pg.AlterTableType_AT_AddColumn:
			rule := r("add-column")
			if cd := cmd.GetDef().GetColumnDef(); cd != nil && rewritingColumn(ctx, cat, cd) {
				rule = r("add-column-rewrite")
			}
			out = append(out, hit{rule: rule, table: rel})
			// A constraint of the new column's own is added like any other:
			// its index is built, its check or key verified on every row.
			for _, cc := range cmd.GetDef().GetColumnDef().GetConstraints() {
				if h := constraintHit(cc.GetConstraint(), rel); h != nil {
					out = append(out, *h)
				}
			}
		case pg.AlterTableType_AT_AlterColumnType:
			out = append(out, hit{rule: r("alter-column-type"), table: rel})
		case pg.AlterTableType_AT_SetNotNull:
			rule := r("set-not-null")
			if notNullChecked(ctx, cat, rel, cmd.GetName()) {
				rule = r("set-not-null-checked")
			}
			out = append(out, hit{rule: rule, table: rel})
		case pg.AlterTableType_AT_AttachPartition:
			out = append(out, hit{rule: r("attach-partition"), table: cmd.GetDef().GetPartitionCmd().GetName()})
		case pg.AlterTableType_AT_DetachPartition:
			switch concurrent := cmd.GetDef().GetPartitionCmd().GetConcurrent(); {
			case !concurrent:
				out = append(out, hit{rule: r("detach-partition"), table: rel})
			case inTx:
				out = append(out, hit{rule: r("concurrently-in-transaction"), table: rel})
			}
		case pg.AlterTableType_AT_SetLogged, pg.AlterTableType_AT_SetUnLogged:
			out = append(out, hit{rule: r("set-logged"), table: rel})
		case pg.AlterTableType_AT_DropColumn:
			out = append(out, hit{rule: r("drop-column"), table: rel})
		case pg.AlterTableType_AT_ValidateConstraint:
			out = append(out, hit{rule: r("validate-constraint"), table: rel})
		case pg.AlterTableType_AT_AddConstraint:
			if h := constraintHit(cmd.GetDef().GetConstraint(), rel); h != nil {
				out = append(out, *h)
			}
		}
	}
	return out, nil
}

// constraintHit is the rule adding con to rel matches; nil for none.
func constraintHit(con *pg.Constraint, rel *pg.RangeVar) *hit {
	r := RuleByName
	if con == nil {
		return nil
	}
	switch con.GetContype() {
	case pg.ConstrType_CONSTR_FOREIGN:
		rule := r("add-foreign-key")
		if con.GetSkipValidation() {
			rule = r("add-foreign-key-not-valid")
		}
		return &hit{rule: rule, table: rel}
	case pg.ConstrType_CONSTR_CHECK:
		rule := r("add-check")
		if con.GetSkipValidation() {
			rule = r("add-check-not-valid")
		}
		return &hit{rule: rule, table: rel}
	case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_EXCLUSION:
		if con.GetIndexname() == "" {
			return &hit{rule: r("add-unique-constraint"), table: rel}
		}
	}
	return nil
}

// rewritingColumn reports whether adding cd fills existing rows one by one:
// a volatile default, serial types, identity, stored generated columns.
func rewritingColumn(ctx context.Context, cat Catalog, cd *pg.ColumnDef) bool {
	if names := cd.GetTypeName().GetNames(); len(names) > 0 {
		switch strings.ToLower(names[len(names)-1].GetString_().GetSval()) {
		case "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8":
			return true
		}
	}
	if cd.GetIdentity() != "" || cd.GetGenerated() != "" {
		return true
	}
	ownDefault := false
	for _, c := range cd.GetConstraints() {
		con := c.GetConstraint()
		switch con.GetContype() {
		case pg.ConstrType_CONSTR_IDENTITY, pg.ConstrType_CONSTR_GENERATED:
			return true
		case pg.ConstrType_CONSTR_DEFAULT:
			ownDefault = true
			if volatile(ctx, cat, con.GetRawExpr()) {
				return true
			}
		}
	}
	return domainRewrites(ctx, cat, cd.GetTypeName(), ownDefault)
}

// domainRewrites reports whether a new column of type tn is checked or filled
// row by row for its domain: a constraint of the domain or of one it is based
// on, or, for a column without a default of its own, a volatile domain
// default. A failed lookup counts as a rewrite.
func domainRewrites(ctx context.Context, cat Catalog, tn *pg.TypeName, ownDefault bool) bool {
	name := typeNameText(tn)
	if cat == nil || name == "" {
		return false
	}
	var constrained bool
	var def sql.NullString
	err := cat.QueryRowContext(ctx, `WITH RECURSIVE d AS (
			SELECT oid, typbasetype, typdefault, 0 AS depth FROM pg_type WHERE oid = to_regtype($1) AND typtype = 'd'
			UNION ALL
			SELECT t.oid, t.typbasetype, t.typdefault, d.depth + 1 FROM pg_type t JOIN d ON t.oid = d.typbasetype WHERE t.typtype = 'd')
		SELECT EXISTS (SELECT FROM pg_constraint WHERE contypid IN (SELECT oid FROM d)),
			(SELECT typdefault FROM d WHERE typdefault IS NOT NULL ORDER BY depth LIMIT 1)`, name).Scan(&constrained, &def)
	switch {
	case err != nil || constrained:
		return true
	case ownDefault || !def.Valid:
		return false
	}
	tree, err := parse("SELECT " + def.String)
	if err != nil || len(tree.GetStmts()) != 1 {
		return true
	}
	return volatile(ctx, cat, tree.GetStmts()[0].GetStmt())
}

// typeNameText is tn as to_regtype reads it ("" when it has no name).
func typeNameText(tn *pg.TypeName) string {
	var parts []string
	for _, n := range tn.GetNames() {
		parts = append(parts, dbconn.QuoteIdent(n.GetString_().GetSval()))
	}
	if len(parts) == 0 {
		return ""
	}
	name := strings.Join(parts, ".")
	if len(tn.GetArrayBounds()) > 0 {
		name += "[]"
	}
	return name
}

// volatile reports whether expr calls a volatile function. Unknown functions
// count as volatile: when unsure, assume the rewrite.
func volatile(ctx context.Context, cat Catalog, expr *pg.Node) bool {
	var names []string
	walk(expr.ProtoReflect(), func(n *pg.Node) {
		if fc := n.GetFuncCall(); fc != nil {
			parts := fc.GetFuncname()
			names = append(names, strings.ToLower(parts[len(parts)-1].GetString_().GetSval()))
		}
	})
	for _, name := range names {
		if cat == nil {
			return true
		}
		var v sql.NullBool
		err := cat.QueryRowContext(ctx, `SELECT bool_or(provolatile = 'v') FROM pg_proc WHERE proname = $1`, name).Scan(&v)
		if err != nil || !v.Valid || v.Bool {
			return true
		}
	}
	return false
}

// notNullChecked reports whether a validated CHECK (col IS NOT NULL) exists on
// the table, which lets SET NOT NULL skip its scan.
func notNullChecked(ctx context.Context, cat Catalog, rel *pg.RangeVar, col string) bool {
	if cat == nil {
		return false
	}
	var ok bool
	err := cat.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'c' AND convalidated
		AND lower(pg_get_constraintdef(oid)) IN (lower('CHECK ((' || quote_ident($2) || ' IS NOT NULL))'), lower('CHECK (' || quote_ident($2) || ' IS NOT NULL)')))`,
		qualified(rel), col).Scan(&ok)
	return err == nil && ok
}

// isNew reports whether the table does not exist yet (an earlier pending
// statement creates it). Without a catalog nothing is known to be new. A
// table of that name in any schema counts as existing: the migration may
// have changed its search_path (SET search_path), which the plan's session
// does not see, and an index on it would then pass for one on a new table.
func isNew(ctx context.Context, cat Catalog, rel *pg.RangeVar) bool {
	if cat == nil {
		return false
	}
	var exists bool
	err := cat.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL OR EXISTS (SELECT FROM pg_class WHERE relname = $2 AND relkind IN ('r', 'p', 'm'))`,
		qualified(rel), rel.GetRelname()).Scan(&exists)
	return err == nil && !exists
}

func tableSize(ctx context.Context, cat Catalog, table string) int64 {
	if cat == nil || table == "" {
		return -1
	}
	var size sql.NullInt64
	if err := cat.QueryRowContext(ctx, `SELECT pg_total_relation_size(to_regclass($1))`, table).Scan(&size); err != nil || !size.Valid {
		return -1
	}
	return size.Int64
}

// indexTable is the table an index belongs to, or the index's own name when
// the catalog does not know it.
func indexTable(ctx context.Context, cat Catalog, index string) string {
	if cat == nil {
		return index
	}
	var table sql.NullString
	err := cat.QueryRowContext(ctx, `SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1)`, index).Scan(&table)
	if err != nil || !table.Valid {
		return index
	}
	return table.String
}

// walk calls fn on every Node under m.
func walk(m protoreflect.Message, fn func(*pg.Node)) {
	if !m.IsValid() {
		return
	}
	if n, ok := m.Interface().(*pg.Node); ok {
		fn(n)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fn)
			}
		case fd.Message() != nil && !fd.IsMap():
			walk(v.Message(), fn)
		}
		return true
	})
}

func qualified(rv *pg.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.GetSchemaname() != "" {
		return dbconn.QuoteIdent(rv.GetSchemaname()) + "." + dbconn.QuoteIdent(rv.GetRelname())
	}
	return dbconn.QuoteIdent(rv.GetRelname())
}

// nameOf joins a dotted name list (DROP's objects).
func nameOf(o *pg.Node) string {
	var parts []string
	for _, p := range o.GetList().GetItems() {
		parts = append(parts, dbconn.QuoteIdent(p.GetString_().GetSval()))
	}
	return strings.Join(parts, ".")
}

func rangeVar(name string) *pg.RangeVar {
	// name is already quoted where needed; keep it as the relation name.
	return &pg.RangeVar{Relname: name}
}

func isFalse(n *pg.Node) bool {
	if b := n.GetBoolean(); b != nil {
		return !b.GetBoolval()
	}
	if i := n.GetInteger(); i != nil {
		return i.GetIval() == 0
	}
	if s := n.GetString_(); s != nil {
		v := strings.ToLower(s.GetSval())
		return v == "false" || v == "off" || v == "0"
	}
	return false
}

// lockModeName maps LOCK TABLE's mode number (PostgreSQL's lockdefs.h) to its name.
func lockModeName(mode int32) string {
	names := []string{LockNone, AccessShareLock, RowShareLock, RowExclusiveLock, ShareUpdateExclusiveLock,
		ShareLock, ShareRowExclusiveLock, ExclusiveLock, AccessExclusiveLock}
	if mode <= 0 || int(mode) >= len(names) {
		return AccessExclusiveLock
	}
	return names[mode]
}

// HumanSize writes a byte count as PostgreSQL's pg_size_pretty does; "unknown"
// for -1.
func HumanSize(b int64) string {
	if b < 0 {
		return "unknown"
	}
	units := []string{"bytes", "kB", "MB", "GB", "TB", "PB"}
	v, i := b, 0
	for i < len(units)-1 && v >= 10*1024 {
		v = (v + 512) / 1024
		i++
	}
	return fmt.Sprintf("%d %s", v, units[i])
}
