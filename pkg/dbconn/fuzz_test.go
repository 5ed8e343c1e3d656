package dbconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// The fuzzed passwords are spelled with letters that none of the fixed parts
// (user, host, database, the messages of this package, net/url and pgx) contain,
// plus the characters that break URLs. Any of those letters in a message after
// redaction is then a piece of the password, however the parser cut it up.
const (
	pwLetters = "QZJKVWY"
	pwSpecial = "/@:?#% =&'\\\";,+![]$\t"
)

// password spells a password from fuzz bytes: mostly distinctive letters, some
// URL-breaking characters. It always holds at least one letter.
func password(b []byte) string {
	var s strings.Builder
	s.WriteByte(pwLetters[0])
	for _, c := range b {
		if c%3 == 0 {
			s.WriteByte(pwSpecial[int(c/3)%len(pwSpecial)])
		} else {
			s.WriteByte(pwLetters[int(c)%len(pwLetters)])
		}
	}
	return s.String()
}

// leaked returns the password letters found in s.
func leaked(s string) bool { return strings.ContainsAny(s, pwLetters) }

// FuzzConfigNeverLeaksPassword parses database URLs and keyword/value DSNs whose
// password holds any mix of special characters, unescaped as an operator would
// type them. Properties: no panic; a failure is permanent (exit 1) and its message,
// redacted as every step prints it, holds no piece of the password; a success
// registers the password so that the URL itself, redacted, shows none of it.
func FuzzConfigNeverLeaksPassword(f *testing.F) {
	for _, seed := range [][]byte{
		{1, 2}, {1, 0, 2}, // "/" inside
		{1, 3, 2}, // "@" inside
		{1, 6, 2, 4, 5},
		{9, 12, 1},
		{15, 1, 1, 1},
		{18, 18, 1},
		{21, 1}, {24, 1}, {27, 1}, {30, 2}, {33, 4}, {36, 5}, {39, 7}, {42, 8},
		[]byte("hunter2/secret"), // a long run of letters before a '/': cut into the "port"
	} {
		for form := range uint8(4) {
			f.Add(seed, form)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, form uint8) {
		pw := password(b)
		var raw string
		switch form % 4 {
		case 0: // unescaped URL, as typed
			raw = "postgres://app:" + pw + "@db.internal:5432/app?sslmode=disable"
		case 1: // URL with the password last-but-one and a query
			raw = "postgresql://app:" + pw + "@db.internal/app?application_name=migr"
		case 2: // keyword/value, unquoted
			raw = "host=db.internal user=app password=" + pw + " dbname=app"
		case 3: // keyword/value, quoted the libpq way
			raw = "host=db.internal user=app password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "' dbname=app"
		}
		red := redact.New()
		cfg, err := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(red)
		if err != nil {
			if failure.Code(err) != failure.CodePermanent {
				t.Fatalf("Config(%q): exit code %d, want 1: %v", raw, failure.Code(err), err)
			}
			if msg := red.String(err.Error()); leaked(msg) {
				t.Fatalf("Config(%q) failed with a message that holds part of the password %q:\n%s", raw, pw, msg)
			}
			return
		}
		// An unquoted keyword/value password with a backslash escape (libpq reads
		// "a\\,b" as "a,b") or a blank (the rest becomes another keyword) is not one
		// password=value token the redactor's pattern can see; such a DSN is never
		// printed, so only what is printed is checked then.
		if got := red.String(raw); leaked(got) && !(form%4 == 2 && strings.ContainsAny(pw, "\\ \t")) {
			t.Fatalf("Config(%q) succeeded, but the redacted URL still holds part of the password %q: %s", raw, pw, got)
		}
		if d := Describe(cfg); leaked(red.String(d)) {
			t.Fatalf("Describe(%q) = %q holds part of the password %q", raw, d, pw)
		}
	})
}

// FuzzURLFile: a Secret file may end in "\n" or "\r\n" or carry blanks around the
// URL. Reading the URL from a file gives exactly what passing it directly gives:
// the same outcome, the same target and password, and no piece of the password in
// any error.
func FuzzURLFile(f *testing.F) {
	f.Add([]byte{1, 2}, uint8(0))
	f.Add([]byte{1, 3, 2}, uint8(1))
	f.Add([]byte{4, 5}, uint8(0xff))
	f.Fuzz(func(t *testing.T, b []byte, pad uint8) {
		pw := password(b)
		raw := "postgres://app:" + pw + "@db.internal:5432/app"
		blanks := []string{"", "\n", "\r\n", " ", "\t\n\n"}
		content := blanks[int(pad)%len(blanks)] + raw + blanks[int(pad/8)%len(blanks)]
		path := filepath.Join(t.TempDir(), "url")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		redFile, redDirect := redact.New(), redact.New()
		fromFile, errFile := (&Options{URLFile: path, ConnectTimeout: time.Second}).Config(redFile)
		direct, errDirect := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(redDirect)
		if (errFile == nil) != (errDirect == nil) {
			t.Fatalf("file %q: error %v; the same URL directly: error %v", content, errFile, errDirect)
		}
		if errFile != nil {
			if failure.Code(errFile) != failure.CodePermanent {
				t.Fatalf("exit code %d, want 1: %v", failure.Code(errFile), errFile)
			}
			if msg := redFile.String(errFile.Error()); leaked(msg) {
				t.Fatalf("error for file content %q holds part of the password: %s", content, msg)
			}
			return
		}
		if Describe(fromFile) != Describe(direct) || fromFile.Password != direct.Password {
			t.Fatalf("file %q gives %s, the URL directly gives %s", content, Describe(fromFile), Describe(direct))
		}
	})
}

// TestUnescapedPasswordPiecesAreNeverPrinted names the leaks the fuzzer found:
// with an unescaped '/', '%' or '@' in the password, the URL parser cuts the
// password up and a piece of it reaches a message that every step prints (the
// parse error quotes it as a "port" or an "escape"; pgx takes the text after the
// first '@' as the host, which the logs name as the target; with "@/" the host
// is empty and the rest of the password becomes the database name). The redactor
// registers the whole password, not the pieces.
func TestUnescapedPasswordPiecesAreNeverPrinted(t *testing.T) {
	for _, pw := range []string{"QZJK/VW", "Q%ZZJ", "QZ@JK", "QZ@/JK"} {
		t.Run(pw, func(t *testing.T) {
			raw := "postgres://app:" + pw + "@db.internal:5432/app"
			red := redact.New()
			cfg, err := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(red)
			printed := ""
			if err != nil {
				printed = red.String(err.Error())
			} else {
				printed = red.String(Describe(cfg))
			}
			if leaked(printed) {
				t.Errorf("password %q: printed %q", pw, printed)
			}
		})
	}
}

// TestURLWhoseUserinfoIsNotTheAuthorityIsRefused: an unescaped '/' in the
// password (leading, or after digits that pass for a port) ends the authority
// before the '@', so the parser took the user name for the host and the rest of
// the password for the database name, which every retry printed (exit 75). Such
// a URL, and a keyword/value string whose unquoted password spills into further
// keywords, is refused at once (exit 1) with a message that quotes nothing of it.
func TestURLWhoseUserinfoIsNotTheAuthorityIsRefused(t *testing.T) {
	const hostport = "KVWY.example:5432"
	for _, raw := range []string{
		"postgres://QZJ:/Tr0ubQZJK@" + hostport + "/YWVK",
		"postgres://QZJ:5432/QZJKVW@" + hostport + "/YWVK",
		"postgresql://QZJ:ab/cd/QZJ@" + hostport + "/YWVK?sslmode=disable",
		"postgres://QZJ:QZ?J/K@" + hostport + "/YWVK",
		"postgres://QZJ:QZJK@" + hostport + "/YWVK?application_name=Q@Z",
		"postgres://QZJ@KVWY@" + hostport + "/YWVK",
		"host=KVWY.example user=QZJ password=pass host=QZJKVW dbname=YWVK",
		"host=KVWY.example user=QZJ password=pass QZJK=VWY dbname=YWVK",
		"host=KVWY.example dbname=YWVK user=QZJ password=pass dbname=QZJK",
		"host=KVWY.example user=QZJ password=pass search_path=YWVK",
	} {
		t.Run(raw, func(t *testing.T) {
			red := redact.New()
			_, err := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(red)
			if failure.Code(err) != failure.CodePermanent {
				t.Fatalf("exit code %d, want 1: %v", failure.Code(err), err)
			}
			msg := err.Error()
			if leaked(msg) || strings.Contains(msg, "\n") {
				t.Fatalf("the message quotes part of the connection string or is not one line: %s", msg)
			}
			want := "percent-encode"
			if !strings.Contains(raw, "://") {
				want = "single quotes"
			}
			if !strings.Contains(msg, want) {
				t.Fatalf("the message does not say what to do (%q): %s", want, msg)
			}
		})
	}
}

// TestWellFormedConnectionStringsStillParse: what the shape check refuses must
// not include what libpq accepts.
func TestWellFormedConnectionStringsStillParse(t *testing.T) {
	for _, raw := range []string{
		"postgres://app:p%40ss%2Fw%3Ard@db:5432/app?sslmode=disable",
		"postgres://app:pa?ss#wo&rd=x@db/app",
		"postgresql://app@db1:5432,db2:5433/app?target_session_attrs=read-write&search_path=s",
		"postgres://db/app?application_name=a%40b",
		"postgres:///app?host=/run/postgresql",
		"host=db port=5432 user=app password='it\\'s a \\\\ pw' dbname=app sslmode=disable options='-c search_path=s' application_name=x",
		"host=db user=app password=unquoted\\ blank dbname=app",
		"  host = db   dbname=app  ",
		"database=app host=db",
	} {
		t.Run(raw, func(t *testing.T) {
			if _, err := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(redact.New()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInvalidSettingIsNamed: a connection string that is well-formed but holds a
// value pgx refuses (a misspelt sslmode, a port out of range, a timeout that is
// no number) is refused with a message naming that setting, not one that sends
// the operator to percent-encode a password that was never the problem. The
// value itself is not quoted, and the password never.
func TestInvalidSettingIsNamed(t *testing.T) {
	for _, tt := range []struct{ raw, setting string }{
		{"postgres://app:QZJK@db.internal/app?sslmode=requir", "sslmode"},
		{"postgres://app:QZJK@db.internal/app?sslmode=disable&connect_timeout=soon", "connect_timeout"},
		{"postgres://app:QZJK@db.internal:99999/app", "port"},
		{"postgres://app:QZJK@db.internal/app?target_session_attrs=primary-ish", "target_session_attrs"},
		{"host=db.internal port=54x32 user=app password=QZJK dbname=app", "port"},
		{"host=db.internal user=app password='QZ JK' dbname=app sslmode=verify", "sslmode"},
		{"host=db1,db2 port=1,2,3 user=app password=QZJK", "host"},
		{"host=db.internal user=app password=QZJK channel_binding=always", "channel_binding"},
	} {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := (&Options{URL: tt.raw, ConnectTimeout: time.Second}).Config(redact.New())
			if failure.Code(err) != failure.CodePermanent {
				t.Fatalf("exit code %d, want 1: %v", failure.Code(err), err)
			}
			msg := err.Error()
			if leaked(msg) || strings.Contains(msg, "\n") {
				t.Fatalf("the message quotes the password or is not one line: %s", msg)
			}
			if !strings.Contains(msg, tt.setting) || strings.Contains(msg, "percent-encode") || strings.Contains(msg, "single quotes") {
				t.Fatalf("the message does not name %s, or blames the quoting: %s", tt.setting, msg)
			}
		})
	}
}

// TestInvalidEnvironmentSettingIsNamed: the same for a libpq variable.
func TestInvalidEnvironmentSettingIsNamed(t *testing.T) {
	t.Setenv("PGSSLMODE", "requir")
	_, err := (&Options{URL: "postgres://app:QZJK@db.internal/app", ConnectTimeout: time.Second}).Config(redact.New())
	if failure.Code(err) != failure.CodePermanent || !strings.Contains(err.Error(), "PGSSLMODE") {
		t.Fatalf("exit code %d, want 1 naming PGSSLMODE: %v", failure.Code(err), err)
	}
}

// TestMalformedURLIsRefused: strings that libpq and pgx do not read as a URL
// although one is in them.
//   - A Secret holding more than the URL (an environment line
//     DATABASE_URL=postgres://..., a JDBC URL) was parsed as one keyword/value
//     pair whose unknown keyword pgx passes to the server as a setting: the step
//     connected to the default host (a Unix socket, PGHOST) as the OS user,
//     sending the whole URL, password included, as that setting's value, and
//     waited for it as for a server not up yet (exit 75).
//   - A scheme in another case than postgres:// or postgresql:// was read as
//     keyword/value: POSTGRES://... refused as "a URL that does not start the
//     string", PostgreSQL://...?sslmode=... as a single pair whose keyword is
//     the URL with its password.
//
// Each is refused at once (exit 1) in one line that says what to do and quotes
// nothing of the string.
func TestMalformedURLIsRefused(t *testing.T) {
	const prefix, scheme = "only the URL", "lower case"
	for _, tc := range []struct{ raw, says string }{
		{"DATABASE_URL=postgres://app:QZJK@db.internal/app", prefix},
		{"CHARTREUSE_DATABASE_URL=postgresql://app:QZJK@db.internal:5432/app?sslmode=require", prefix},
		{"jdbc:postgresql://db.internal/app?user=app&password=QZJK", prefix},
		{"export DATABASE_URL=postgres://app:QZJK@db.internal/app", prefix},
		{"POSTGRES://app:QZJK@db.internal/app", scheme},
		{"PostgreSQL://app:QZJK@db.internal:5432/app?sslmode=require", scheme},
		{"Postgres://db.internal/app?user=app&password=QZJK", scheme},
		{"POSTGRESQL://app:QZJK@db1.internal,db2.internal/app", scheme},
		{"postgreS://app:QZJK@db.internal/app", scheme},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			_, err := (&Options{URL: tc.raw, ConnectTimeout: time.Second}).Config(redact.New())
			if failure.Code(err) != failure.CodePermanent {
				t.Fatalf("exit code %d, want 1: %v", failure.Code(err), err)
			}
			if msg := err.Error(); leaked(msg) || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.says) || !strings.Contains(msg, "--database-url") {
				t.Fatalf("the message quotes the string, is not one line, or does not say %q: %s", tc.says, msg)
			}
		})
	}
	// Valid: lower case, and keyword/value strings naming a URL as a known
	// keyword's value.
	for _, raw := range []string{
		"postgresql://app:QZJK@db.internal/app",
		"host=db dbname=app application_name=https://example.org/job",
		"host=db dbname=app application_name=POSTGRES://x",
	} {
		if _, err := (&Options{URL: raw, ConnectTimeout: time.Second}).Config(redact.New()); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
}
