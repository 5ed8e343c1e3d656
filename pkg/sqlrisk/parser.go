package sqlrisk

import (
	"sync/atomic"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgquery "github.com/wasilibs/go-pgquery"
)

// ParserMemory is the container memory limit a process needs to start the
// parser: wazero's compile of libpg_query peaked at 247–276 MiB RSS (bench
// section 7), most of it live, so a lower GOMEMLIMIT does not help.
const ParserMemory = 320 << 20

// NotAnalysed is the rule of the one risk reported instead of a plan's
// findings when the parser could not be started for lack of memory.
const NotAnalysed = "not-analysed"

// NotParsed is the rule of the risk reported for a statement the parser
// rejects: its grammar is PostgreSQL 17's, which reserves words (system_user)
// that older servers take as names, so a statement the server runs can hide
// its locks from the analysis.
const NotParsed = "not-parsed"

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
