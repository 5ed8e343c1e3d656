package migrate

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

// gooseCLI is the goose command of the pinned version, built from the module cache
// with only its PostgreSQL driver.
const gooseCLI = "github.com/pressly/goose/v3/cmd/goose@v3.28.0"

type binaries struct{ migrate, goose string }

func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	b := binaries{migrate: filepath.Join(dir, "migrate"), goose: filepath.Join(dir, "goose")}
	out, err := exec.Command("go", "build", "-o", b.migrate, "github.com/chartreuse-go/chartreuse/steps/migrate").CombinedOutput()
	if err != nil {
		t.Fatalf("building migrate: %v\n%s", err, out)
	}
	cmd := exec.Command("go", "install", "-tags", "no_clickhouse,no_mssql,no_mysql,no_sqlite3,no_vertica,no_ydb,no_libsql", gooseCLI)
	cmd.Dir = dir // outside this module: go install pkg@version uses goose's own go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the goose CLI (%s): %v\n%s", gooseCLI, err, out)
	}
	return b
}

// proc is a running migrate binary.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
}

func startMigrate(t *testing.T, bin, url, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, append([]string{"--dir", dir}, args...)...), done: make(chan struct{})}
	// The URL travels as the environment variable a Secret would feed.
	p.cmd.Env = append(os.Environ(), "CHARTREUSE_DATABASE_URL="+url, "CHARTREUSE_SKIP_VERSION_CHECK=true")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns the exit code, -1 when killed by a signal.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("migrate did not finish:\n%s", p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) summary(t *testing.T) results.Summary {
	t.Helper()
	var s results.Summary
	if err := json.Unmarshal([]byte(strings.TrimSpace(p.stdout.String())), &s); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", p.stdout.String())
	}
	return s
}

func runMigrate(t *testing.T, bin, url, dir string, args ...string) (*proc, int) {
	t.Helper()
	p := startMigrate(t, bin, url, dir, args...)
	return p, p.wait(t)
}

// TestProcesses runs the real binaries: kill -9, concurrent runs, SIGTERM, and the
// goose CLI of the pinned version on the same databases.
func TestProcesses(t *testing.T) {
	srv := pgenv.Shared(t)
	bins := buildBinaries(t)
	const pw = "k1ll:@/%?pw"
	login := loginRole(t, pw)
	var outputs []string
	t.Cleanup(func() {
		for _, out := range outputs {
			if strings.Contains(out, pw) || strings.Contains(out, "k1ll%3A%40") || strings.Contains(out, "k1ll:@") {
				t.Errorf("process output leaks the password:\n%s", out)
			}
		}
	})
	keep := func(p *proc) { outputs = append(outputs, p.stdout.String()+p.stderr.String()) }
	// sleepyDB is a fresh database the login role migrates, with sleep_control.
	sleepyDB := func(t *testing.T) (*testDB, string) {
		d := newDB(t)
		d.exec("GRANT CREATE ON SCHEMA public TO " + login)
		d.exec("CREATE TABLE sleep_control (version int PRIMARY KEY, seconds float8)")
		d.exec("GRANT SELECT ON sleep_control TO " + login)
		d.exec("CREATE TABLE effects (version int)") // exists even if migration 1 is killed
		d.exec("GRANT SELECT, INSERT, DELETE ON effects TO " + login)
		return d, srv.UserURL(login, pw, d.db)
	}
	dir := writeDir(t, sleepyMigrations(3))

	t.Run("kill -9", func(t *testing.T) {
		points := []struct {
			name    string
			sleepAt int  // the migration to kill inside; 0: none
			lock    bool // kill while waiting for the lock
		}{
			{"inside migration 1", 1, false},
			{"inside migration 3", 3, false},
			{"waiting for the lock", 0, true},
		}
		for _, pt := range points {
			t.Run(pt.name, func(t *testing.T) {
				d, url := sleepyDB(t)
				if pt.sleepAt > 0 {
					d.exec("INSERT INTO sleep_control VALUES ($1, 3600)", pt.sleepAt)
				}
				holder := d.conn()
				if pt.lock {
					if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_lock($1)", LockID); err != nil {
						t.Fatal(err)
					}
				}
				p := startMigrate(t, bins.migrate, url, dir)
				if pt.lock {
					eventually(t, "migrate to wait for the lock", func() bool { return strings.Contains(p.stderr.String(), "waiting for the migration lock") })
				} else {
					eventually(t, "migration to sleep", d.sleeping)
				}
				if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if code := p.wait(t); code != -1 {
					t.Fatalf("exit %d after SIGKILL", code)
				}
				keep(p)
				if pt.sleepAt > 0 {
					// Nothing half-applied: every effect has its version row and vice versa.
					applied := d.queryString(`SELECT coalesce(string_agg(version_id::text, ',' ORDER BY version_id), '') FROM goose_db_version WHERE version_id > 0`)
					effects := d.queryString(`SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM effects`)
					want := map[int]string{1: "", 3: "1,2"}[pt.sleepAt]
					if applied != want || effects != want {
						t.Fatalf("after kill inside %d: versions %q, effects %q; want %q", pt.sleepAt, applied, effects, want)
					}
				}
				if pt.lock {
					if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", LockID); err != nil {
						t.Fatal(err)
					}
				}
				d.exec("UPDATE sleep_control SET seconds = 0")
				p, code := runMigrate(t, bins.migrate, url, dir)
				keep(p)
				if code != 0 {
					t.Fatalf("rerun after kill: exit %d\n%s", code, p.stderr.String())
				}
				d.checkEffectsOnce(3)
			})
		}
	})

	t.Run("four concurrent runs", func(t *testing.T) {
		d, url := sleepyDB(t)
		d.exec("INSERT INTO sleep_control VALUES (1, 0.5)") // keep the first migration busy while the others arrive
		var ps []*proc
		for range 4 {
			ps = append(ps, startMigrate(t, bins.migrate, url, dir))
		}
		total := 0
		for i, p := range ps {
			if code := p.wait(t); code != 0 {
				t.Fatalf("run %d: exit %d\n%s", i, code, p.stderr.String())
			}
			keep(p)
			n, _ := strconv.Atoi(p.summary(t).Results["applied"])
			total += n
		}
		if total != 3 {
			t.Fatalf("the runs applied %d migrations in total, want 3", total)
		}
		d.checkEffectsOnce(3)
	})

	t.Run("SIGTERM mid-migration", func(t *testing.T) {
		d, url := sleepyDB(t)
		d.exec("INSERT INTO sleep_control VALUES (2, 3600)")
		p := startMigrate(t, bins.migrate, url, dir)
		eventually(t, "migration 2 to sleep", d.sleeping)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code := p.wait(t)
		keep(p)
		if code != 75 || !strings.Contains(p.stderr.String(), "interrupted") {
			t.Fatalf("exit %d, want 75\n%s", code, p.stderr.String())
		}
		if s := p.summary(t); s.ExitCode != 75 || s.Results["applied-versions"] != "[1]" || s.Results["current-version"] != "1" {
			t.Errorf("summary after SIGTERM: %+v", s)
		}
		if got := d.versions("goose_db_version"); got != "0:true 1:true" {
			t.Fatalf("versions after SIGTERM: %q", got)
		}
		eventually(t, "the lock to be released", func() bool { return !d.advisoryLockHeld() })
		eventually(t, "the cancelled statement to end", func() bool { return !d.sleeping() })
		d.exec("UPDATE sleep_control SET seconds = 0")
		p, code = runMigrate(t, bins.migrate, url, dir)
		keep(p)
		if code != 0 || p.summary(t).Results["applied-versions"] != "[2,3]" {
			t.Fatalf("rerun: exit %d\n%s", code, p.stderr.String())
		}
		d.checkEffectsOnce(3)
	})

	t.Run("goose CLI interop", func(t *testing.T) {
		tests := []struct {
			name, table string
			goose       bool // goose first; otherwise migrate first
		}{
			{"goose then migrate", DefaultTable, true},
			{"migrate then goose, schema-qualified table", "meta.versions", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				d := newDB(t)
				d.exec("CREATE SCHEMA meta")
				mdir := writeDir(t, threeTables)
				goose := func(args ...string) string {
					t.Helper()
					cmd := exec.Command(bins.goose, append([]string{"-dir", mdir, "-env", "none", "-table", tt.table, "postgres", d.url()}, args...)...)
					cmd.Dir = t.TempDir()
					out, err := cmd.CombinedOutput()
					if err != nil {
						t.Fatalf("goose %v: %v\n%s", args, err, out)
					}
					return string(out)
				}
				migrate := func(args ...string) results.Summary {
					t.Helper()
					p, code := runMigrate(t, bins.migrate, d.url(), mdir, append([]string{"--table", tt.table}, args...)...)
					if code != 0 {
						t.Fatalf("migrate %v: exit %d\n%s", args, code, p.stderr.String())
					}
					return p.summary(t)
				}
				// After a goose rollback the checksum record of what it rolled back
				// stays: migrate refuses (it cannot tell a rollback from a version row
				// deleted by hand) until the record is forgotten, as its message says.
				forgetRolledBack := func(versions string) {
					t.Helper()
					p, code := runMigrate(t, bins.migrate, d.url(), mdir, "--table", tt.table, "--plan")
					sums := tt.table + "_sums"
					if !strings.Contains(tt.table, ".") {
						sums = "public." + sums
					}
					repair := "DELETE FROM " + sums + " WHERE version IN (" + versions + ");"
					if code != 1 || !strings.Contains(p.stderr.String(), "recorded as applied") || !strings.Contains(p.stderr.String(), repair) {
						t.Fatalf("plan after a goose rollback of %s: exit %d, want 1 naming %q\n%s", versions, code, repair, p.stderr.String())
					}
					d.exec(repair)
				}
				if tt.goose {
					goose("up-to", "2")
					if s := migrate(); s.Results["applied-versions"] != "[3]" {
						t.Fatalf("migrate after goose up-to 2: %v", s.Results)
					}
					goose("status")
					goose("down") // rolls back 3
					forgetRolledBack("3")
					if s := migrate("--plan"); s.Results["pending-versions"] != "[3]" {
						t.Fatalf("plan after goose down: %v", s.Results)
					}
					if s := migrate("--down-to", "1"); s.Results["rolled-back-versions"] != "[2]" {
						t.Fatalf("migrate --down-to 1: %v", s.Results)
					}
					goose("up")
				} else {
					migrate("--to", "2")
					goose("up") // applies 3
					if out := goose("version"); !strings.Contains(out, "version 3") {
						t.Fatalf("goose version after up: %s", out)
					}
					goose("down-to", "1") // rolls back 3 and 2
					forgetRolledBack("2") // 3 was applied by goose: no record
					if s := migrate(); s.Results["applied-versions"] != "[2,3]" {
						t.Fatalf("migrate after goose down-to 1: %v", s.Results)
					}
					goose("status")
				}
				if s := migrate("--plan"); s.Results["pending"] != "false" || s.Results["current-version"] != "3" {
					t.Fatalf("final plan: %v", s.Results)
				}
				if got := d.versions(tt.table); got != "0:true 1:true 2:true 3:true" {
					t.Fatalf("%s = %q", tt.table, got)
				}
				if !d.tableExists("a") || !d.tableExists("b") || !d.tableExists("c") {
					t.Fatal("tables missing")
				}
			})
		}
	})
}
