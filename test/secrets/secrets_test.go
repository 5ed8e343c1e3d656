package secrets

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

// randomPasswords is how many passwords are generated besides the fixed ones.
// Each goes through 7 forms × 8 runs, three of which wait out a 1 s timeout;
// with the build this keeps the test under a minute on two shared cores.
const randomPasswords = 9

// fixedPasswords are the shapes that broke the parsers before: a leading '/'
// (the rest became the database name), digits then '/' (read as the port), every
// URL delimiter, a blank then keyword=value text (a further keyword, here one
// that replaces the host), quotes and backslashes.
var fixedPasswords = []string{
	"/Tr0ub4dor&3-horse",
	"5432/ab12cd34ef",
	"q@w:e/r%t?y#u&i=o",
	"pass host=QZJKwqVWYX",
	`it's a "quoted" \ one`,
}

// randomPassword draws 12 to 24 characters from all of printable ASCII, blank
// included.
func randomPassword(r *rand.Rand) string {
	b := make([]byte, 12+r.IntN(13))
	for i := range b {
		b[i] = byte(' ' + r.IntN(95))
	}
	return string(b)
}

// target is where a form points: the real server or a port nobody listens on.
type target struct {
	name string
	host string
	port int
	up   bool
}

// secretCase is one password and the role that has it.
type secretCase struct {
	pw, role, db string
}

// form spells a connection configuration; escaped forms are the ones a careful
// operator writes and must connect.
type form struct {
	name    string
	escaped bool
	env     func(c secretCase, tg target, dir string) []string
}

func urlOf(c secretCase, tg target, escaped bool) string {
	hostport := net.JoinHostPort(tg.host, strconv.Itoa(tg.port))
	if escaped {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(c.role, c.pw), Host: hostport, Path: "/" + c.db, RawQuery: "sslmode=disable"}
		return u.String()
	}
	return "postgres://" + c.role + ":" + c.pw + "@" + hostport + "/" + c.db + "?sslmode=disable"
}

func keywordValue(c secretCase, tg target, quoted bool) string {
	pw := c.pw
	if quoted {
		pw = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'"
	}
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", tg.host, tg.port, c.role, pw, c.db)
}

func urlFile(dir, content string) []string {
	p := filepath.Join(dir, "database-url")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		panic(err)
	}
	return []string{"CHARTREUSE_DATABASE_URL_FILE=" + p}
}

var forms = []form{
	{"url", false, func(c secretCase, tg target, _ string) []string {
		return []string{"CHARTREUSE_DATABASE_URL=" + urlOf(c, tg, false)}
	}},
	{"url-escaped", true, func(c secretCase, tg target, _ string) []string {
		return []string{"CHARTREUSE_DATABASE_URL=" + urlOf(c, tg, true)}
	}},
	{"url-file", false, func(c secretCase, tg target, dir string) []string { return urlFile(dir, urlOf(c, tg, false)) }},
	{"url-file-escaped", true, func(c secretCase, tg target, dir string) []string { return urlFile(dir, urlOf(c, tg, true)) }},
	{"keyword-value", false, func(c secretCase, tg target, _ string) []string {
		return []string{"CHARTREUSE_DATABASE_URL=" + keywordValue(c, tg, false)}
	}},
	{"keyword-value-quoted", true, func(c secretCase, tg target, _ string) []string {
		return []string{"CHARTREUSE_DATABASE_URL=" + keywordValue(c, tg, true)}
	}},
	{"libpq-variables", true, func(c secretCase, tg target, _ string) []string {
		return []string{"PGHOST=" + tg.host, "PGPORT=" + strconv.Itoa(tg.port), "PGUSER=" + c.role,
			"PGPASSWORD=" + c.pw, "PGDATABASE=" + c.db, "PGSSLMODE=disable"}
	}},
}

// runSpec is one binary run of a case.
type runSpec struct {
	step string
	args []string
	// onServer: run only against the reachable server (the Kubernetes steps never
	// connect to the database; once per form is enough).
	onServer bool
}

// record is what one run printed, results files included.
type record struct {
	caseIdx      int
	form, target string
	step         string
	label        string
	code         int
	text         string
}

// TestNoPieceOfThePasswordIsEverPrinted runs the five binaries with random and
// hostile passwords in every form the connection can be given, against the real
// server (a role with that password) and a closed port (the retry and timeout
// path), and scans stdout, stderr and every results file for any 4-character run
// of the password. The escaped forms must also connect; the raw ones may be
// refused (exit 1) but never retried against a reachable server.
func TestNoPieceOfThePasswordIsEverPrinted(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	seed := kit.Seed(t)
	rng := kit.NewRand(seed)

	repo, err := stepbin.RepoDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := stepbin.Build(ctx, repo, t.TempDir(), stepbin.Steps...)
	if err != nil {
		t.Fatal(err)
	}
	migrations := t.TempDir()
	if err := os.WriteFile(filepath.Join(migrations, "00001_a.sql"), []byte("-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	passwords := append([]string{}, fixedPasswords...)
	for range randomPasswords {
		passwords = append(passwords, randomPassword(rng))
	}
	cases := make([]secretCase, len(passwords))
	for i, pw := range passwords {
		c := secretCase{pw: pw, role: fmt.Sprintf("secrets_%d_%d", os.Getpid(), i), db: db}
		role := pgx.Identifier{c.role}.Sanitize()
		if err := srv.Exec(ctx, "postgres", "CREATE ROLE "+role+" LOGIN PASSWORD '"+strings.ReplaceAll(pw, "'", "''")+"'"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = srv.Exec(context.Background(), db, "DROP OWNED BY "+role)
			_ = srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+role)
		})
		// migrate --plan checks that the version table could be created.
		if err := srv.Exec(ctx, db, "GRANT CREATE ON SCHEMA public TO "+role); err != nil {
			t.Fatal(err)
		}
		cases[i] = c
	}

	targets := []target{{"server", srv.Host, srv.Port, true}, {"closed-port", "127.0.0.1", refusingPort(t), false}}
	waits := []string{"--timeout", "1s", "--connect-timeout", "1s"}
	runs := []runSpec{
		{step: "wait-for-db", args: waits},
		{step: "wait-patroni", args: waits},
		{step: "migrate", args: []string{"--plan", "--dir", migrations, "--connect-timeout", "1s"}},
		{step: "scale-down", args: []string{"--namespace", "chartreuse-secrets", "--selector", "app=none", "--timeout", "1s"}, onServer: true},
		{step: "scale-restore", args: []string{"--namespace", "chartreuse-secrets", "--timeout", "1s"}, onServer: true},
	}
	// A home without a kubeconfig and no in-cluster variables: the Kubernetes
	// steps fail at once and never reach the shared test cluster.
	home := t.TempDir()
	base := append(cleanEnv(), "HOME="+home, "CHARTREUSE_SKIP_VERSION_CHECK=true")

	var (
		mu      sync.Mutex
		records []record
		wg      sync.WaitGroup
		slots   = make(chan struct{}, 8)
	)
	start := time.Now()
	for i, c := range cases {
		for _, f := range forms {
			for _, tg := range targets {
				for _, r := range runs {
					if r.onServer && !tg.up {
						continue
					}
					label := fmt.Sprintf("password #%d, %s, %s, %s", i, f.name, tg.name, r.step)
					dir := t.TempDir()
					format := "text"
					if i%2 == 1 {
						format = "json"
					}
					args := append([]string{"--results-dir", filepath.Join(dir, "results"), "--log-level", "debug", "--log-format", format}, r.args...)
					cmd := exec.Command(bins[r.step], args...)
					cmd.Env = append(append([]string{}, base...), f.env(c, tg, dir)...)
					cmd.Dir = dir
					wg.Add(1)
					go func() {
						defer wg.Done()
						slots <- struct{}{}
						defer func() { <-slots }()
						p, err := stepbin.StartCommand(cmd)
						if err != nil {
							t.Errorf("%s: %v", label, err)
							return
						}
						code, timedOut := p.Wait(context.Background(), time.Minute)
						res := p.Result(code)
						text := res.Stdout + res.Stderr + readResults(filepath.Join(dir, "results"))
						if timedOut {
							t.Errorf("%s: did not finish within a minute:\n%s", label, res.Stderr)
						}
						if msg := checkCode(r.step, f, tg, code); msg != "" {
							t.Errorf("seed %d, %s: %s\n%s", seed, label, msg, res.Stderr)
						}
						mu.Lock()
						records = append(records, record{caseIdx: i, form: f.name, target: tg.name, step: r.step, label: label, code: code, text: text})
						mu.Unlock()
					}()
				}
			}
		}
	}
	wg.Wait()
	t.Logf("%d passwords, %d runs in %s", len(cases), len(records), time.Since(start).Round(time.Millisecond))
	tally := map[string]int{}
	for _, r := range records {
		tally[r.step+", "+r.form+", "+r.target+": exit "+strconv.Itoa(r.code)]++
	}
	for _, k := range slices.Sorted(maps.Keys(tally)) {
		t.Logf("%4d runs: %s", tally[k], k)
	}

	for _, rec := range records {
		pw := cases[rec.caseIdx].pw
		for _, view := range []string{rec.text, unescape(rec.text)} {
			quiet := clockNoise.ReplaceAllStringFunc(view, func(m string) string { return strings.Repeat("~", len(m)) })
			for _, w := range windows(pw) {
				in := view
				if allDigits(w) {
					in = quiet // four digits also turn up by chance in a timestamp or a duration
				}
				i := strings.Index(in, w)
				if i < 0 || benign(w, rec.caseIdx, cases, records) {
					continue
				}
				lo, hi := max(0, i-80), min(len(view), i+len(w)+80)
				t.Errorf("seed %d, %s (exit %d): %q of the password %q is printed: ...%s...", seed, rec.label, rec.code, w, pw, view[lo:hi])
				break
			}
		}
	}
}

// checkCode returns what is wrong with a run's exit code, or "".
func checkCode(step string, f form, tg target, code int) string {
	switch {
	case step == "scale-down" || step == "scale-restore":
		if code != 1 {
			return fmt.Sprintf("exit %d without a cluster, want 1", code)
		}
	case code != 0 && code != 1 && code != 75:
		return fmt.Sprintf("exit %d, want 0, 1 or 75", code)
	case step == "migrate" && tg.up && f.escaped && code != 0:
		return fmt.Sprintf("exit %d: with a correctly escaped password, the plan of an empty database succeeds", code)
	case step != "wait-for-db":
	case tg.up && f.escaped && code != 0:
		return fmt.Sprintf("exit %d: a correctly escaped password must connect", code)
	case tg.up && code == 75:
		return "exit 75: a reachable server answered, so only a malformed configuration or a refused login can be wrong, and no retry fixes those"
	case !tg.up && f.escaped && code != 75:
		return fmt.Sprintf("exit %d against a closed port, want 75", code)
	}
	return ""
}

// windows are the 4-character runs of pw.
func windows(pw string) []string {
	var out []string
	for i := 0; i+4 <= len(pw); i++ {
		out = append(out, pw[i:i+4])
	}
	return out
}

// benign reports a run of characters that the outputs of other passwords, which
// do not hold it, print too: fixed text (a port, a timestamp, a word of a
// message), not a piece of this password.
func benign(w string, own int, cases []secretCase, records []record) bool {
	for _, r := range records {
		if r.caseIdx == own || strings.Contains(cases[r.caseIdx].pw, w) {
			continue
		}
		if strings.Contains(r.text, w) || strings.Contains(unescape(r.text), w) {
			return true
		}
	}
	return false
}

// clockNoise matches what prints digits at random: timestamps (their fraction
// of a second) and durations such as 60.185432ms.
var clockNoise = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?|\d+(\.\d+)?(ns|µs|us|ms|s|m|h)\b`)

func allDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

// unescape undoes the quoting of slog's text handler and of JSON (\" \\ \uXXXX),
// so an escaped piece of the password is found too.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '"', '\\', '/':
			b.WriteByte(s[i+1])
			i++
		case 'u':
			if i+6 <= len(s) {
				if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil && n < 0x80 {
					b.WriteByte(byte(n))
					i += 5
					continue
				}
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func readResults(dir string) string {
	entries, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			b.WriteString("\n" + e.Name() + ": ")
			b.Write(data)
		}
	}
	return b.String()
}

// cleanEnv is the test's environment without anything that chooses a database or
// a cluster.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "CHARTREUSE_") || strings.HasPrefix(kv, "KUBE") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// refusingPort binds a port on 127.0.0.1 without listening: a connection to it
// is refused, and no other test's server can take it while this test runs (a
// port found free and released could be).
func refusingPort(t *testing.T) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
