package databases

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// runDefaults are the workflow parameters' defaults with a database-secret set.
var runDefaults = Defaults{Secret: "app-db", Key: "url", Dir: "/migrations", Table: "goose_db_version"}

func TestParseEmptyIsSingleDatabase(t *testing.T) {
	for _, raw := range []string{"", "  ", "\n\t"} {
		entries, err := Parse(raw, runDefaults)
		if err != nil || entries != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil (a single-database run)", raw, entries, err)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	d := runDefaults
	d.GitURL, d.GitRevision, d.Role, d.To = "https://git.example/app.git", "v2.0.0", "app_owner", "20240301"
	d.Dir = "db/migrations"
	entries, err := Parse(`[
		{"secret": "orders-db"},
		{"secret": "billing-db", "table": "billing.goose_db_version", "role": ""},
		{"secret": "tenants", "key": "tenant-a"},
		{"secret": "tenants", "key": "tenant-b", "name": "b"},
		{"secret": "reports-db", "migrations-image": "registry.example/reports-migrations:1", "dir": "/m"},
		{"secret": "legacy-db", "git-revision": "v1.9.0"},
		{}
	]`, d)
	if err != nil {
		t.Fatal(err)
	}
	git := func(e Entry) Entry {
		e.GitURL, e.GitRevision = d.GitURL, d.GitRevision
		return e
	}
	want := []Entry{
		git(Entry{Name: "orders-db", Secret: "orders-db", Key: "url", Dir: "db/migrations", Role: "app_owner", Table: "goose_db_version", To: "20240301"}),
		// an explicit "" is a value, not a missing key
		git(Entry{Name: "billing-db", Secret: "billing-db", Key: "url", Dir: "db/migrations", Role: "", Table: "billing.goose_db_version", To: "20240301"}),
		// two entries share a Secret: the default name adds the key
		git(Entry{Name: "tenants/tenant-a", Secret: "tenants", Key: "tenant-a", Dir: "db/migrations", Role: "app_owner", Table: "goose_db_version", To: "20240301"}),
		git(Entry{Name: "b", Secret: "tenants", Key: "tenant-b", Dir: "db/migrations", Role: "app_owner", Table: "goose_db_version", To: "20240301"}),
		// an image of its own: none of the run's source parameters
		{Name: "reports-db", Secret: "reports-db", Key: "url", Dir: "/m", MigrationsImage: "registry.example/reports-migrations:1", Role: "app_owner", Table: "goose_db_version", To: "20240301"},
		// the run's repository at another revision
		{Name: "legacy-db", Secret: "legacy-db", Key: "url", Dir: "db/migrations", GitURL: d.GitURL, GitRevision: "v1.9.0", Role: "app_owner", Table: "goose_db_version", To: "20240301"},
		// nothing given: the single-database parameters
		git(Entry{Name: "app-db", Secret: "app-db", Key: "url", Dir: "db/migrations", Role: "app_owner", Table: "goose_db_version", To: "20240301"}),
	}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", entries, want)
	}
	if got := Secrets(entries); !reflect.DeepEqual(got, []string{"app-db", "billing-db", "legacy-db", "orders-db", "reports-db", "tenants"}) {
		t.Errorf("Secrets = %v", got)
	}
}

func TestParseOwnRepositoryTakesNoRunSource(t *testing.T) {
	d := runDefaults
	d.MigrationsImage = "registry.example/app-migrations:2"
	entries, err := Parse(`[{"secret": "a", "git-url": "https://git.example/a.git", "git-revision": "v1", "dir": "db"}, {"secret": "b"}]`, d)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[0]; e.MigrationsImage != "" || e.GitURL != "https://git.example/a.git" || e.GitRevision != "v1" {
		t.Errorf("an entry with its own git-url took the run's image: %+v", e)
	}
	if e := entries[1]; e.MigrationsImage != d.MigrationsImage || e.GitURL != "" {
		t.Errorf("an entry without a source did not take the run's: %+v", e)
	}
}

// Every refusal is a usage error (exit 2) whose one line names the entry and what
// is wrong.
func TestParseRefuses(t *testing.T) {
	noSecret := runDefaults
	noSecret.Secret = ""
	for _, tc := range []struct {
		name string
		raw  string
		d    Defaults
		want []string
	}{
		{"empty list", `[]`, runDefaults, []string{"the list is empty", "leave databases empty"}},
		{"empty list with spaces", " [ ] ", runDefaults, []string{"the list is empty"}},
		{"not JSON", `[{"secret": "a"`, runDefaults, []string{"not valid JSON"}},
		{"bare words", `orders-db,billing-db`, runDefaults, []string{"not valid JSON", "give a JSON list of objects"}},
		{"an object", `{"secret": "a"}`, runDefaults, []string{"not a JSON list but an object"}},
		{"null", `null`, runDefaults, []string{"not a JSON list but null"}},
		{"something after", `[{"secret": "a"}] [{"secret": "b"}]`, runDefaults, []string{"something follows the list"}},
		{"a string entry", `["orders-db"]`, runDefaults, []string{`entry 1: not an object but a string`}},
		{"unknown key", `[{"secret": "a"}, {"secret": "b", "tabel": "x"}]`, runDefaults, []string{`entry 2: unknown key "tabel" (the keys are name, secret, key,`}},
		{"repeated key", `[{"secret": "a", "secret": "b"}]`, runDefaults, []string{`entry 1: key "secret" given twice`}},
		{"number", `[{"secret": "a", "to": 20240301}]`, runDefaults, []string{`entry 1: to is a number, not a string`}},
		{"null value", `[{"secret": null}]`, runDefaults, []string{`entry 1: secret is null, not a string`}},
		{"no secret", `[{"key": "url"}]`, noSecret, []string{`entry 1: no secret, and database-secret is empty`}},
		{"bad secret name", `[{"secret": "Orders_DB"}]`, runDefaults, []string{`entry 1 (Orders_DB): secret "Orders_DB" is not a valid Secret name`}},
		{"bad key", `[{"secret": "a", "key": "a b"}]`, runDefaults, []string{`entry 1 (a): key "a b" is not a valid Secret key`}},
		{"empty key", `[{"secret": "a", "key": ""}]`, runDefaults, []string{`entry 1 (a): key is empty`}},
		{"bad name", `[{"secret": "a", "name": "a b"}]`, runDefaults, []string{`entry 1 (a b): name "a b" is not valid`}},
		{"empty table", `[{"secret": "a", "table": ""}]`, runDefaults, []string{`entry 1 (a): table is empty`}},
		{"table folded", `[{"secret": "a", "table": "Billing.Versions"}]`, runDefaults, []string{`entry 1 (a): table "Billing.Versions" is not valid: use a lowercase name or schema.name`}},
		{"table of three parts", `[{"secret": "a", "table": "a.b.c"}]`, runDefaults, []string{`entry 1 (a): table "a.b.c" is not valid`}},
		{"role none", `[{"secret": "a", "role": " NONE"}]`, runDefaults, []string{`entry 1 (a): role " NONE" is not a role`}},
		{"two sources", `[{"secret": "a", "git-url": "https://git.example/a.git", "migrations-image": "r.example/m:1"}]`, runDefaults, []string{`entry 1 (a): sets both git-url and migrations-image`}},
		{"token in git-url", `[{"secret": "a", "git-url": "https://user:GhpTokenSecret123@github.com/x/y.git", "git-revision": "v1"}]`, runDefaults,
			[]string{`entry 1 (a): git-url: `, `credentials in the URL are not allowed`}},
		{"token in git-url's query", `[{"secret": "a", "git-url": "https://github.com/x/y.git?access_token=GhpTokenSecret123"}]`, runDefaults,
			[]string{`entry 1 (a): git-url: `, `no query or fragment`}},
		{"to not a version", `[{"secret": "a", "to": "abc"}]`, runDefaults, []string{`entry 1 (a): to "abc" is not a version`}},
		{"to signed", `[{"secret": "a", "to": "+1"}]`, runDefaults, []string{`entry 1 (a): to "+1" is not a version`}},
		{"to zero", `[{"secret": "a", "to": "0"}]`, runDefaults, []string{`entry 1 (a): to "0" is not a version`}},
		{"revision without repository", `[{"secret": "a", "git-revision": "v1"}]`, runDefaults, []string{`entry 1 (a): git-revision without git-url`}},
		{"newline", `[{"secret": "a", "dir": "db\nmigrations"}]`, runDefaults, []string{`entry 1 (a): dir holds a control character`}},
		{"same database", `[{"secret": "a"}, {"secret": "b"}, {"secret": "a", "key": "url", "name": "again"}]`, runDefaults,
			[]string{`entry 1 (a/url) and entry 3 (again) are the same database (Secret a, key url); name it once`}},
		{"same database by default", `[{}, {"secret": "app-db"}]`, runDefaults, []string{`entry 1 (app-db/url) and entry 2 (app-db/url) are the same database`}},
		{"same name", `[{"secret": "a", "name": "x"}, {"secret": "b", "name": "x"}]`, runDefaults, []string{`entry 1 and entry 2 (x) have the same name`}},
		{"name equal to a default name", `[{"secret": "a"}, {"secret": "b", "name": "a"}]`, runDefaults, []string{`entry 1 and entry 2 (a) have the same name`}},
		// every bad entry at once, not only the first
		{"several", `[{"secret": "a", "tabel": "x"}, {"secret": "b"}, {"secret": 3}]`, runDefaults,
			[]string{`entry 1: unknown key "tabel"`, `entry 3: secret is a number, not a string`}},
		{"several after defaults", `[{"secret": "a", "key": ""}, {"secret": "B"}]`, runDefaults,
			[]string{`entry 1 (a): key is empty`, `entry 2 (B): secret "B" is not a valid Secret name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := Parse(tc.raw, tc.d)
			if err == nil {
				t.Fatalf("accepted: %+v", entries)
			}
			if code := failure.Code(err); code != failure.CodeUsage {
				t.Errorf("exit %d, want %d (usage)", code, failure.CodeUsage)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "databases: ") {
				t.Errorf("not one line starting with databases: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the message does not say %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "GhpTokenSecret123") {
				t.Errorf("the message quotes the token: %s", msg)
			}
		})
	}
}

// A value in the wrong place may be a URL pasted by mistake: no message quotes the
// input, only where it broke and what kind of value was found.
func TestParseNeverQuotesTheInput(t *testing.T) {
	const secret = "hunter2-s3cret"
	for _, raw := range []string{
		`postgres://app:` + secret + `@db/app`,
		`[{"secret": "a", "key": postgres://app:` + secret + `@db/app}]`,
		`[{"secret": "a", "url": "postgres://app:` + secret + `@db/app"}]`,
		`[{"secret": "a", "to": ["postgres://app:` + secret + `@db/app"]}]`,
		`["postgres://app:` + secret + `@db/app"]`,
		`{"postgres://app:` + secret + `@db/app": 1}`,
		`[{"secret": "a"}] postgres://app:` + secret + `@db/app`,
	} {
		_, err := Parse(raw, runDefaults)
		if err == nil {
			t.Fatalf("accepted %q", raw)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the message quotes the input: %s", err)
		}
	}
}

func TestParseBounds(t *testing.T) {
	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`{"secret": "db-%d"}`, i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	entries, err := Parse(many(MaxEntries), runDefaults)
	if err != nil || len(entries) != MaxEntries {
		t.Fatalf("%d entries: %d, %v", MaxEntries, len(entries), err)
	}
	_, err = Parse(many(MaxEntries+1), runDefaults)
	if err == nil || failure.Code(err) != failure.CodeUsage || !strings.Contains(err.Error(), "more than the 1000 one run takes") {
		t.Errorf("%d entries: %v", MaxEntries+1, err)
	}
	// 30 bad entries: the message names 20 and counts the rest
	bad := make([]string, 30)
	for i := range bad {
		bad[i] = fmt.Sprintf(`{"secret": "X%d"}`, i)
	}
	_, err = Parse("["+strings.Join(bad, ",")+"]", runDefaults)
	if err == nil || !strings.Contains(err.Error(), "entry 20 (X19)") || strings.Contains(err.Error(), "entry 21 (X20)") || !strings.HasSuffix(err.Error(), "; and 10 more") {
		t.Errorf("30 bad entries: %v", err)
	}
}
