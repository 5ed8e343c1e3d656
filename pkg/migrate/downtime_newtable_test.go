package migrate

import (
	"strings"
	"testing"
)

// A table and its index created by the same pending set: the running version
// does not use the table, so nothing needs stopping. Before, plan said
// needs-downtime true for the index ("CREATE INDEX without CONCURRENTLY").
func TestNeedsDowntimeTableAndItsIndex(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, email text)`)
	f := files{
		"1_notes.sql": mig("CREATE TABLE notes (id bigint PRIMARY KEY, account_id int REFERENCES accounts (id), body text);\n"+
			"CREATE INDEX notes_account ON notes (account_id);", "DROP TABLE notes;"),
		"2_tags.sql": mig("CREATE TABLE tags (note_id bigint, tag text NOT NULL);\nCREATE UNIQUE INDEX tags_note_tag ON tags (note_id, tag);\n"+
			"ALTER TABLE tags ADD CONSTRAINT tags_note FOREIGN KEY (note_id) REFERENCES notes (id) NOT VALID;", "DROP TABLE tags;"),
	}
	o := runStep(t, d.url(), writeDir(t, f), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "false" || !strings.Contains(o.stderr, "every pending statement (5) is additive") {
		t.Fatalf("exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}
	mustRun(t, d.url(), writeDir(t, f))
}
