package databases

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// runAction runs check-databases with args and returns its exit code, its
// results and its summary's error. It reads no Secret: the kubeconfig is absent.
func runStepArgs(t *testing.T, args ...string) (int, map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := step.Run(context.Background(), Spec(), append([]string{"check-databases", "--skip-version-check",
		"--kubeconfig", filepath.Join(dir, "none"), "--results-dir", dir}, args...), &out, &errb)
	var sum results.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("%v: stdout is not the JSON summary: %q (%s)", args, out.String(), errb.String())
	}
	res := map[string]string{}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		res[f.Name()] = string(b)
	}
	return code, res, sum.Error
}

// planDir writes the results migrate --plan writes, as a plan step would.
func planDir(t *testing.T, res map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range res {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The Tekton chain over a list: each plan TaskRun's plan-line, then rounds and
// pick given the lines in another order than the list's (Tekton sorts them by
// TaskRun name), paired by Secret.
func TestPlanLinesRoundsAndPick(t *testing.T) {
	const list = `[{"secret": "orders-db"}, {"secret": "billing-db", "key": "dsn"}, {"secret": "users-db"}]`
	plans := map[string]map[string]string{
		"orders-db":  {"pending": "false", "current-version": "3", "target-version": "3", "files-digest": "d0", "needs-downtime": "true"},
		"billing-db": {"pending": "true", "current-version": "1", "target-version": "4", "files-digest": "d1", "needs-downtime": "false", "git-commit": ""},
		"users-db":   {"pending": "true", "current-version": "0", "target-version": "2", "files-digest": "d2"},
	}
	lines := map[string]string{}
	for secret, res := range plans {
		code, out, msg := runStepArgs(t, "--action", "plan-line", "--secret", secret, "--plan-results", planDir(t, res))
		if code != failure.CodeOK {
			t.Fatalf("plan-line %s: exit %d %s", secret, code, msg)
		}
		lines[secret] = out[ResultPlanLine]
	}
	var line map[string]string
	if err := json.Unmarshal([]byte(lines["billing-db"]), &line); err != nil || line["secret"] != "billing-db" || line["target-version"] != "4" || line["migrations-digest"] != "" {
		t.Errorf("billing-db's line %q (%v)", lines["billing-db"], err)
	}
	given := []string{lines["users-db"], lines["billing-db"], lines["orders-db"]}
	code, out, msg := runStepArgs(t, append([]string{"--action", "rounds", "--databases", list, "--parallelism", "2"}, given...)...)
	if code != failure.CodeOK {
		t.Fatalf("rounds: exit %d %s", code, msg)
	}
	want := map[string]string{"order": `["billing-db","users-db"]`, "pending": "true", "needs-downtime": "true", "holder": "billing-db/dsn+orders-db/url+users-db/url"}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("rounds result %s = %q, want %q", k, out[k], v)
		}
	}
	if _, ok := out["plans"]; ok {
		t.Errorf("rounds with plan lines wrote plans (it may outgrow a TaskRun's results)")
	}
	code, out, msg = runStepArgs(t, append([]string{"--action", "pick", "--secret", "billing-db", "--databases", list}, given...)...)
	if code != failure.CodeOK {
		t.Fatalf("pick: exit %d %s", code, msg)
	}
	for k, v := range map[string]string{"key": "dsn", "index": "1", "pending": "true", "planned-version": "1", "planned-target": "4", "planned-files-digest": "d1", "git-commit": ""} {
		if got, ok := out[k]; !ok || got != v {
			t.Errorf("pick result %s = %q (written %v), want %q", k, got, ok, v)
		}
	}
}

// What the Pipeline could wire wrong is refused (exit 2) before any result.
func TestPlanLinesRefused(t *testing.T) {
	const list = `[{"secret": "a"}, {"secret": "b"}]`
	la := `{"secret":"a","pending":"false","current-version":"1"}`
	lb := `{"secret":"b","pending":"true","current-version":"0"}`
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--action", "rounds", "--databases", list, la}, "no plan line for entry 2 (b)"},
		{[]string{"--action", "rounds", "--databases", list, la, la, lb}, `plan line 2 names the Secret "a" again`},
		{[]string{"--action", "rounds", "--databases", list, la, `{"secret":"c","pending":"true","current-version":"0"}`}, `plan line 2 names the Secret "c", which no entry of the list has`},
		{[]string{"--action", "rounds", "--databases", list, la, "[1]"}, "plan line 2 is not a JSON object of strings"},
		{[]string{"--action", "rounds", "--databases", list, la, `{"secret":"b","pending":"maybe","current-version":"0"}`}, `has pending="maybe"`},
		{[]string{"--action", "rounds", "--databases", `[{"secret": "t", "key": "a"}, {"secret": "t", "key": "b"}]`, la}, "share the Secret t"},
		{[]string{"--action", "pick", "--secret", "a", "--databases", list, la}, "no plan line for entry 2 (b)"},
		{[]string{"--action", "check", "--databases", list, la}, "--action=check takes no arguments after the flags"},
		{[]string{"--action", "decide", "--plans", "[]", la}, "--databases is empty: decide with lines reads the run's list"},
		{[]string{"--action", "plan-line", "--secret", "a"}, "--action=plan-line needs --secret"},
	} {
		code, out, msg := runStepArgs(t, tc.args...)
		if code != failure.CodeUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 with %q", tc.args, code, msg, tc.want)
		}
		if len(out) > 0 {
			t.Errorf("%v: results written: %v", tc.args, out)
		}
	}
	// a plan that did not finish wrote no pending: plan-line fails (exit 1)
	code, _, msg := runStepArgs(t, "--action", "plan-line", "--secret", "a", "--plan-results", planDir(t, map[string]string{"current-version": "1"}))
	if code != failure.CodePermanent || !strings.Contains(msg, "reading plan's result pending") {
		t.Errorf("plan-line without pending: exit %d %q, want 1", code, msg)
	}
}

// migrateDir writes what migrate's step leaves behind in its TaskRun: its
// results and, when code is not empty, its exit code file (exitCode).
func migrateDir(t *testing.T, code string, res map[string]string) (string, string) {
	t.Helper()
	dir := planDir(t, res)
	exit := filepath.Join(t.TempDir(), "exitCode")
	if code != "" {
		if err := os.WriteFile(exit, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, exit
}

// Each migrate TaskRun of a list reports one line: a migration that failed for
// good is a line with its error (the TaskRun succeeds, so the summary sees every
// database), one that failed transiently fails the TaskRun (exit 75: Tekton's
// retries run it again), and one whose turn never came says why.
func TestMigrateLine(t *testing.T) {
	exitCodeWait = 0 // the case without an exit code file fails at once
	ok := map[string]string{"current-version": "4", "target-version": "4", "applied-versions": "[2,3,4]", "sql-seconds": "0.012"}
	broken := map[string]string{"current-version": "1", "target-version": "2", "applied-versions": "[]", "error": "applying 2_broken.sql: ERROR: syntax error (SQLSTATE 42601)"}
	for _, tc := range []struct {
		name, turn, why, code string
		res                   map[string]string
		exit                  int
		line                  map[string]string
		failed                string
	}{
		{name: "migrated", turn: "true", code: "0", res: ok, line: map[string]string{"step": "migrate", "secret": "s", "ran": "true", "current-version": "4", "applied-versions": "[2,3,4]", "sql-seconds": "0.012", "error": ""}, failed: "false"},
		{name: "failed for good", turn: "true", code: "1", res: broken, line: map[string]string{"ran": "true", "current-version": "1", "target-version": "2", "error": broken["error"]}, failed: "true"},
		{name: "usage error without an error result", turn: "true", code: "2", res: map[string]string{}, line: map[string]string{"ran": "true", "error": "migrate exited 2"}, failed: "true"},
		{name: "not its turn", turn: "false", why: "not started: the migrate of a failed", line: map[string]string{"ran": "false", "why": "not started: the migrate of a failed"}, failed: "false"},
		{name: "transient", turn: "true", code: "75", res: map[string]string{"error": "connecting: connection refused"}, exit: failure.CodeTransient},
		{name: "killed by the OOM killer", turn: "true", code: "137", res: map[string]string{}, exit: failure.CodeTransient},
		{name: "terminated", turn: "true", code: "143", res: map[string]string{}, exit: failure.CodeTransient},
		{name: "killed by a signal (the entrypoint writes -1)", turn: "true", code: "-1", res: map[string]string{}, exit: failure.CodeTransient},
		{name: "a long error and many versions, cut to fit the TaskRun's results", turn: "true", code: "1", res: map[string]string{"current-version": "300", "applied-versions": longApplied(300), "error": strings.Repeat("e", 5000)}, line: map[string]string{"ran": "true", "applied-count": "300", "applied-versions": longApplied(20) + "…"}, failed: "true"},
		// quotes and <, >, & grow 4 and 7 times once encoded twice: a reviewer
		// measured 1000 bytes of them past the kubelet's share of the pod's
		// messages (2457 bytes per container of five)
		{name: "an error of quotes and brackets, cut by its encoded length", turn: "true", code: "1", res: map[string]string{"current-version": "1", "error": strings.Repeat(`"<&>`, 300)}, line: map[string]string{"ran": "true"}, failed: "true"},
		{name: "turn came, no exit code", turn: "true", code: "", res: ok, exit: failure.CodePermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, exit := migrateDir(t, tc.code, tc.res)
			code, out, msg := runStepArgs(t, "--action", "migrate-line", "--secret", "s", "--turn", tc.turn, "--turn-why", tc.why, "--migrate-results", dir, "--exit-code-file", exit)
			if code != tc.exit {
				t.Fatalf("exit %d %q, want %d", code, msg, tc.exit)
			}
			if tc.exit != 0 {
				if out[ResultMigrateLine] != "" || out[ResultFailed] != "" {
					t.Errorf("a failed migrate-line wrote its line: %v", out)
				}
				if tc.code == "75" && !strings.Contains(msg, "connection refused") {
					t.Errorf("the transient failure does not say migrate's error: %q", msg)
				}
				return
			}
			var line map[string]string
			if err := json.Unmarshal([]byte(out[ResultMigrateLine]), &line); err != nil {
				t.Fatalf("line %q: %v", out[ResultMigrateLine], err)
			}
			if n := encodedLen(out[ResultMigrateLine]); n > maxLineEncoded {
				t.Errorf("the line takes %d bytes encoded, more than its share of the pod's messages (%d)", n, maxLineEncoded)
			}
			for k, v := range tc.line {
				if strings.HasSuffix(v, "…") {
					if !strings.HasPrefix(line[k], strings.TrimSuffix(v, "]…")) {
						t.Errorf("line %s = %q, want it to start with %q", k, line[k], v)
					}
					continue
				}
				if line[k] != v {
					t.Errorf("line %s = %q, want %q (line %v)", k, line[k], v, line)
				}
			}
			if out[ResultFailed] != tc.failed {
				t.Errorf("failed = %q, want %q", out[ResultFailed], tc.failed)
			}
		})
	}
	for _, args := range [][]string{
		{"--action", "migrate-line", "--secret", "s", "--turn", "true", "--exit-code-file", "x"},
		{"--action", "migrate-line", "--secret", "s", "--turn", "yes", "--exit-code-file", "x", "--migrate-results", "y"},
	} {
		if code, out, msg := runStepArgs(t, args...); code != failure.CodeUsage || len(out) > 0 {
			t.Errorf("%v: exit %d %q %v, want 2 and no results", args, code, msg, out)
		}
	}
}

// The summary of a Tekton run: the plan lines and the migrate lines, in any
// order; it fails (exit 1, the restore after it skipped) when a pending
// database is not at its target.
func TestSummaryFromLines(t *testing.T) {
	const list = `[{"secret": "a-db", "name": "a"}, {"secret": "b-db", "name": "b"}, {"secret": "c-db", "name": "c"}]`
	plan := func(secret, pending, cur, target string) string {
		return `{"secret":"` + secret + `","pending":"` + pending + `","current-version":"` + cur + `","target-version":"` + target + `","files-digest":"d"}`
	}
	pa, pb, pc := plan("a-db", "false", "3", "3"), plan("b-db", "true", "1", "4"), plan("c-db", "true", "0", "2")
	mb := `{"step":"migrate","secret":"b-db","ran":"true","current-version":"4","target-version":"4","applied-versions":"[2,3,4]","sql-seconds":"0.5","error":""}`
	mcFailed := `{"step":"migrate","secret":"c-db","ran":"true","current-version":"0","target-version":"2","applied-versions":"[]","sql-seconds":"0","error":"applying 1_x.sql: boom"}`
	mcNotReached := `{"step":"migrate","secret":"c-db","ran":"false","why":"not started"}`
	mc := `{"step":"migrate","secret":"c-db","ran":"true","current-version":"2","target-version":"2","applied-versions":"[1,2]","sql-seconds":"0.1","error":""}`
	for _, tc := range []struct {
		name     string
		lines    []string
		exit     int
		outcomes map[string]string
		msg      string
	}{
		{"every pending one migrated", []string{mc, pb, mb, pa, pc}, 0, map[string]string{"a": NothingPending, "b": Migrated, "c": Migrated}, ""},
		{"one failed", []string{pa, pb, pc, mb, mcFailed}, failure.CodePermanent, map[string]string{"a": NothingPending, "b": Migrated, "c": Failed}, "c (failed)"},
		{"one not reached", []string{pa, pb, pc, mb, mcNotReached}, failure.CodePermanent, map[string]string{"c": NotReached}, "c (not-reached)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// the summary after migrate never fails; the verdict, the run's
			// last task, does when a migration failed
			code, out, msg := runStepArgs(t, append([]string{"--action", "summary", "--databases", list}, tc.lines...)...)
			if code != 0 {
				t.Fatalf("summary: exit %d %q, want 0", code, msg)
			}
			code, _, msg = runStepArgs(t, append([]string{"--action", "summary", "--fail-when-failed", "--databases", list}, tc.lines...)...)
			if code != tc.exit || !strings.Contains(msg, tc.msg) {
				t.Fatalf("verdict: exit %d %q, want %d with %q", code, msg, tc.exit, tc.msg)
			}
			var rows []Row
			if err := json.Unmarshal([]byte(out["databases"]), &rows); err != nil || len(rows) != 3 {
				t.Fatalf("databases %q (%v)", out["databases"], err)
			}
			for _, r := range rows {
				if want, ok := tc.outcomes[r.Name]; ok && r.Outcome != want {
					t.Errorf("%s: %s, want %s (%+v)", r.Name, r.Outcome, want, r)
				}
			}
			if want := strconv.FormatBool(tc.exit != 0); out["migrate-failed"] != want {
				t.Errorf("migrate-failed = %q, want %q", out["migrate-failed"], want)
			}
			if !strings.HasPrefix(out["summary"], "3 databases: ") {
				t.Errorf("summary = %q", out["summary"])
			}
		})
	}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{pa, pb, pc, mb, mb}, `migrate line 5 names the Secret "b-db" again`},
		{[]string{pa, pb, mb}, "no plan line for entry 3 (c)"},
		{[]string{pa, pb, pc, `{"step":"decide","secret":"b-db"}`}, `line 4 is of step "decide"`},
		{[]string{pa, pb, pc, `{"step":"recheck","secret":"b-db"}`, `{"step":"recheck","secret":"b-db"}`}, `recheck line 5 names the Secret "b-db" again`},
		{[]string{pa, pb, pc, `{"step":"migrate","secret":"z-db","ran":"true"}`}, `names the Secret "z-db", which no entry`},
	} {
		code, out, msg := runStepArgs(t, append([]string{"--action", "summary", "--databases", list}, tc.lines...)...)
		if code != failure.CodeUsage || !strings.Contains(msg, tc.want) || len(out) > 0 {
			t.Errorf("%v: exit %d %q %v, want 2 with %q and no results", tc.lines, code, msg, out, tc.want)
		}
	}
}

// The restore policy over a Tekton list: decide given the plan, migrate and
// recheck lines restores only when every database is still at its planned
// version, and keeps the application down when one moved or is not known.
func TestDecideFromLines(t *testing.T) {
	const list = `[{"secret": "a-db", "name": "a"}, {"secret": "b-db", "name": "b"}, {"secret": "c-db", "name": "c"}]`
	plan := func(secret, pending, cur, target string) string {
		return `{"secret":"` + secret + `","pending":"` + pending + `","current-version":"` + cur + `","target-version":"` + target + `","files-digest":"d"}`
	}
	recheck := func(secret, cur string) string {
		return `{"step":"recheck","secret":"` + secret + `","pending":"true","current-version":"` + cur + `"}`
	}
	plans := []string{plan("a-db", "false", "3", "3"), plan("b-db", "true", "2", "3"), plan("c-db", "true", "0", "2")}
	// b, the canary, failed inside its transaction (still at 2); c never started
	migrated := []string{`{"step":"migrate","secret":"b-db","ran":"true","current-version":"2","target-version":"3","applied-versions":"[]","sql-seconds":"0","error":"applying 3_x.sql: boom"}`,
		`{"step":"migrate","secret":"c-db","ran":"false","why":"not started: the migrate of b-db failed"}`}
	for _, tc := range []struct {
		name     string
		policy   string
		rechecks []string
		restore  string
		why      string
	}{
		{"restore, nothing moved", "restore", []string{recheck("a-db", "3"), recheck("b-db", "2"), recheck("c-db", "0")}, "true", "restoring: the migration of b failed, and every database is still at its planned version"},
		{"restore, one moved", "restore", []string{recheck("a-db", "3"), recheck("b-db", "2"), recheck("c-db", "1")}, "false", "keeping the workloads down"},
		{"restore, one not known", "restore", []string{recheck("a-db", "3"), recheck("b-db", "2")}, "false", "the version of c is not known"},
		{"keep-down", "keep-down", []string{recheck("a-db", "3"), recheck("b-db", "2"), recheck("c-db", "0")}, "false", "keeping the workloads down (keep-down)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := append(append(append([]string{}, tc.rechecks...), plans...), migrated...)
			code, out, msg := runStepArgs(t, append([]string{"--action", "decide", "--policy", tc.policy, "--databases", list}, lines...)...)
			if code != 0 {
				t.Fatalf("exit %d %q", code, msg)
			}
			if out["restore"] != tc.restore || out["migrate-failed"] != "true" || !strings.Contains(out["why"], tc.why) {
				t.Errorf("restore %q migrate-failed %q why %q, want restore %q and why with %q", out["restore"], out["migrate-failed"], out["why"], tc.restore, tc.why)
			}
		})
	}
	// the policies a Pipeline has are checked before anything runs
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", "rollback", "--policies", "keep-down,restore"}, `on-migrate-failure "rollback" is not built for this Pipeline yet: use keep-down or restore`},
		{[]string{"--policy", "restor", "--policies", "keep-down,restore"}, `on-migrate-failure "restor" is not keep-down, restore`},
		{[]string{"--policy", "", "--policies", "keep-down,restore"}, `on-migrate-failure "" is not keep-down, restore`},
		{[]string{"--policy", "keep-down", "--policies", "keep-down,never"}, `--policies: "never" is not keep-down, restore or rollback`},
	} {
		code, out, msg := runStepArgs(t, append([]string{"--action", "check", "--one-entry-per-secret", "--databases", list}, tc.args...)...)
		if code != failure.CodeUsage || !strings.Contains(msg, tc.want) || len(out) > 0 {
			t.Errorf("%v: exit %d %q %v, want 2 with %q", tc.args, code, msg, out, tc.want)
		}
	}
	if code, out, msg := runStepArgs(t, "--action", "plan-line", "--secret", "a", "--plan-results", planDir(t, map[string]string{"pending": "true", "current-version": "1"}), "--line-step", "recheck"); code != 0 || !strings.Contains(out[ResultPlanLine], `"step":"recheck"`) {
		t.Errorf("plan-line --line-step recheck: exit %d %q %v", code, msg, out)
	}
}

// The rollback policy over a Tekton list: decide names the databases to roll
// back (their matrix), and the summary given their rollback lines says which
// came back; the verdict fails the run either way.
func TestRollbackFromLines(t *testing.T) {
	const list = `[{"secret": "a-db", "name": "a"}, {"secret": "b-db", "name": "b"}, {"secret": "c-db", "name": "c"}]`
	plan := func(secret, pending, cur, target string) string {
		return `{"secret":"` + secret + `","pending":"` + pending + `","current-version":"` + cur + `","target-version":"` + target + `","files-digest":"d"}`
	}
	recheck := func(secret, cur string) string {
		return `{"step":"recheck","secret":"` + secret + `","pending":"true","current-version":"` + cur + `"}`
	}
	// b migrated 0 -> 3 (the canary), c failed after applying 1 of 2
	lines := []string{plan("a-db", "false", "3", "3"), plan("b-db", "true", "0", "3"), plan("c-db", "true", "0", "2"),
		`{"step":"migrate","secret":"b-db","ran":"true","current-version":"3","target-version":"3","applied-versions":"[1,2,3]","sql-seconds":"0.1","error":""}`,
		`{"step":"migrate","secret":"c-db","ran":"true","current-version":"1","target-version":"2","applied-versions":"[1]","sql-seconds":"0.1","error":"applying 2_x.sql: boom"}`,
		recheck("a-db", "3"), recheck("b-db", "3"), recheck("c-db", "1")}
	code, out, msg := runStepArgs(t, append([]string{"--action", "decide", "--policy", "rollback", "--parallelism", "2", "--databases", list}, lines...)...)
	if code != 0 || out["rollback-order"] != `["b-db","c-db"]` || out["rollback-secrets"] != "b-db,c-db" || out["rollback-any"] != "true" || out["restore-after-rollback"] != "true" {
		t.Fatalf("decide: exit %d %q %v, want b-db and c-db rolled back, then a restore", code, msg, out)
	}
	// keep-down rolls back nothing
	if code, out, _ := runStepArgs(t, append([]string{"--action", "decide", "--policy", "keep-down", "--databases", list}, lines...)...); code != 0 || out["rollback-order"] != `[]` || out["rollback-any"] != "false" {
		t.Errorf("decide keep-down: exit %d %v, want no rollback", code, out)
	}
	// the rollback TaskRuns' lines (migrate-line --line-step rollback)
	dir, exit := migrateDir(t, "0", map[string]string{"current-version": "0"})
	code, out, msg = runStepArgs(t, "--action", "migrate-line", "--line-step", "rollback", "--secret", "b-db", "--turn", "true", "--migrate-results", dir, "--exit-code-file", exit)
	if code != 0 || !strings.Contains(out[ResultMigrateLine], `"step":"rollback"`) {
		t.Fatalf("migrate-line --line-step rollback: exit %d %q %v", code, msg, out)
	}
	rb, rc := out[ResultMigrateLine], `{"step":"rollback","secret":"c-db","ran":"true","current-version":"1","error":"rolling back 1_x.sql: boom"}`
	code, out, msg = runStepArgs(t, append(append([]string{"--action", "summary", "--fail-when-failed", "--databases", list}, lines...), rb, rc)...)
	if code != failure.CodePermanent || !strings.Contains(msg, "b (rolled-back), c (rollback-failed)") || out["rollback-failed"] != "true" {
		t.Errorf("verdict after the rollbacks: exit %d %q %v, want 1 naming b rolled back and c's rollback failed", code, msg, out)
	}
	// every rollback came back: still a failed run
	rc = `{"step":"rollback","secret":"c-db","ran":"true","current-version":"0","error":""}`
	code, out, msg = runStepArgs(t, append(append([]string{"--action", "summary", "--fail-when-failed", "--databases", list}, lines...), rb, rc)...)
	if code != failure.CodePermanent || !strings.Contains(msg, "b (rolled-back), c (rolled-back)") || out["rollback-failed"] != "false" {
		t.Errorf("verdict after good rollbacks: exit %d %q %v, want 1 and rollback-failed=false", code, msg, out)
	}
	// a rollback decide chose without a line that ran (its TaskRun's results
	// lost) is a failed rollback: no restore after it
	for _, rcLine := range []string{"", `{"step":"rollback","secret":"c-db","ran":"false","why":"not started"}`} {
		args := append(append([]string{"--action", "summary", "--expect-rollbacks", "b-db,c-db", "--databases", list}, lines...), rb)
		if rcLine != "" {
			args = append(args, rcLine)
		}
		code, out, msg = runStepArgs(t, args...)
		if code != 0 || out["rollback-failed"] != "true" {
			t.Errorf("b-db and c-db expected, c-db's line %q: exit %d %q %v, want rollback-failed=true", rcLine, code, msg, out)
		}
	}
	// the Task passes it empty (its default) to every summary: nothing expected;
	// an e2e run on the real Tekton found this refused once (exit 2)
	if code, out, msg := runStepArgs(t, append([]string{"--action", "summary", "--expect-rollbacks=", "--databases", list}, lines...)...); code != 0 || out["rollback-failed"] != "false" {
		t.Errorf("--expect-rollbacks empty: exit %d %q %v, want 0 and rollback-failed=false", code, msg, out)
	}
	code, out, msg = runStepArgs(t, append(append([]string{"--action", "summary", "--expect-rollbacks", "b-db", "--databases", list}, lines...), rb)...)
	if code != 0 || out["rollback-failed"] != "false" {
		t.Errorf("b-db expected and rolled back: exit %d %q %v, want rollback-failed=false", code, msg, out)
	}
	if code, _, msg := runStepArgs(t, append([]string{"--action", "summary", "--expect-rollbacks", "z-db", "--databases", list}, lines...)...); code != failure.CodeUsage {
		t.Errorf("--expect-rollbacks z-db: exit %d %q, want 2", code, msg)
	}
	if code, _, msg := runStepArgs(t, "--action", "migrate-line", "--line-step", "recheck", "--secret", "b-db", "--turn", "true", "--migrate-results", dir, "--exit-code-file", exit); code != failure.CodeUsage {
		t.Errorf("migrate-line --line-step recheck: exit %d %q, want 2", code, msg)
	}
}

// longApplied is the JSON list of versions 1 to n.
func longApplied(n int) string {
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(i + 1)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// The summary's databases result, encoded as the entrypoint writes it, stays
// within its bound: rows whose errors are full of quotes are left to the log.
func TestSummaryResultBound(t *testing.T) {
	const list = `[{"secret": "a-db"}, {"secret": "b-db"}]`
	errQuotes := strings.Repeat(`\"`, 1000) // a thousand quotes, escaped in the line
	lines := []string{
		`{"secret":"a-db","pending":"true","current-version":"0","target-version":"1"}`,
		`{"secret":"b-db","pending":"true","current-version":"0","target-version":"1"}`,
		`{"step":"migrate","secret":"a-db","ran":"true","current-version":"0","target-version":"1","applied-versions":"[]","sql-seconds":"0","error":"` + errQuotes + `"}`,
		`{"step":"migrate","secret":"b-db","ran":"true","current-version":"1","target-version":"1","applied-versions":"[1]","sql-seconds":"0","error":""}`,
	}
	code, out, msg := runStepArgs(t, append([]string{"--action", "summary", "--databases", list}, lines...)...)
	if code != 0 {
		t.Fatalf("exit %d %q", code, msg)
	}
	if out["databases"] != "" || out["summary"] != "2 databases: 1 failed, 1 migrated" {
		t.Errorf("databases %d bytes (%d encoded), summary %q: want the rows left to the log", len(out["databases"]), encodedLen(out["databases"]), out["summary"])
	}
}

// The Tekton check Task's --max-names-bytes keeps the results that name every
// database twice within the one termination message the kubelet keeps (4096
// bytes for a Task of one container): rounds (order and holder, beside the
// longest superseded-holds plan may write) and decide (rollback-order and
// rollback-secrets, every database to roll back). At the bound, as the
// entrypoint writes them, both still fit, for many short names and for a few
// of the longest a Secret may have.
func TestResultsFitTheTektonNamesBound(t *testing.T) {
	task, err := os.ReadFile("../../tekton/tasks/databases-check.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var bound int
	for _, l := range strings.Split(string(task), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "- --max-names-bytes="); ok {
			bound, _ = strconv.Atoi(v)
		}
	}
	if bound <= 0 {
		t.Fatal("tekton/tasks/databases-check.yaml passes no --max-names-bytes")
	}
	type result struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		Type  int    `json:"type"`
	}
	// message is the termination message of the declared results, as the
	// entrypoint writes it, and Tekton's own entries (the step's start) with slack.
	const others = 200
	message := func(out map[string]string, declared ...string) int {
		var m []result
		for _, k := range declared {
			m = append(m, result{k, out[k], 1})
		}
		b, _ := json.Marshal(m)
		return len(b) + others
	}
	for _, shape := range []struct{ secret, key int }{{4, 3}, {12, 3}, {40, 3}, {20, 20}, {253, 3}, {5, 253}} {
		var names, list, plans, lines []string
		for i := 0; ; i++ {
			secret, key := fmt.Sprintf("%0*d", shape.secret, i), strings.Repeat("k", shape.key)
			b, _ := json.Marshal(append(slices.Clone(names), secret+"/"+key))
			if encodedLen(string(b)) > bound {
				break
			}
			names = append(names, secret+"/"+key)
			list = append(list, `{"secret":"`+secret+`","key":"`+key+`"}`)
			plans = append(plans, `{"secret":"`+secret+`","pending":"true","current-version":"1","target-version":"3","files-digest":"d"}`)
			lines = append(lines, `{"step":"recheck","secret":"`+secret+`","pending":"true","current-version":"2"}`)
		}
		lines = append(lines, plans...)
		n := len(names)
		databases := "[" + strings.Join(list, ",") + "]"
		what := fmt.Sprintf("%d databases (Secret %d bytes, key %d)", n, shape.secret, shape.key)

		code, out, msg := runStepArgs(t, append([]string{"--action", "rounds", "--databases", databases}, plans...)...)
		if code != 0 {
			t.Fatalf("%s: rounds: exit %d %q", what, code, msg)
		}
		// plan's superseded-holds: at most MaxSupersededHolds run uids
		out["superseded-holds"] = strings.TrimSuffix(strings.Repeat("0f9b7a52-5d7e-4c55-9c1e-8a2f0e6b1c3d,", 24), ",")
		r := message(out, "order", "pending", "needs-downtime", "holder", "superseded-holds")
		if r > 4096 {
			t.Errorf("%s: rounds' message takes %d bytes, over 4096", what, r)
		}

		// the last database failed; every one moved: all are rolled back
		for i, name := range names {
			secret, _, _ := strings.Cut(name, "/")
			if i == n-1 {
				lines = append(lines, `{"step":"migrate","secret":"`+secret+`","ran":"true","current-version":"2","target-version":"3","applied-versions":"[2]","sql-seconds":"0","error":"applying 3_x.sql: boom"}`)
			} else {
				lines = append(lines, `{"step":"migrate","secret":"`+secret+`","ran":"true","current-version":"3","target-version":"3","applied-versions":"[2,3]","sql-seconds":"0"}`)
			}
		}
		code, out, msg = runStepArgs(t, append([]string{"--action", "decide", "--policy", "rollback", "--databases", databases}, lines...)...)
		if code != 0 {
			t.Fatalf("%s: decide: exit %d %q", what, code, msg)
		}
		var got []string
		if err := json.Unmarshal([]byte(out["rollback-order"]), &got); err != nil || len(got) != n {
			t.Fatalf("%s: rollback-order %q, want them all", what, out["rollback-order"])
		}
		// declared by tekton/tasks/databases-summary.yaml and written by decide
		d := message(out, "migrate-failed", "restore", "why", "rollback-order", "rollback-any", "rollback-secrets", "restore-after-rollback")
		t.Logf("%s: messages of rounds %d, decide %d bytes", what, r, d)
		if d > 4096 {
			t.Errorf("%s (--max-names-bytes=%d): decide's message takes %d bytes, over 4096", what, bound, d)
		}
	}
}

// plan-line after the plan step's exit code: a recheck whose plan failed for
// good (a dirty database) is a line whose version is not known, so that decide
// still runs; a rerun code fails the step (75, the TaskRun's retries); a first
// plan that failed fails it (1); exit 0 is the usual line.
func TestPlanLineAfterTheExitCode(t *testing.T) {
	exitCodeWait = 0
	planned := map[string]string{"pending": "true", "current-version": "1", "target-version": "3"}
	dirty := map[string]string{"error": "the database is dirty: migration 3 without a transaction stopped partway; fix it by hand"}
	for _, tc := range []struct {
		name, lineStep, code string
		res                  map[string]string
		exit                 int
		line                 map[string]string
	}{
		{name: "plan succeeded", code: "0", res: planned, line: map[string]string{"secret": "s", "current-version": "1", "pending": "true"}},
		{name: "recheck succeeded", lineStep: "recheck", code: "0", res: planned, line: map[string]string{"step": "recheck", "current-version": "1"}},
		{name: "recheck of a dirty database", lineStep: "recheck", code: "1", res: dirty, line: map[string]string{"step": "recheck", "secret": "s", "current-version": "", "error": dirty["error"]}},
		{name: "recheck refused without an error result", lineStep: "recheck", code: "2", res: map[string]string{}, line: map[string]string{"current-version": "", "error": "migrate --plan exited 2"}},
		{name: "recheck transient", lineStep: "recheck", code: "75", res: map[string]string{}, exit: failure.CodeTransient},
		{name: "recheck killed", lineStep: "recheck", code: "-1", res: map[string]string{}, exit: failure.CodeTransient},
		{name: "first plan failed", code: "1", res: dirty, exit: failure.CodePermanent},
		{name: "no exit code", lineStep: "recheck", code: "", res: planned, exit: failure.CodePermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, exit := migrateDir(t, tc.code, tc.res)
			code, out, msg := runStepArgs(t, "--action", "plan-line", "--secret", "s", "--line-step", tc.lineStep, "--plan-results", dir, "--exit-code-file", exit)
			if code != tc.exit {
				t.Fatalf("exit %d %q, want %d", code, msg, tc.exit)
			}
			if tc.exit != 0 {
				if out[ResultPlanLine] != "" {
					t.Errorf("a failed plan-line wrote its line: %v", out)
				}
				return
			}
			var line map[string]string
			if err := json.Unmarshal([]byte(out[ResultPlanLine]), &line); err != nil {
				t.Fatalf("line %q: %v", out[ResultPlanLine], err)
			}
			for k, v := range tc.line {
				if got, ok := line[k]; !ok || got != v {
					t.Errorf("line %s = %q (present %v), want %q (line %v)", k, got, ok, v, line)
				}
			}
		})
	}
}
