package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	ImportPath  string // build-output, build-fail
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

type testKey struct{ pkg, test string }

type timing struct {
	key     testKey
	elapsed time.Duration
	failed  bool
}

// view prints the plain go test view of the events read from r to w, then
// the slowest tests. A line that is not JSON (go test's own complaints before
// any package runs) is printed as it is.
func view(r io.Reader, w io.Writer, slowest int) error {
	held := map[testKey][]string{} // a test's output, printed if it fails
	var times []timing
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Test == "":
			// the package's own lines: its result, a panic or TestMain's
			// output; the framing plain go test prints only with -v is left out
			if e.Action == "output" && !framing(e.Output) {
				fmt.Fprint(w, e.Output)
			}
			// A test binary that timed out or panicked ends tests that never
			// report: their lines are what plain go test shows of it.
			if e.Action == "fail" {
				printUnfinished(w, held, func(k testKey) bool { return k.pkg == e.Package })
			}
		default:
			k := testKey{e.Package, e.Test}
			switch e.Action {
			case "output":
				held[k] = append(held[k], e.Output)
			case "pass", "skip":
				times = append(times, timing{k, seconds(e.Elapsed), false})
				delete(held, k)
			case "fail":
				times = append(times, timing{k, seconds(e.Elapsed), true})
				// A subtest's lines are printed with its parent's when the
				// parent fails too, as plain go test nests them.
				if !strings.Contains(e.Test, "/") {
					printFailed(w, held, k)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading go test -json: %w", err)
	}
	// a package whose binary was killed before it reported
	printUnfinished(w, held, func(testKey) bool { return true })
	printSlowest(w, times, slowest)
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// framing reports whether a line is one plain go test prints only with -v.
func framing(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- SKIP"} {
		if strings.HasPrefix(strings.TrimLeft(s, " "), p) {
			return true
		}
	}
	return s == "PASS\n"
}

func result(s string) bool { return strings.HasPrefix(strings.TrimLeft(s, " "), "--- FAIL") }

// printUnfinished prints the held lines of the tests of which, as picks
// them, no end was read, each under a line naming it.
func printUnfinished(w io.Writer, held map[testKey][]string, picks func(testKey) bool) {
	var keys []testKey
	for k := range held {
		if picks(k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].pkg+" "+keys[i].test < keys[j].pkg+" "+keys[j].test })
	for _, k := range keys {
		fmt.Fprintf(w, "--- UNFINISHED: %s (it never reported an end)\n", k.test)
		printHeld(w, held, k)
	}
}

// printFailed prints the held lines of k and of its subtests, in the order
// they came, leaving out the framing of passed ones.
func printFailed(w io.Writer, held map[testKey][]string, k testKey) {
	var keys []testKey
	for h := range held {
		if h.pkg == k.pkg && (h.test == k.test || strings.HasPrefix(h.test, k.test+"/")) {
			keys = append(keys, h)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].test < keys[j].test })
	for _, h := range keys {
		// its result line first, then what it logged, as plain go test prints
		lines := held[h]
		sort.SliceStable(lines, func(i, j int) bool { return result(lines[i]) && !result(lines[j]) })
		printHeld(w, held, h)
	}
}

// printHeld prints k's held lines but their framing, and lets go of them.
func printHeld(w io.Writer, held map[testKey][]string, k testKey) {
	for _, s := range held[k] {
		if !framing(s) {
			fmt.Fprint(w, s)
		}
	}
	delete(held, k)
}

func printSlowest(w io.Writer, times []timing, n int) {
	if n <= 0 || len(times) == 0 {
		return
	}
	sort.SliceStable(times, func(i, j int) bool { return times[i].elapsed > times[j].elapsed })
	if len(times) > n {
		times = times[:n]
	}
	fmt.Fprintf(w, "the %d slowest tests (subtests included; parallel ones overlap):\n", len(times))
	for _, t := range times {
		mark := ""
		if t.failed {
			mark = "  FAIL"
		}
		fmt.Fprintf(w, "%8.1fs  %s %s%s\n", t.elapsed.Seconds(), strings.TrimPrefix(t.key.pkg, "github.com/chartreuse-go/chartreuse/"), t.key.test, mark)
	}
}
