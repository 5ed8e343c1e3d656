package migrate

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
)

// A plan with pending migrations records their statements' risks (result
// risks, one log line each) against the live catalog, exits 0 under the
// default warn policy, 1 under fail, and 0 under fail again once the file
// waives the rule on the statement.
func TestPlanRisks(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, email text); INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 1000) g`)
	f := files{
		"1_accounts_index.sql": mig("-- the index\nCREATE INDEX accounts_email ON accounts (email);\nALTER TABLE accounts ADD COLUMN note text;", "DROP INDEX accounts_email;"),
	}
	dir := writeDir(t, f)
	o := runStep(t, d.url(), dir, "--plan")
	if o.code != 0 {
		t.Fatalf("plan: exit %d\n%s", o.code, o.stderr)
	}
	var risks []sqlrisk.Risk
	if err := json.Unmarshal([]byte(o.result("risks")), &risks); err != nil {
		t.Fatalf("result risks %q: %v", o.result("risks"), err)
	}
	if len(risks) != 1 {
		t.Fatalf("want one risk (the CREATE INDEX; ADD COLUMN without default is safe), got %+v", risks)
	}
	r := risks[0]
	if r.Rule != "create-index" || r.Level != sqlrisk.LevelError || r.Lock != sqlrisk.ShareLock || r.Table != "accounts" ||
		r.File != "1_accounts_index.sql" || r.Line != 3 || r.SizeBytes <= 0 || r.Kind != "CREATE INDEX" || !r.Scans || r.Allowed {
		t.Errorf("risk: %+v", r)
	}
	if !strings.Contains(o.stderr, "risk create-index [error] 1_accounts_index.sql:3: CREATE INDEX takes ShareLock on accounts") {
		t.Errorf("no readable log line for the risk:\n%s", o.stderr)
	}
	if d.tableExists("goose_db_version") {
		t.Error("plan created the version table")
	}

	o = runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 1 || !strings.Contains(o.lastLine(), "1_accounts_index.sql:3 create-index") || !strings.Contains(o.lastLine(), "chartreuse:allow") {
		t.Fatalf("fail policy: exit %d, want 1 naming the statement and the waiver\n%s", o.code, o.stderr)
	}
	if o.result("risks") == "" {
		t.Error("a plan failed by its risks must still record them")
	}

	f["1_accounts_index.sql"] = mig("-- chartreuse:allow create-index (the application is stopped for this run)\nCREATE INDEX accounts_email ON accounts (email);\nALTER TABLE accounts ADD COLUMN note text;", "DROP INDEX accounts_email;")
	dir = writeDir(t, f)
	o = runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 0 {
		t.Fatalf("allowed risk: exit %d\n%s", o.code, o.stderr)
	}
	if !strings.Contains(o.result("risks"), `"allowed":true`) {
		t.Errorf("the waived risk is still reported, marked allowed: %s", o.result("risks"))
	}
}

func TestPlanRiskPolicyUsage(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"1_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=strict")
	if o.code != 2 || !strings.Contains(o.stderr, "--risk-policy") || !strings.Contains(o.stderr, "strict") || !strings.Contains(o.stderr, "is not valid") {
		t.Fatalf("exit %d, want 2 naming the flag\n%s", o.code, o.stderr)
	}
}

// The nothing-pending path never starts the SQL parser (its WebAssembly
// compile costs about 1.5 s and 250 MiB). The parser's state is per process,
// so each plan runs in a child process of this test binary
// (TestRiskParserChild); the pending case shows that the check can see a start.
func TestNothingPendingStartsNoParser(t *testing.T) {
	d := newDB(t)
	f := files{"1_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}
	mustRun(t, d.url(), writeDir(t, f))
	nothing := writeDir(t, f)
	f["2_b.sql"] = mig("CREATE INDEX a_id ON a (id);", "DROP INDEX a_id;")
	pending := writeDir(t, f)
	for _, c := range []struct {
		dir  string
		want string
	}{{nothing, "parser started: false"}, {pending, "parser started: true"}} {
		if out := planInChild(t, d.url(), c.dir); !strings.Contains(out, c.want) {
			t.Errorf("child plan on %s: want %q in:\n%s", c.dir, c.want, out)
		}
	}
}

// planInChild runs plan on dir in a child test process (the parser's state is
// per process) and returns the child's output: the step's stderr, then
// "pending: N, needs-downtime: B, parser started: B".
func planInChild(t *testing.T, url, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPlanChild$", "-test.short", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CHARTREUSE_PLAN_CHILD_URL="+url, "CHARTREUSE_PLAN_CHILD_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child plan on %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

// TestPlanChild runs only as planInChild's child.
func TestPlanChild(t *testing.T) {
	url, dir := os.Getenv("CHARTREUSE_PLAN_CHILD_URL"), os.Getenv("CHARTREUSE_PLAN_CHILD_DIR")
	if url == "" {
		t.Skip("child of planInChild only")
	}
	if sqlrisk.ParserStarted() {
		t.Fatal("parser started before the plan")
	}
	o := runStep(t, url, dir, "--plan")
	if o.code != 0 {
		t.Fatalf("plan: exit %d\n%s", o.code, o.stderr)
	}
	fmt.Print(o.stderr)
	fmt.Printf("pending: %s, needs-downtime: %s, parser started: %v\n", o.result("pending"), o.result("needs-downtime"), sqlrisk.ParserStarted())
}

// Where the step may not use the memory the parser's start takes, the plan
// does not start it (the kernel would kill the step): it reports one
// not-analysed risk saying what limit to give, which fails the fail policy.
func TestPlanRisksWithoutMemory(t *testing.T) {
	saved := memoryLimit
	memoryLimit = func() int64 { return 128 << 20 / 10 * 9 } // the plan pod's 128Mi
	t.Cleanup(func() { memoryLimit = saved })
	d := newDB(t)
	dir := writeDir(t, files{"1_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	o := runStep(t, d.url(), dir, "--plan")
	if o.code != 0 {
		t.Fatalf("plan: exit %d\n%s", o.code, o.stderr)
	}
	var risks []sqlrisk.Risk
	if err := json.Unmarshal([]byte(o.result("risks")), &risks); err != nil || len(risks) != 1 || risks[0].Rule != sqlrisk.NotAnalysed ||
		risks[0].File != "1_a.sql" || !strings.Contains(risks[0].Advice, "320Mi") {
		t.Fatalf("risks %s (%v), want one not-analysed naming the limit to give", o.result("risks"), err)
	}
	o = runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 1 || !strings.Contains(o.lastLine(), "not analysed") || !strings.Contains(o.lastLine(), "320Mi") {
		t.Fatalf("fail policy: exit %d, want 1 saying why\n%s", o.code, o.stderr)
	}
}

// An allow comment waives its own statement's rules only: on the statement's
// line or just above it, several rules at once; never a later statement.
func TestRiskAllowScope(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, a int, b text)`)
	dir := writeDir(t, files{"1_x.sql": mig(
		"ALTER TABLE t RENAME COLUMN b TO c; -- chartreuse:allow rename-column, drop-column\n"+
			"ALTER TABLE t DROP COLUMN a;\n"+
			"-- chartreuse:allow create-index\n"+
			"CREATE INDEX t_c ON t (c);", "")})
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	var risks []sqlrisk.Risk
	if err := json.Unmarshal([]byte(o.result("risks")), &risks); err != nil {
		t.Fatalf("risks %q: %v", o.result("risks"), err)
	}
	got := map[string]string{}
	for _, r := range risks {
		got[r.Rule] = fmt.Sprintf("line %d allowed %v", r.Line, r.Allowed)
	}
	want := map[string]string{"rename-column": "line 2 allowed true", "drop-column": "line 3 allowed false", "create-index": "line 5 allowed true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("risks %v, want %v", got, want)
	}
	if o.code != 1 || !strings.Contains(o.lastLine(), "1_x.sql:3 drop-column") || strings.Contains(o.lastLine(), "create-index") {
		t.Errorf("exit %d, want 1 naming only the drop-column\n%s", o.code, o.stderr)
	}
}

// The risks result stays within what a Tekton result can carry, however many
// risks there are; the ones left out are counted.
func TestRisksResultBounded(t *testing.T) {
	r := sqlrisk.RuleByName("create-index")
	var risks []sqlrisk.Risk
	for i := range 40 {
		risks = append(risks, sqlrisk.Risk{File: "00042_indexes.sql", Line: i + 1, Kind: r.Kind, Lock: r.Lock, Table: "public.orders",
			SizeBytes: 1 << 30, Size: sqlrisk.HumanSize(1 << 30), Scans: true, Rule: r.Name, Level: r.Level, What: r.What, Advice: r.Advice})
	}
	for _, n := range []int{0, 1, 3, 10, 40} {
		out := RisksResult(risks[:n])
		b, _ := json.Marshal(out)
		if len(b) > maxRisksResult {
			t.Errorf("%d risks: %d bytes", n, len(b))
		}
		kept, counted := len(out), 0
		if kept > 0 && out[kept-1].Rule == "more-in-log" {
			kept--
			if _, err := fmt.Sscanf(out[kept].What, "%d more", &counted); err != nil {
				t.Errorf("%d risks: %q", n, out[kept].What)
			}
		}
		if kept+counted != n || (n > 0 && n <= 3 && (kept != n || out[n-1].What == "")) {
			t.Errorf("%d risks: %d kept, %d counted", n, kept, counted)
		}
	}
}

// --risk-policy=off (the exit handler's recheck) analyses nothing and writes
// no risks result.
func TestRiskPolicyOff(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"1_a.sql": mig("CREATE TABLE a (id int); CREATE INDEX a_id ON a (id);", "DROP TABLE a;")})
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=off")
	if _, ok := o.summary.Results["risks"]; o.code != 0 || ok || o.result("pending") != "true" {
		t.Fatalf("exit %d, results %v: want 0, pending, no risks\n%s", o.code, o.summary.Results, o.stderr)
	}
}
