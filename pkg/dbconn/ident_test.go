package dbconn

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// identCases pin QuoteIdent and PlainIdent. asServer marks the names that
// PostgreSQL's quote_ident() writes the same way; it also quotes non-reserved key words such as "between",
// which can name a table (and a role) bare, so QuoteIdent leaves them readable.
var identCases = []struct {
	name, want      string
	plain, asServer bool
}{
	{"goose_db_version", "goose_db_version", true, true},
	{"a1", "a1", true, true},
	{"_x", "_x", true, true},
	{"a$b", `"a$b"`, false, true}, // the server reads a$b bare too, but quote_ident() quotes '$'
	{"a$", `"a$"`, false, true},
	{"$a", `"$a"`, false, true},
	{"1a", `"1a"`, false, true},
	{"Order", `"Order"`, false, true},
	{"user", `"user"`, true, true}, // reserved: bare, it is current_user
	{"order", `"order"`, true, true},
	{"current_schema", `"current_schema"`, true, true},
	{`a"b`, `"a""b"`, false, true},
	{"a b", `"a b"`, false, true},
	{"a-b", `"a-b"`, false, true},
	{"é", `"é"`, false, true},
	{"between", "between", true, false},
}

func TestQuoteIdent(t *testing.T) {
	for _, c := range identCases {
		if got := QuoteIdent(c.name); got != c.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", c.name, got, c.want)
		}
		if got := PlainIdent(c.name); got != c.plain {
			t.Errorf("PlainIdent(%q) = %v, want %v", c.name, got, c.plain)
		}
	}
	if PlainIdent("") {
		t.Error(`PlainIdent("") = true`)
	}
}

func identConn(t *testing.T) *pgx.Conn {
	t.Helper()
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseQuietly(conn) })
	return conn
}

// TestQuoteIdentAgainstServer: every name QuoteIdent writes names that very
// table on the server, and where quote_ident() has the same rule it writes the
// same text.
func TestQuoteIdentAgainstServer(t *testing.T) {
	conn := identConn(t)
	ctx := context.Background()
	// '$' is quoted by choice, as quote_ident() does: the server reads it bare.
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE a$b (id int); DROP TABLE a$b"); err != nil {
		t.Fatalf("a$b bare: %v", err)
	}
	for _, c := range identCases {
		q := QuoteIdent(c.name)
		if c.asServer {
			var server string
			if err := conn.QueryRow(ctx, "SELECT quote_ident($1)", c.name).Scan(&server); err != nil {
				t.Fatal(err)
			}
			if server != q {
				t.Errorf("QuoteIdent(%q) = %s, quote_ident() = %s", c.name, q, server)
			}
		}
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE "+q+" (id int)"); err != nil {
			t.Errorf("CREATE TEMP TABLE %s: %v", q, err)
			continue
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relname = $1", c.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("CREATE TEMP TABLE %s did not create a table named %q", q, c.name)
		}
		if _, err := conn.Exec(ctx, "DROP TABLE "+q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReservedWordsNeedQuotes checks reservedWords against the server: each one
// fails as a bare table name, and works quoted.
func TestReservedWordsNeedQuotes(t *testing.T) {
	c := identConn(t)
	ctx := context.Background()
	for w := range reservedWords {
		if _, err := c.Exec(ctx, "CREATE TEMP TABLE "+w+" (id int)"); err == nil {
			if w != "system_user" { // reserved from PostgreSQL 16 on
				t.Errorf("%s works unquoted: it need not be in reservedWords", w)
			}
			_, _ = c.Exec(ctx, "DROP TABLE "+w)
			continue
		}
		if _, err := c.Exec(ctx, "CREATE TEMP TABLE "+QuoteIdent(w)+" (id int); DROP TABLE "+QuoteIdent(w)); err != nil {
			t.Errorf("%s quoted: %v", w, err)
		}
	}
}
