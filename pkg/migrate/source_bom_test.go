package migrate

import (
	"strings"
	"testing"
)

// A file saved with a UTF-8 byte order mark (some Windows editors) has its
// '-- +goose Up' on the first line, behind the mark, where goose does not see
// it: the refusal says so, instead of saying the annotation is missing.
func TestMigrationWithByteOrderMark(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE keep (id int)")
	dir := writeDir(t, files{
		"00001_a.sql": "\ufeff" + mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": strings.ReplaceAll(mig("CREATE TABLE b (id int);", "DROP TABLE b;"), "\n", "\r\n"),
	})
	before := d.snapshot()
	o := runStep(t, d.url(), dir)
	if o.code != 1 || !strings.Contains(o.lastLine(), "00001_a.sql starts with a UTF-8 byte order mark (EF BB BF), so goose does not see its '-- +goose Up' annotation: save it without one") ||
		strings.Contains(o.lastLine(), "00002_b.sql") {
		t.Fatalf("exit %d, want 1 naming the mark of 00001_a.sql only: %s", o.code, o.lastLine())
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
}
