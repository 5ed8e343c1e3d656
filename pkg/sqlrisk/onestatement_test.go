package sqlrisk

import (
	"context"
	"strings"
	"testing"
)

// goose sends the statements that share a line as one, so a statement that
// starts with INSERT or COPY is data only when it is alone: anything after its
// semicolon is parsed and analysed like any other statement.
func TestDataStatementCarriesNoSchemaChange(t *testing.T) {
	for _, tt := range []struct {
		sql string
		one bool
	}{
		{"INSERT INTO t VALUES (1)", true},
		{"INSERT INTO t VALUES (1);", true},
		{"INSERT INTO t VALUES (1); -- done\n;", true},
		{"INSERT INTO t VALUES ('a;b', $$c;d$$, $x$e;$$;f$x$, \"g;h\", 'it''s;', E'\\';'); /* end; */", true},
		{"INSERT INTO t VALUES (1) /* a /* nested; */ comment; */", true},
		{"INSERT INTO t VALUES (1); ALTER TABLE t ALTER COLUMN a TYPE bigint", false},
		{"INSERT INTO t VALUES ('x\\'); ALTER TABLE t ALTER COLUMN a TYPE bigint;", false},
		{"INSERT INTO t VALUES ('unterminated; ALTER TABLE t ALTER COLUMN a TYPE bigint", false},
		{"INSERT INTO t VALUES ($$unterminated; ALTER TABLE t ALTER COLUMN a TYPE bigint", false},
		{"COPY t FROM PROGRAM 'x';TRUNCATE t", false},
	} {
		if got := oneStatement(tt.sql); got != tt.one {
			t.Errorf("oneStatement(%q) = %v, want %v", tt.sql, got, tt.one)
		}
	}
	for _, sql := range []string{
		"INSERT INTO t VALUES (1); ALTER TABLE t ALTER COLUMN a TYPE bigint;",
		"INSERT INTO t VALUES ('x\\'); ALTER TABLE t ALTER COLUMN a TYPE bigint;",
		// A statement over 1 MiB (a long comment) was taken for data and not analysed.
		"/* " + strings.Repeat("padding ", 1<<17) + "*/ ALTER TABLE t ALTER COLUMN a TYPE bigint;",
	} {
		f, err := Analyze(context.Background(), nil, Statement{File: "f.sql", Line: 1, SQL: sql, InTx: true})
		if err != nil {
			t.Fatalf("%.80s: %v", sql, err)
		}
		if len(f.Risks) != 1 || f.Risks[0].Rule != "alter-column-type" || f.Lock != AccessExclusiveLock || f.Table != "t" {
			t.Errorf("%.80s: risks %+v lock %q table %q; want alter-column-type, AccessExclusiveLock on t", sql, f.Risks, f.Lock, f.Table)
		}
	}
}
