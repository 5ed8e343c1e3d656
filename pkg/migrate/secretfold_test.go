package migrate

import (
	"net/url"
	"strings"
	"testing"
)

// PostgreSQL folds an unquoted identifier to lower case (and cuts it to 63
// bytes) before quoting it back in an error. A secret that reaches such a
// position (an ENVSUB value written without quotes, or the database password
// itself in a migration) was printed in that form (found by an attack, session
// 28): the redactor matched only the exact value.
func TestCaseFoldedSecretIsMasked(t *testing.T) {
	t.Run("envsub", func(t *testing.T) {
		t.Setenv("CHARTREUSE_TEST_SECRET", "SkLiveAbCdEfGh12345")
		d := newDB(t)
		dir := writeDir(t, files{"00001_a.sql": "-- +goose ENVSUB ON\n" + mig(
			"CREATE TABLE t (v text);\nINSERT INTO t VALUES (${CHARTREUSE_TEST_SECRET});", "DROP TABLE t;")})
		o := runStep(t, d.url(), dir)
		if o.code != 1 {
			t.Fatalf("exit %d, want 1", o.code)
		}
		text := o.stdout + o.stderr
		for _, part := range []string{"skliveabcdefgh12345", "sklive", "abcdefgh"} {
			if strings.Contains(strings.ToLower(text), part) {
				t.Errorf("a case-folded piece of the ENVSUB value (%q) is printed: %s", part, o.lastLine())
				break
			}
		}
	})
	t.Run("url-password", func(t *testing.T) {
		pw := "Zq9Kx7Wm3Vb5Np1Rt8Ys4Lc6Hd2Gf0JjQwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUiOpAsDfGhJk"
		role := loginRole(t, pw)
		d := newDB(t)
		d.exec("GRANT ALL ON SCHEMA public TO " + role)
		u, _ := url.Parse(d.url())
		u.User = url.UserPassword(role, pw)
		dir := writeDir(t, files{"00001_a.sql": mig("SELECT "+pw+";", "SELECT 1;")})
		o := runStep(t, u.String(), dir)
		if o.code != 1 {
			t.Fatalf("exit %d, want 1: %s", o.code, o.lastLine())
		}
		if strings.Contains(strings.ToLower(o.stdout+o.stderr), strings.ToLower(pw[:20])) {
			t.Errorf("the database password is printed lower-cased (and cut at 63 bytes): %s", o.lastLine())
		}
	})
}

// The same folded value of a NO TRANSACTION migration was stored in the dirty
// record (goose_db_version_dirty) and quoted again by every later run.
func TestCaseFoldedSecretIsMaskedInTheDirtyRecord(t *testing.T) {
	t.Setenv("CHARTREUSE_TEST_SECRET", "TokSecretValue42")
	d := newDB(t)
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE tok (v text);", "DROP TABLE tok;"),
		"00002_b.sql": "-- +goose NO TRANSACTION\n-- +goose ENVSUB ON\n" + mig(
			"INSERT INTO tok VALUES ('1');\nINSERT INTO tok VALUES (${CHARTREUSE_TEST_SECRET});", "DELETE FROM tok;"),
	})
	if o := runStep(t, d.url(), dir); o.code != 1 {
		t.Fatalf("exit %d, want 1", o.code)
	}
	if stored := d.queryString("SELECT string_agg(t::text, ' ') FROM goose_db_version_dirty t"); strings.Contains(stored, "toksecretvalue42") {
		t.Errorf("the dirty record stores the folded secret: %s", stored)
	}
	o := runStep(t, d.url(), dir, "--plan")
	if strings.Contains(o.stderr, "toksecretvalue42") {
		t.Errorf("a later run prints it again: %s", o.lastLine())
	}
}

// PostgreSQL's JSON parser quotes its input up to the point of error in its
// CONTEXT ("JSON data, line 1: {..."), which migrate prints: an ENVSUB value
// holding a backslash (an invalid JSON escape) had its beginning printed.
func TestSecretsBeginningInAJSONContextIsMasked(t *testing.T) {
	t.Setenv("CHARTREUSE_TEST_SECRET", `Pr3fixPartOfKey\qSuffixPartOfKey`)
	d := newDB(t)
	dir := writeDir(t, files{"00001_a.sql": "-- +goose ENVSUB ON\n" + mig(
		"CREATE TABLE cfg (v jsonb);\nINSERT INTO cfg VALUES ('{\"api_key\": \"${CHARTREUSE_TEST_SECRET}\"}');", "DROP TABLE cfg;")})
	o := runStep(t, d.url(), dir)
	if o.code != 1 {
		t.Fatalf("exit %d, want 1", o.code)
	}
	if strings.Contains(o.stdout+o.stderr, "Pr3fixPart") {
		t.Errorf("a prefix of the ENVSUB value is printed: %s", o.lastLine())
	}
}
