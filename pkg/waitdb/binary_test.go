package waitdb

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestBinary builds the real wait-for-db once and checks what a workflow sees:
// exit codes, the JSON summary on stdout, result files, and SIGTERM handling.
func TestBinary(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "wait-for-db")
	build := exec.Command("go", "build", "-o", bin, "github.com/chartreuse-go/chartreuse/steps/wait-for-db")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := func(url string) []string {
		return append(os.Environ(), "CHARTREUSE_DATABASE_URL="+url, "CHARTREUSE_SKIP_VERSION_CHECK=true")
	}

	t.Run("ready", func(t *testing.T) {
		res := filepath.Join(dir, "results")
		cmd := exec.Command(bin, "--results-dir", res)
		cmd.Env = env(srv.URL(db))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		var sum results.Summary
		if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Status != "ok" {
			t.Fatalf("stdout %q: %v", stdout.String(), err)
		}
		if b, err := os.ReadFile(filepath.Join(res, "attempts")); err != nil || string(b) != "1" {
			t.Errorf("attempts file: %q %v", b, err)
		}
	})

	t.Run("wrong password exits 1", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = env(srv.UserURL("postgres", "wrong", db))
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("want exit 1, got %v", err)
		}
	})

	t.Run("usage error exits 2", func(t *testing.T) {
		cmd := exec.Command(bin, "--timeout", "-1s")
		cmd.Env = env(srv.URL(db))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--timeout") {
			t.Fatalf("want exit 2 naming --timeout, got %v: %s", err, out)
		}
	})

	t.Run("SIGTERM while waiting exits 75", func(t *testing.T) {
		cmd := exec.Command(bin, "--timeout", "10m")
		cmd.Env = env(pgenv.ClosedURL(t))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "waiting for the database") {
				break
			}
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 75 {
				t.Fatalf("want exit 75, got %v\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("did not stop after SIGTERM\n%s", log.String())
		}
		if !strings.Contains(log.String(), "interrupted") {
			t.Errorf("stderr does not say it was interrupted:\n%s", log.String())
		}
	})
}
