package databases

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// plansOf makes plans named a, b, c... with the pending ones given by "p" in
// pattern (e.g. "-pp-": b and c pending), each planned at 0 with target 3.
func plansOf(pattern string) []Plan {
	plans := make([]Plan, len(pattern))
	for i, c := range pattern {
		name := string(rune('a' + i))
		plans[i] = Plan{Entry: Entry{Name: name, Secret: name + "-db", Key: "url"}, Index: i, Pending: c == 'p', PlannedVersion: "0", PlannedTarget: "3"}
		if c != 'p' {
			plans[i].PlannedVersion = "3"
		}
	}
	return plans
}

func names(rounds [][]Plan) [][]string {
	out := [][]string{}
	for _, r := range rounds {
		var ns []string
		for _, p := range r {
			ns = append(ns, p.Name)
		}
		out = append(out, ns)
	}
	return out
}

func TestRounds(t *testing.T) {
	tests := []struct {
		name        string
		pattern     string
		parallelism int
		canary      bool
		want        [][]string
	}{
		{"nothing pending", "---", 2, true, [][]string{}},
		{"one pending, canary", "-p-", 4, true, [][]string{{"b"}}},
		{"one pending, no canary", "-p-", 4, false, [][]string{{"b"}}},
		{"one after another", "ppp", 1, true, [][]string{{"a"}, {"b"}, {"c"}}},
		{"canary then pairs", "ppppp", 2, true, [][]string{{"a"}, {"b", "c"}, {"d", "e"}}},
		{"pairs without canary", "ppppp", 2, false, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"only the pending, in list order", "-p-pp", 2, true, [][]string{{"b"}, {"d", "e"}}},
		{"all at once after the canary", "pppp", 64, true, [][]string{{"a"}, {"b", "c", "d"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(Rounds(plansOf(tt.pattern), tt.parallelism, tt.canary)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Rounds = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseParallelism(t *testing.T) {
	for in, want := range map[string]int{"1": 1, " 4 ": 4, "64": 64} {
		if got, err := ParseParallelism(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "-1", "65", "2.5", "four", "1e3"} {
		if _, err := ParseParallelism(bad); err == nil || failure.KindOf(err) != failure.Usage || !strings.Contains(err.Error(), "1 to 64") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestJoinPlans(t *testing.T) {
	entries := []Entry{{Name: "orders", Secret: "orders-db", Key: "url"}, {Name: "billing", Secret: "billing-db", Key: "url"}}
	outs := []map[string]string{
		{"pending": "false", "current-version": "3", "target-version": "3", "needs-downtime": "false"},
		{"pending": "true", "current-version": "1", "target-version": "4", "files-digest": "sha256:ab", "git-commit": "c0ffee", "needs-downtime": ""},
	}
	plans, err := JoinPlans(entries, outs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Plan{
		{Entry: entries[0], Index: 0, PlannedVersion: "3", PlannedTarget: "3"},
		{Entry: entries[1], Index: 1, Pending: true, NeedsDowntime: true, PlannedVersion: "1", PlannedTarget: "4", FilesDigest: "sha256:ab", GitCommit: "c0ffee"},
	}
	if !reflect.DeepEqual(plans, want) {
		t.Errorf("JoinPlans =\n%+v\nwant\n%+v", plans, want)
	}
	if h := Holder(plans); h != "billing-db/url+orders-db/url" {
		t.Errorf("Holder = %q", h)
	}
	for _, tc := range []struct {
		name string
		outs []map[string]string
		want string
	}{
		{"one plan missing", outs[:1], "1 plan outputs for 2 entries"},
		{"pending not a bool", []map[string]string{outs[0], {"pending": "", "current-version": "1"}}, `entry 2 (billing) has pending=""`},
		{"no current version", []map[string]string{outs[0], {"pending": "true"}}, "current-version"},
	} {
		if _, err := JoinPlans(entries, tc.outs); err == nil || failure.KindOf(err) != failure.Usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a usage error with %q", tc.name, err, tc.want)
		}
	}
}

// out builds the per-database outputs: "0/migrate/current-version": "3".
func out(kv ...string) Outputs {
	o := Outputs{"unrelated": "x"}
	for i := 0; i+1 < len(kv); i += 2 {
		parts := strings.SplitN(kv[i], "/", 3)
		o["db-"+parts[0]+"-"+parts[1]+"-"+parts[2]] = kv[i+1]
	}
	return o
}

// cat joins the key-value pairs of parts into Outputs (out).
func cat(parts ...[]string) Outputs {
	var kv []string
	for _, p := range parts {
		kv = append(kv, p...)
	}
	return out(kv...)
}

// rechecks is what recheck found in each database, in order.
func rechecks(versions ...string) []string {
	var kv []string
	for i, v := range versions {
		kv = append(kv, strconv.Itoa(i)+"/recheck/current-version", v)
	}
	return kv
}

// The three-database run of the end-to-end scenarios: a nothing pending, b
// pending and migrated, c's migration failing (inside its transaction, so c is
// still at its planned version), with or without b moved.
func TestDecide(t *testing.T) {
	plans := plansOf("-pp")
	migratedB := []string{"1/migrate/current-version", "3", "1/migrate/target-version", "3"}
	failedC := []string{"2/migrate/current-version", "", "2/migrate/error", "migration 2 failed"}
	rechecked := func(b, c string) []string { return rechecks("3", b, c) }
	tests := []struct {
		name         string
		outputs      Outputs
		policy       string
		parallelism  int
		wantFailed   bool
		wantRestore  bool
		wantRollback [][]string
		wantAfter    bool
	}{
		{"keep-down after a failure", cat(migratedB, failedC, rechecked("3", "0")), KeepDown, 1, true, false, [][]string{}, false},
		{"restore: b moved, keep down", cat(migratedB, failedC, rechecked("3", "0")), Restore, 1, true, false, [][]string{}, false},
		{"restore: the canary failed, nothing moved", cat(failedC, rechecked("0", "0")), Restore, 1, true, true, [][]string{}, false},
		{"rollback: b moved", cat(migratedB, failedC, rechecked("3", "0")), Rollback, 1, true, false, [][]string{{"b"}}, true},
		{"rollback: b and c moved (c partly), in rounds", cat(migratedB, failedC, rechecked("3", "1")), Rollback, 2, true, false, [][]string{{"b", "c"}}, true},
		{"rollback: nothing moved, restore", cat(failedC, rechecked("0", "0")), Rollback, 1, true, true, [][]string{}, false},
		{"no migrate failed (scale-down failed): restore", cat(rechecked("0", "0")), KeepDown, 1, false, true, [][]string{}, false},
		{"all migrated, the final restore failed: restore", cat(migratedB, []string{"2/migrate/current-version", "3"}, rechecked("3", "3")), KeepDown, 1, false, true, [][]string{}, false},
		{"a migrate with no report that moved counts as failed", cat(rechecked("0", "2")), Restore, 1, true, false, [][]string{}, false},
		// argo stop between rounds: b migrated, c never started (no migrate output)
		{"stopped after b, c not reached: keep down", cat(migratedB, rechecked("3", "0")), KeepDown, 1, true, false, [][]string{}, false},
		{"stopped after b, c not reached, restore: b moved, keep down", cat(migratedB, rechecked("3", "0")), Restore, 1, true, false, [][]string{}, false},
		{"stopped after b, c not reached, rollback: b", cat(migratedB, rechecked("3", "0")), Rollback, 1, true, false, [][]string{{"b"}}, true},
		{"a recheck failed: keep down", cat(migratedB, failedC, []string{"0/recheck/current-version", "3", "1/recheck/current-version", "3"}), Restore, 1, true, false, [][]string{}, false},
		{"a recheck failed, rollback: roll back what moved, keep down", cat(migratedB, failedC, []string{"0/recheck/current-version", "3", "1/recheck/current-version", "3"}), Rollback, 1, true, false, [][]string{{"b"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(plans, tt.outputs, tt.policy, tt.parallelism)
			rb := names(d.Rollback)
			if d.MigrateFailed != tt.wantFailed || d.Restore != tt.wantRestore || !reflect.DeepEqual(rb, tt.wantRollback) || d.RestoreAfterRollback != tt.wantAfter {
				t.Errorf("Decide = failed %v restore %v rollback %v after %v (%s); want %v %v %v %v",
					d.MigrateFailed, d.Restore, rb, d.RestoreAfterRollback, d.Why, tt.wantFailed, tt.wantRestore, tt.wantRollback, tt.wantAfter)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

// Out-of-order files (below the current version) leave a migrated database at
// its planned version: "not reached" is told by the missing migrate report, and
// "changed" by the report too, not by the version alone.
func TestDecideOutOfOrder(t *testing.T) {
	plans := plansOf("-pp")
	plans[2].PlannedVersion, plans[2].PlannedTarget = "5", "5" // c: only files below 5 pending
	migratedB := []string{"1/migrate/current-version", "3"}
	migratedC := []string{"2/migrate/current-version", "5"}
	recheck := func(b, c string) []string { return rechecks("3", b, c) }
	tests := []struct {
		name                               string
		outputs                            Outputs
		policy                             string
		wantFailed, wantRestore, wantAfter bool
		wantRollback                       [][]string
	}{
		{"b migrated, c not reached: keep down", cat(migratedB, recheck("3", "5")), KeepDown, true, false, false, [][]string{}},
		{"b migrated, c not reached, restore: keep down", cat(migratedB, recheck("3", "5")), Restore, true, false, false, [][]string{}},
		{"b migrated, c not reached, rollback: b, then restore", cat(migratedB, recheck("3", "5")), Rollback, true, false, true, [][]string{{"b"}}},
		{"c migrated out of order, b not reached: keep down", cat(migratedC, recheck("0", "5")), KeepDown, true, false, false, [][]string{}},
		{"c migrated out of order, b not reached, restore: keep down", cat(migratedC, recheck("0", "5")), Restore, true, false, false, [][]string{}},
		{"c migrated out of order, b not reached, rollback: nothing undoes c, keep down", cat(migratedC, recheck("0", "5")), Rollback, true, false, false, [][]string{}},
		{"both migrated (the final restore failed): restore", cat(migratedB, migratedC, recheck("3", "5")), KeepDown, false, true, false, [][]string{}},
		{"stopped before any migration: restore", cat(recheck("0", "5")), KeepDown, false, true, false, [][]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(plans, tt.outputs, tt.policy, 1)
			if rb := names(d.Rollback); d.MigrateFailed != tt.wantFailed || d.Restore != tt.wantRestore || d.RestoreAfterRollback != tt.wantAfter || !reflect.DeepEqual(rb, tt.wantRollback) {
				t.Errorf("Decide = failed %v restore %v rollback %v after %v (%s); want %v %v %v %v",
					d.MigrateFailed, d.Restore, rb, d.RestoreAfterRollback, d.Why, tt.wantFailed, tt.wantRestore, tt.wantRollback, tt.wantAfter)
			}
		})
	}
}

// The reason a stopped run stays down names the databases never reached.
func TestDecideNamesWhatWasNotReached(t *testing.T) {
	plans := plansOf("-pp")
	d := Decide(plans, out("1/migrate/current-version", "3", "0/recheck/current-version", "3", "1/recheck/current-version", "3", "2/recheck/current-version", "0"), KeepDown, 1)
	if want := "keeping the workloads down (keep-down): c never migrated while b changed (the run stopped between rounds)"; d.Why != want {
		t.Errorf("Why = %q, want %q", d.Why, want)
	}
	d = Decide(plans, out("1/migrate/current-version", "3", "0/recheck/current-version", "3", "1/recheck/current-version", "3", "2/recheck/current-version", "0"), Restore, 1)
	if want := "keeping the workloads down: c never migrated while b changed (the run stopped between rounds)"; d.Why != want {
		t.Errorf("restore policy: Why = %q, want %q", d.Why, want)
	}
}

func TestSummarize(t *testing.T) {
	plans := plansOf("-ppp")
	tests := []struct {
		name    string
		outputs Outputs
		want    []Row
	}{
		{"migrated, failed, not reached", out(
			"1/migrate/current-version", "3", "1/migrate/applied-versions", "[1,2,3]", "1/migrate/sql-seconds", "0.250",
			"2/migrate/current-version", "", "2/migrate/applied-versions", "", "2/migrate/error", "migration 2_fail.sql: ERROR: boom (SQLSTATE P0001)",
			"2/recheck/current-version", "0"),
			[]Row{
				{Name: "a", PlannedVersion: "3", TargetVersion: "3", CurrentVersion: "3", AppliedVersions: []int64{}, Outcome: NothingPending},
				{Name: "b", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "3", AppliedVersions: []int64{1, 2, 3}, Seconds: 0.25, Outcome: Migrated},
				{Name: "c", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "0", AppliedVersions: []int64{}, Outcome: Failed, Error: "migration 2_fail.sql: ERROR: boom (SQLSTATE P0001)"},
				{Name: "d", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "0", AppliedVersions: []int64{}, Outcome: NotReached},
			}},
		{"rolled back and rollback failed", out(
			"1/migrate/current-version", "3", "1/migrate/applied-versions", "[1,2,3]",
			"1/recheck/current-version", "3", "1/rollback/current-version", "0",
			"2/migrate/current-version", "1", "2/migrate/applied-versions", "[1]", "2/migrate/error", "boom",
			"2/rollback/current-version", "1", "2/rollback/error", "no down migration for version 1",
			"3/migrate/current-version", "3", "3/recheck/current-version", "3", "3/rollback/current-version", ""),
			[]Row{
				{Name: "a", PlannedVersion: "3", TargetVersion: "3", CurrentVersion: "3", AppliedVersions: []int64{}, Outcome: NothingPending},
				{Name: "b", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "0", AppliedVersions: []int64{1, 2, 3}, Outcome: RolledBack},
				{Name: "c", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "1", AppliedVersions: []int64{1}, Outcome: RollbackFailed, Error: "boom; rollback: no down migration for version 1"},
				{Name: "d", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "3", AppliedVersions: []int64{}, Outcome: RollbackFailed, Error: "rollback: rollback did not reach version 0"},
			}},
		{"a failed migrate without an error result", out("1/migrate/current-version", "2"),
			[]Row{
				{Name: "a", PlannedVersion: "3", TargetVersion: "3", CurrentVersion: "3", AppliedVersions: []int64{}, Outcome: NothingPending},
				{Name: "b", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "2", AppliedVersions: []int64{}, Outcome: Failed, Error: "migrate did not reach version 3"},
				{Name: "c", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "0", AppliedVersions: []int64{}, Outcome: NotReached},
				{Name: "d", PlannedVersion: "0", TargetVersion: "3", CurrentVersion: "0", AppliedVersions: []int64{}, Outcome: NotReached},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(plans, tt.outputs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summarize =\n%+v\nwant\n%+v", got, tt.want)
			}
			lines := SummaryLines(got)
			if len(lines) != len(got)+1 {
				t.Fatalf("%d lines for %d databases", len(lines), len(got))
			}
			for i, r := range got {
				if !strings.HasPrefix(lines[i], r.Name+": "+r.Outcome+", version "+r.PlannedVersion+" -> "+r.CurrentVersion) {
					t.Errorf("line %d: %s", i, lines[i])
				}
			}
		})
	}
}

// runAction runs the step binary with args and returns its exit code, summary
// and results directory.
func runAction(t *testing.T, args ...string) (int, results.Summary, string) {
	t.Helper()
	dir := t.TempDir()
	var o, e bytes.Buffer
	code := step.Run(context.Background(), Spec(), append([]string{"check-databases", "--skip-version-check", "--results-dir", dir}, args...), &o, &e)
	var sum results.Summary
	if err := json.Unmarshal(o.Bytes(), &sum); err != nil {
		t.Fatalf("stdout is not the JSON summary: %q\n%s", o.String(), e.String())
	}
	return code, sum, dir
}

// The actions after plan through the binary: flags, results, and bad input
// refused with exit 2 without results.
func TestActions(t *testing.T) {
	entries := `[{"name":"a","secret":"a-db","key":"url"},{"name":"b","secret":"b-db","key":"url"},{"name":"c","secret":"c-db","key":"url"}]`
	planOuts := `[{"pending":"false","current-version":"3","target-version":"3"},{"pending":"true","current-version":"0","target-version":"3","needs-downtime":"false"},{"pending":"true","current-version":"0","target-version":"3"}]`
	code, sum, dir := runAction(t, "--action=rounds", "--entries", entries, "--plans", planOuts, "--parallelism", "2")
	if code != 0 {
		t.Fatalf("rounds: exit %d: %s", code, sum.Error)
	}
	for k, want := range map[string]string{"pending": "true", "needs-downtime": "true", "holder": "a-db/url+b-db/url+c-db/url"} {
		if sum.Results[k] != want {
			t.Errorf("rounds: %s = %q, want %q", k, sum.Results[k], want)
		}
	}
	var rounds [][]Plan
	if err := json.Unmarshal([]byte(sum.Results["rounds"]), &rounds); err != nil || !reflect.DeepEqual(names(rounds), [][]string{{"b"}, {"c"}}) {
		t.Errorf("rounds: %s (%v)", sum.Results["rounds"], err)
	}
	plans, err := os.ReadFile(filepath.Join(dir, "plans"))
	if err != nil {
		t.Fatal(err)
	}
	var items []map[string]any
	if err := json.Unmarshal(plans, &items); err != nil || len(items) != 3 || items[2]["index"] != 2.0 || items[2]["secret"] != "c-db" || items[2]["planned-target"] != "3" {
		t.Errorf("plans result %s (%v)", plans, err)
	}

	outputs := `{"db-1-migrate-current-version":"3","db-1-migrate-applied-versions":"[1,2,3]","db-2-migrate-error":"boom","db-0-recheck-current-version":"3","db-1-recheck-current-version":"3","db-2-recheck-current-version":"0","planned-version":"7"}`
	code, sum, _ = runAction(t, "--action=decide", "--plans", string(plans), "--outputs", outputs, "--policy", "rollback")
	if code != 0 || sum.Results["migrate-failed"] != "true" || sum.Results["restore"] != "false" || sum.Results["restore-after-rollback"] != "true" || !strings.Contains(sum.Results["rollback"], `"name":"b"`) || strings.Contains(sum.Results["rollback"], `"name":"c"`) {
		t.Errorf("decide: exit %d, results %v", code, sum.Results)
	}
	// the Argo exit handler gives every global output, the plans among them
	withPlans, _ := json.Marshal(map[string]string{"databases-plans": string(plans), "db-1-migrate-current-version": "3", "db-1-migrate-applied-versions": "[1,2,3]", "db-2-migrate-error": "boom"})
	code, sum, _ = runAction(t, "--action=summary", "--outputs", string(withPlans))
	var rows []Row
	if err := json.Unmarshal([]byte(sum.Results["databases"]), &rows); code != 0 || err != nil || len(rows) != 3 || rows[0].Outcome != NothingPending || rows[1].Outcome != Migrated || rows[2].Outcome != Failed || rows[2].Error != "boom" {
		t.Errorf("summary: exit %d, %s (%v)", code, sum.Results["databases"], err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"parallelism 0", []string{"--action=rounds", "--entries", entries, "--plans", planOuts, "--parallelism", "0"}, "--parallelism \"0\" is not an integer from 1 to 64"},
		{"parallelism 65", []string{"--action=rounds", "--entries", entries, "--plans", planOuts, "--parallelism", "65"}, "1 to 64"},
		{"parallelism words", []string{"--action=decide", "--plans", string(plans), "--parallelism", "many"}, "1 to 64"},
		{"one plan short", []string{"--action=rounds", "--entries", entries, "--plans", `[{"pending":"true","current-version":"0"}]`}, "1 plan outputs for 3 entries"},
		{"entries not a list", []string{"--action=rounds", "--entries", "{}", "--plans", planOuts}, "--entries"},
		{"unknown action", []string{"--action=migrate"}, `--action "migrate"`},
		{"unknown policy", []string{"--action=decide", "--plans", string(plans), "--policy", "pray"}, `--policy "pray"`},
		{"outputs not an object", []string{"--action=summary", "--plans", string(plans), "--outputs", "[1]"}, "--outputs"},
		{"no plans", []string{"--action=summary", "--plans", "[]"}, "--plans"},
	} {
		code, sum, dir := runAction(t, tc.args...)
		if code != failure.CodeUsage || !strings.Contains(sum.Error, tc.want) {
			t.Errorf("%s: exit %d %q, want 2 with %q", tc.name, code, sum.Error, tc.want)
		}
		if files, _ := os.ReadDir(dir); len(files) > 0 {
			t.Errorf("%s: results written for refused input", tc.name)
		}
	}
}
