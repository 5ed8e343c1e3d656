package adversary

import (
	"strings"
	"testing"
	"time"
)

// TestOracle checks the invariant checker itself on hand-made database states,
// without a server (it also runs with -short): a checker that passes anything
// would make every attack look harmless.
func TestOracle(t *testing.T) {
	tx := migration{version: 1, name: "tx", sleeps: make([]time.Duration, 3)}
	notx := migration{version: 2, name: "notx", noTx: true, sleeps: make([]time.Duration, 5)}
	migs := []migration{tx, notx}
	// ran builds the log: version → how often each statement ran, from 1.
	ran := func(runs map[int64][]int) map[stmtKey]execs {
		out := map[stmtKey]execs{}
		for v, counts := range runs {
			for i, c := range counts {
				for range c {
					e := out[stmtKey{v, i + 1}]
					e.pids, e.apps = append(e.pids, int32(100+len(e.pids))), append(e.apps, "chartreuse")
					out[stmtKey{v, i + 1}] = e
				}
			}
		}
		return out
	}
	dirty := func(done int) map[int64]dirtyRow {
		return map[int64]dirtyRow{2: {Version: 2, Direction: "up", File: notx.file(), Done: done, Total: 5}}
	}
	cases := []struct {
		name     string
		s        snapshot
		complete bool
		want     []string // substrings of the problems, in order; none means no problem
	}{
		{name: "both applied once", complete: true,
			s: snapshot{ran: ran(map[int64][]int{1: {1, 1, 1}, 2: {1, 1, 1, 1, 1}}), rows: map[int64]int{1: 1, 2: 1}}},
		{name: "nothing ran", s: snapshot{ran: ran(nil)}},
		{name: "not complete", complete: true, s: snapshot{ran: ran(map[int64][]int{1: {1, 1, 1}}), rows: map[int64]int{1: 1}},
			want: []string{"migration 2 is not applied"}},
		{name: "lock left held", complete: true, s: snapshot{ran: ran(map[int64][]int{1: {1, 1, 1}, 2: {1, 1, 1, 1, 1}}), rows: map[int64]int{1: 1, 2: 1}, lockPIDs: []int32{7}},
			want: []string{"still hold the migration lock"}},
		{name: "transactional statement twice", s: snapshot{ran: ran(map[int64][]int{1: {1, 2, 1}}), rows: map[int64]int{1: 1}},
			want: []string{"statement 2 ran 2 times"}},
		{name: "transactional committed without its row", s: snapshot{ran: ran(map[int64][]int{1: {1, 0, 0}})},
			want: []string{"committed without its version row"}},
		{name: "transactional recorded, statement missing", s: snapshot{ran: ran(map[int64][]int{1: {1, 1, 0}}), rows: map[int64]int{1: 1}},
			want: []string{"statements [3] never ran"}},
		{name: "transactional with a dirty record", s: snapshot{ran: ran(nil), dirty: map[int64]dirtyRow{1: {Version: 1}}},
			want: []string{"transactional migration 1 has a dirty record"}},
		{name: "two version rows", s: snapshot{ran: ran(map[int64][]int{1: {1, 1, 1}}), rows: map[int64]int{1: 2}},
			want: []string{"2 version rows"}},
		{name: "dirty, in-flight statement not run", s: snapshot{ran: ran(map[int64][]int{2: {1, 1}}), dirty: dirty(2)}},
		{name: "dirty, in-flight statement ran", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 1}}), dirty: dirty(2)}},
		{name: "dirty at 0, first statement ran", s: snapshot{ran: ran(map[int64][]int{2: {1}}), dirty: dirty(0)}},
		{name: "dirty, all done, row missing", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 1, 1, 1}}), dirty: dirty(5)}},
		{name: "dirty, in-flight statement twice", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 2}}), dirty: dirty(2)},
			want: []string{"statement 3 ran 2 times", "statement 3 (the one in flight) ran 2 times"}},
		{name: "dirty, a later statement ran", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 0, 1}}), dirty: dirty(2)},
			want: []string{"statement 4, after the one in flight, ran 1 times"}},
		{name: "dirty, a done statement missing", s: snapshot{ran: ran(map[int64][]int{2: {0, 1}}), dirty: dirty(2)},
			want: []string{"statement 1 is counted as done but ran 0 times"}},
		{name: "dirty record wrong", s: snapshot{ran: ran(nil), dirty: map[int64]dirtyRow{2: {Version: 2, Direction: "down", File: "x.sql", Total: 4}}},
			want: []string{"statements_total is 4", `direction "down"`, `file "x.sql"`}},
		{name: "dirty and recorded", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 1, 1, 1}}), rows: map[int64]int{2: 1}, dirty: dirty(5)},
			want: []string{"both a version row and a dirty record"}},
		{name: "no transaction, neither row nor record", s: snapshot{ran: ran(map[int64][]int{2: {1, 1}})},
			want: []string{"ran statements [1 2] but has neither"}},
		{name: "no transaction, recorded, statement twice", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 1, 2, 1}}), rows: map[int64]int{2: 1}},
			want: []string{"statement 4 ran 2 times"}},
		{name: "no transaction, recorded, statement missing", s: snapshot{ran: ran(map[int64][]int{2: {1, 1, 1, 1, 0}}), rows: map[int64]int{2: 1}},
			want: []string{"statements [5] never ran"}},
		{name: "unknown versions", s: snapshot{ran: ran(map[int64][]int{9: {1}}), rows: map[int64]int{8: 1}, dirty: map[int64]dirtyRow{7: {Version: 7}}},
			want: []string{"records 8", "names 7", "unknown version 9"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.s.check(migs, c.complete)
			if len(got) != len(c.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d is %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestNamesStatement(t *testing.T) {
	d := dirtyRow{Version: 20260201, Done: 2, Total: 5}
	cases := []struct {
		out  string
		d    dirtyRow
		want bool
	}{
		{"migration 20260201 (x.sql) stopped partway: statements 1-2 of 5 completed, statement 3 (line 7) may have partly run", d, true},
		{"migration 20260201 stopped after 2 of 5 statements", d, true},
		{"migration 20260201 is dirty", d, false},
		{"statement 3 of migration 2026020 failed", d, false},
		{"migration 20260201: statement 13 failed", d, false},
		{"migration 20260201 stopped partway: all 5 statements completed but the version row was not written", dirtyRow{Version: 20260201, Done: 5, Total: 5}, true},
		{"migration 20260201 stopped partway: statement 1 of 5 may have partly run, none completed", dirtyRow{Version: 20260201, Total: 5}, true},
	}
	for _, c := range cases {
		if got := namesStatement(c.out, c.d); got != c.want {
			t.Errorf("namesStatement(%q, done %d) = %v, want %v", c.out, c.d.Done, got, c.want)
		}
	}
}
