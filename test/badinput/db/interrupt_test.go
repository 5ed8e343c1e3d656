package db

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// planInterrupted runs migrate --plan with args (and the environment of the other
// cases) in a TMPDIR of its own. With stalling set, it waits until the server has
// gone silent on migrate, sends SIGTERM (as the kubelet does), and waits for the
// stall to end with the client. migrate must end within a minute with want, leave
// TMPDIR empty and, unless it finished, the database unchanged.
func (f *fixture) planInterrupted(t *testing.T, migrate string, args []string, stalling func() int, want int) {
	t.Helper()
	tmp := filepath.Join(f.scratch, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	before, err := kit.SnapshotDB(context.Background(), f.srv.URL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(migrate, append([]string{"--plan"}, args...)...)
	cmd.Env = append(cleanEnv(), "CHARTREUSE_SKIP_VERSION_CHECK=true", "CHARTREUSE_DATABASE_URL="+f.url, "TMPDIR="+tmp)
	p, err := stepbin.StartCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if stalling != nil {
		waitfor.True(t, "the server to stall", time.Minute, func() bool { return stalling() > 0 })
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	code, timedOut := p.Wait(context.Background(), time.Minute)
	if stalling != nil {
		waitfor.True(t, "the stall to end with the client", time.Minute, func() bool { return stalling() == 0 })
	}
	if timedOut {
		t.Fatalf("did not end within a minute of SIGTERM:\n%s", p.Stderr.String())
	}
	if code != want {
		t.Errorf("exit %d, want %d:\n%s", code, want, p.Stderr.String())
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("left in TMPDIR: %s", strings.Join(names, " "))
	}
	after, err := kit.SnapshotDB(context.Background(), f.srv.URL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	if d := kit.Diff(before, after); code != 0 && d != "" {
		t.Errorf("the database changed:\n%s", d)
	}
	line, _ := stepbin.ErrorLine(p.Stderr.String())
	t.Logf("exit %d: %s", code, trimLog(line))
}
