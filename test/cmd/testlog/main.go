// Command testlog reads `go test -json` on stdin and prints what plain
// `go test` would have printed (each package's result line, and the output of
// failing tests only), then the slowest tests, so that a CI log, of which only
// the tail is shown, says where the time went:
//
//	go test -json ./... | go run ./test/cmd/testlog [-slowest N]
//
// It exits 0 whatever the tests did: the caller reads go test's own status
// (set -o pipefail).
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	slowest := flag.Int("slowest", 25, "how many of the slowest tests to list at the end (0: none)")
	flag.Parse()
	if err := view(os.Stdin, os.Stdout, *slowest); err != nil {
		fmt.Fprintln(os.Stderr, "testlog:", err)
		os.Exit(1)
	}
}
