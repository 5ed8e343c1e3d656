// Package step builds the command-line app shared by every step binary.
//
// One constructor gives each binary the common flags (logging, results, version
// check), an environment variable for every flag, SIGTERM/SIGINT cancellation, the
// redacting logger, the results directory and summary line, and the single place
// where an error becomes an exit code.
package step
