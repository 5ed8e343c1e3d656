package sqlrisk

import (
	"sync/atomic"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgquery "github.com/wasilibs/go-pgquery"
)

// started is set when the parser is first asked for anything: its WebAssembly
// module is compiled then, not at program start.
var started atomic.Bool

// ParserStarted reports whether this process has started the SQL parser.
func ParserStarted() bool { return started.Load() }

// StartParser starts the parser (compiles its WebAssembly module) if it is
// not running yet; the benchmark times it.
func StartParser() error {
	_, err := parse("SELECT 1")
	return err
}

func parse(sql string) (*pg.ParseResult, error) {
	started.Store(true)
	return pgquery.Parse(sql)
}
