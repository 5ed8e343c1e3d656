package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlannedFilesPinned: migrate given plan's target-version and files-digest
// applies exactly the files plan judged, whatever the step's own copy of the
// migrations holds by then (the image tag pushed again between the two steps,
// and pulled by migrate's node).
func TestPlannedFilesPinned(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, subset(threeTables, "00001_a.sql", "00002_b.sql"))
	p := mustRun(t, d.url(), dir, "--plan")
	target, digest := p.result("target-version"), p.result("files-digest")
	if target != "2" || !hexSHA256.MatchString(digest) {
		t.Fatalf("plan: target-version %q, files-digest %q", target, digest)
	}
	planned := []string{"--planned-target", target, "--planned-files-digest", digest}

	// A file plan never saw: not applied, though pending.
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("00003_c.sql", threeTables["00003_c.sql"])
	// Applied in two runs (a retried step): the digest holds after the first.
	mustRun(t, d.url(), dir, append([]string{"--to", "1"}, planned...)...)
	o := mustRun(t, d.url(), dir, planned...)
	if got := d.versions("goose_db_version"); got != "0:true 1:true 2:true" {
		t.Fatalf("versions %s, want 0 to 2: migrate went beyond plan's target", got)
	}
	if o.result("target-version") != "2" || d.tableExists("c") {
		t.Fatalf("target-version %q, table c exists %v", o.result("target-version"), d.tableExists("c"))
	}

	// A file plan judged, changed since: nothing applied.
	d2 := newDB(t)
	before := d2.snapshot()
	write("00002_b.sql", mig("DROP TABLE IF EXISTS a; CREATE TABLE b (id int);", "DROP TABLE b;"))
	o = runStep(t, d2.url(), dir, planned...)
	if o.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", o.code, o.stderr)
	}
	for _, want := range []string{"the migrations up to version 2", "are not the ones plan judged", digest, "nothing was applied", "Pin the step image by digest"} {
		if !strings.Contains(o.lastLine(), want) {
			t.Errorf("error lacks %q: %s", want, o.lastLine())
		}
	}
	if after := d2.snapshot(); after != before {
		t.Errorf("the refused run changed the database:\nbefore %s\nafter  %s", before, after)
	}
}

// TestPlannedFlagsBadInput: the two flags go together, only migrating up, and
// the digest is a sha256; each misuse is a usage error before any connection.
func TestPlannedFlagsBadInput(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--planned-target", "2"}, "go together"},
		{[]string{"--planned-files-digest", sum}, "go together"},
		{[]string{"--planned-target", "2", "--planned-files-digest", "xyz"}, "is not a sha256"},
		{[]string{"--planned-target", "2", "--planned-files-digest", strings.ToUpper(sum)}, "is not a sha256"},
		{[]string{"--plan", "--planned-target", "2", "--planned-files-digest", sum}, "only apply to migrating up"},
		{[]string{"--down-to", "0", "--planned-target", "2", "--planned-files-digest", sum}, "only apply to migrating up"},
		{[]string{"--planned-target", "x", "--planned-files-digest", sum}, "not a migration version"},
	} {
		o := runStep(t, d.url(), dir, tc.args...)
		if o.code != 2 || !strings.Contains(o.stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 with %q\n%s", tc.args, o.code, tc.want, o.stderr)
		}
	}
	if d.tableExists("goose_db_version") {
		t.Error("a refused run created the version table")
	}
	// Empty values (a workflow whose plan wrote none) mean unset.
	mustRun(t, d.url(), dir, "--planned-target=", "--planned-files-digest=")
	if got := d.versions("goose_db_version"); got != "0:true 1:true 2:true 3:true" {
		t.Fatalf("versions %s, want 0 to 3", got)
	}
}
