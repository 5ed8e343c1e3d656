package migrate

import (
	"regexp"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
)

// The patterns dbconn.ValidVersionTable and dbconn.PlainIdent replace.
var (
	tableRE     = regexp.MustCompile(`^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,56}$`) // the name leaves room for "_dirty"
	simpleIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

var identSeeds = []string{
	"", ".", "a", "_", "1", "a1", "1a", "goose_db_version", "public.goose_db_version", "a.b.c", "a.", ".a",
	"A", "aB", "a-b", "a b", "é", "a\n", "\na", "a.1b", "a._", strings.Repeat("a", 63), strings.Repeat("a", 64),
	strings.Repeat("a", 63) + "." + strings.Repeat("b", 63), strings.Repeat("a", 63) + "." + strings.Repeat("b", 64),
	"a\x00", "a..b", "\"a\"",
}

func TestIdentifiersMatchTheirPatterns(t *testing.T) {
	for _, s := range identSeeds {
		checkIdent(t, s)
	}
}

func FuzzIdentifiersMatchTheirPatterns(f *testing.F) {
	for _, s := range identSeeds {
		f.Add(s)
	}
	f.Fuzz(checkIdent)
}

func checkIdent(t *testing.T, s string) {
	if got, want := dbconn.ValidVersionTable(s), tableRE.MatchString(s); got != want {
		t.Fatalf("dbconn.ValidVersionTable(%q) = %v, the pattern says %v", s, got, want)
	}
	if got, want := dbconn.PlainIdent(s), simpleIdent.MatchString(s); got != want {
		t.Fatalf("dbconn.PlainIdent(%q) = %v, the pattern says %v", s, got, want)
	}
}
