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

// Constant rows into a table the same run creates (a lookup table's seed) are
// read by no running version; rows into a table in use are. Before, any
// INSERT made needs-downtime true.
func TestNeedsDowntimeSeedRows(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, status int)`)
	seed := files{"1_statuses.sql": mig("CREATE TABLE statuses (id int PRIMARY KEY, name text NOT NULL);\n"+
		"INSERT INTO statuses VALUES (1, 'new'), (2, 'closed');", "DROP TABLE statuses;")}
	o := runStep(t, d.url(), writeDir(t, seed), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "false" {
		t.Fatalf("seed rows: exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}
	used := files{"1_statuses.sql": mig("CREATE TABLE statuses (id int PRIMARY KEY, name text NOT NULL);\n"+
		"INSERT INTO statuses VALUES (1, 'new');\nINSERT INTO accounts VALUES (1, 1);", "")}
	o = runStep(t, d.url(), writeDir(t, used), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "true" || !strings.Contains(o.stderr, "1_statuses.sql:4 is not additive: INSERT") {
		t.Fatalf("rows into accounts: exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}
	mustRun(t, d.url(), writeDir(t, seed))
}
