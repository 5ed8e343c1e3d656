// Package tools_test checks test/tools/progress.sh, the heartbeat that the
// first-run builds (build-lib.sh), test/run-tests.sh and test/demo.sh run
// their long steps under, on fake commands: the real builds take minutes.
package tools_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

// script is the head of every case's script: the way the scripts use
// progress (strict mode, sourced), a slow fake command that writes on stdout,
// and a fast heartbeat.
const script = `set -euo pipefail
. ./progress.sh
progress_who=fake
slow() { echo line1; sleep 2.6; echo line2; }
failing() { false; echo "set -e was off inside the command"; }
`

var heartbeat = regexp.MustCompile(`(?m)^fake: slow: [0-9]+s elapsed \(a first run took about 2 min on 2 cores\)$`)

type run struct {
	stdout, stderr string
	code           int
}

// runScript runs body after script in its own process group with a 0.5 s
// heartbeat (CHARTREUSE_PROGRESS_FIRST and _TICK unless env sets them) and
// checks that, once bash is gone, no process of the group is left (the
// heartbeat ends with the shell however it ends).
func runScript(t *testing.T, body string, env ...string) run {
	t.Helper()
	cmd := exec.Command("bash", "-c", script+body)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "CHARTREUSE_PROGRESS_FIRST=0.5", "CHARTREUSE_PROGRESS_TICK=0.5"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A heartbeat that keeps the shell waiting must fail the test, not hang it.
	timer := time.AfterFunc(30*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("the script took more than 30 s (killed); stderr:\n%s", stderr.String())
	}
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	wantGroupGone(t, cmd.Process.Pid)
	return run{stdout.String(), stderr.String(), code}
}

// wantGroupGone fails unless every process of group pgid has exited within a
// second (after a set -e exit the heartbeat sees its pipe close a moment
// later). An exited process counts as gone even if nobody reaps it yet (a
// zombie of init).
func wantGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		left := groupAlive(t, pgid)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			t.Fatalf("processes left in the script's group: %s", strings.Join(left, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupAlive lists the processes of group pgid that have not exited, from
// /proc/<pid>/stat: "pid (comm) state ppid pgrp ...".
func groupAlive(t *testing.T, pgid int) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		left = append(left, d.Name()+" "+strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
	}
	return left
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		env        []string
		wantStdout string
		wantCode   int
		// minBeats heartbeat lines at least; want and notWant are on stderr.
		minBeats      int
		want, notWant []string
	}{{
		name: "slow command: heartbeats, a final line, stdout untouched",
		body: `progress slow 100 -- slow
echo /the/output/dir
`,
		wantStdout: "line1\nline2\n/the/output/dir\n",
		minBeats:   3,
		want:       []string{"fake: slow: done in "},
	}, {
		name:       "fast command stays quiet (a warm run)",
		body:       "progress slow 100 -- echo warm\n",
		env:        []string{"CHARTREUSE_PROGRESS_FIRST=10"},
		wantStdout: "warm\n",
	}, {
		name:       "a failure ends the script under set -e with the command's status",
		body:       "progress slow 100 -- bash -c 'sleep 1.2; exit 3'\necho not reached\n",
		wantCode:   3,
		minBeats:   1,
		want:       []string{"fake: slow: failed or interrupted after "},
		notWant:    []string{"not reached", "done in"},
		wantStdout: "",
	}, {
		name:       "tested by if: progress returns the status and says so",
		body:       "if progress slow 100 -- bash -c 'sleep 1.2; exit 3'; then echo ok; else echo \"status $?\"; fi\n",
		wantStdout: "status 3\n",
		minBeats:   1,
		want:       []string{"fake: slow: failed (exit 3) after "},
	}, {
		name:     "set -e stays on inside a function run by progress",
		body:     "progress failing 0 -- failing\necho not reached\n",
		wantCode: 1,
		notWant:  []string{"set -e was off", "not reached"},
	}, {
		name:     "usage",
		body:     "progress slow -- true\n",
		wantCode: 2,
		want:     []string{"usage: progress WHAT SECONDS -- COMMAND"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runScript(t, tc.body, tc.env...)
			if r.code != tc.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", r.code, tc.wantCode, r.stderr)
			}
			if r.stdout != tc.wantStdout {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantStdout)
			}
			if n := len(heartbeat.FindAllString(r.stderr, -1)); n < tc.minBeats {
				t.Errorf("%d heartbeat lines, want %d or more; stderr:\n%s", n, tc.minBeats, r.stderr)
			}
			if tc.minBeats == 0 && len(tc.want) == 0 && r.stderr != "" {
				t.Errorf("stderr %q, want nothing", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(r.stdout+r.stderr, w) {
					t.Errorf("output has %q:\n%s%s", w, r.stdout, r.stderr)
				}
			}
		})
	}
}

// TestProgressInterrupted: Ctrl-C (SIGINT to the foreground group) during a
// step leaves no heartbeat behind.
func TestProgressInterrupted(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("bash", "-c", script+"progress slow 100 -- sleep 30\necho not reached\n")
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "CHARTREUSE_PROGRESS_FIRST=0.2", "CHARTREUSE_PROGRESS_TICK=0.2"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "elapsed"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			t.Fatalf("no heartbeat within 10 s; stderr:\n%s", stderr.String())
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Errorf("the script ended 0 after SIGINT")
	}
	wantGroupGone(t, pgid)
	if strings.Contains(stdout.String(), "not reached") {
		t.Errorf("the script went on after SIGINT")
	}
}

// fakeGo is a `go` for running the build.sh scripts in seconds: list prints
// packages, build sleeps FAKE_GO_SLEEP and makes an executable per package in
// its -o folder (then fails if FAKE_GO_FAIL is set), mod does nothing.
const fakeGo = `#!/bin/bash
case $1 in
list) for i in $(seq 1 150); do echo "example.com/p$i"; done ;;
mod) ;;
build)
	shift; o=; pkgs=()
	while (($#)); do case $1 in -o) o=$2; shift 2 ;; -ldflags) shift 2 ;; -*) shift ;; *) pkgs+=("$1"); shift ;; esac; done
	sleep "${FAKE_GO_SLEEP:-0}"
	for p in "${pkgs[@]}"; do printf '#!/bin/sh\n' >"$o/${p##*/}"; chmod +x "$o/${p##*/}"; done
	if [[ -n ${FAKE_GO_FAIL:-} ]]; then echo "fake go: compile error" >&2; exit 1; fi ;;
*) echo "fake go: $*" >&2; exit 1 ;;
esac
`

// TestBuildProgress runs kube/build.sh and triggers/build.sh (the go build
// and build_go shapes) with a fake go: a first build prints its heartbeat on
// stderr and only its folder, last, on stdout; a failed one says so and
// leaves no temporary folder; a warm run prints the folder and nothing else.
func TestBuildProgress(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ tool, what, dir string }{
		{"kube", "Kubernetes", `kube-v[0-9.]+/bin`},
		{"triggers", "Tekton Triggers", `triggers-v[0-9.]+/bin`},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			t.Parallel()
			cache := t.TempDir()
			build := func(env ...string) run {
				return runScript(t, "./"+tc.tool+"/build.sh | tail -n1\n",
					append([]string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "CHARTREUSE_CACHE=" + cache}, env...)...)
			}
			wantDir := regexp.MustCompile(`^` + regexp.QuoteMeta(cache) + `/` + tc.dir + "\n$")
			beat := regexp.MustCompile(`(?m)^build.sh: building ` + tc.what + ` v[0-9.]+: [0-9]+s elapsed \(a first run took about [0-9]+ (s|min) on 2 cores\)$`)

			r := build("FAKE_GO_SLEEP=0.8", "FAKE_GO_FAIL=1")
			if r.code != 1 || !strings.Contains(r.stderr, ": failed or interrupted after ") {
				t.Errorf("failed build: exit %d, stderr:\n%s", r.code, r.stderr)
			}
			if left, _ := filepath.Glob(filepath.Join(cache, "*", "bin*")); len(left) > 0 {
				t.Errorf("failed build left %v", left)
			}

			r = build("FAKE_GO_SLEEP=0.8")
			if r.code != 0 || !wantDir.MatchString(r.stdout) {
				t.Fatalf("first build: exit %d, stdout %q; stderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if !beat.MatchString(r.stderr) || !strings.Contains(r.stderr, ": done in ") {
				t.Errorf("first build: no heartbeat or final line on stderr:\n%s", r.stderr)
			}

			warm := build()
			if warm.code != 0 || warm.stdout != r.stdout || warm.stderr != "" {
				t.Errorf("warm run: exit %d, stdout %q (want %q), stderr %q (want nothing)", warm.code, warm.stdout, r.stdout, warm.stderr)
			}
		})
	}
}
