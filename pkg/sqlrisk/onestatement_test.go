package sqlrisk

import (
	"context"
	"strings"
	"testing"
)

// goose sends the statements that share a line as one, so a statement that
// starts with INSERT or COPY can carry a schema change after its semicolon:
// what is not data is parsed and analysed like any other statement.
func TestDataStatementCarriesNoSchemaChange(t *testing.T) {
	for _, tt := range []struct {
		sql    string
		pieces int // -1: a quote left open
	}{
		{"INSERT INTO t VALUES (1)", 1},
		{"INSERT INTO t VALUES (1);", 1},
		{"INSERT INTO t VALUES (1); -- done\n;", 1},
		{"INSERT INTO t VALUES ('a;b', $$c;d$$, $x$e;$$;f$x$, \"g;h\", 'it''s;', E'\\';'); /* end; */", 1},
		{"INSERT INTO t VALUES (1) /* a /* nested; */ comment; */", 1},
		{"INSERT INTO t VALUES (1); ALTER TABLE t ALTER COLUMN a TYPE bigint", 2},
		{"INSERT INTO t VALUES ('x\\'); ALTER TABLE t ALTER COLUMN a TYPE bigint;", 2},
		{"INSERT INTO t VALUES ('unterminated; ALTER TABLE t ALTER COLUMN a TYPE bigint", -1},
		{"INSERT INTO t VALUES ($$unterminated; ALTER TABLE t ALTER COLUMN a TYPE bigint", -1},
		{"COPY t FROM PROGRAM 'x';TRUNCATE t", 2},
		{"INSERT INTO t SELECT * FROM u WHERE x LIKE'a\\'; ALTER TABLE t ALTER COLUMN a TYPE bigint; SELECT 'b'", 3},
		{"INSERT INTO t (a$b$) VALUES (1); ALTER TABLE t ALTER COLUMN a TYPE bigint; SELECT 1 AS x$b$", 3},
	} {
		pieces, ok := splitStatements(tt.sql)
		got := len(pieces)
		if !ok {
			got = -1
		}
		if got != tt.pieces {
			t.Errorf("splitStatements(%q) = %q, want %d pieces", tt.sql, pieces, tt.pieces)
		}
	}
	for _, sql := range []string{
		"INSERT INTO t VALUES (1); ALTER TABLE t ALTER COLUMN a TYPE bigint;",
		"INSERT INTO t VALUES ('x\\'); ALTER TABLE t ALTER COLUMN a TYPE bigint;",
		"INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); ALTER TABLE t ALTER COLUMN a TYPE bigint; COPY t FROM STDIN",
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
	// Rows alone, however many on one line, are still not parsed.
	started.Store(false)
	f, err := Analyze(context.Background(), nil, Statement{SQL: "INSERT INTO t VALUES (1); INSERT INTO t VALUES (';'); -- rows"})
	if err != nil || f.Kind != "INSERT" || f.Lock != RowExclusiveLock || len(f.Risks) != 0 || ParserStarted() {
		t.Errorf("INSERTs: %+v %v, parser started %v", f, err, ParserStarted())
	}
}
