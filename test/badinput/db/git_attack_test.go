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

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// A migrate step stopped (SIGTERM, as the kubelet does) while its git server has
// gone silent ends at once with exit 75, and leaves nothing in TMPDIR; so does one
// that finishes.
func TestGitInterruptedLeavesNoTemp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs migrate against a real PostgreSQL and git server (not with -short)")
	}
	srv := pgenv.Shared(t)
	bins := kit.Binaries(t, "migrate")
	gs := gitserver.Start(t, "127.0.0.1:0")
	repo := gs.NewRepo(t, "shop.git")
	repo.Tag(t, "v1.0.0", repo.Commit(t, map[string]string{"db/migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}, "one"))
	key, pub := gitserver.NewClientKey(t)
	x := gs.StartSSH(t, pub)

	for i, tc := range []struct {
		name  string
		url   string
		fault func()
		creds map[string]string
		code  int
	}{
		{"finishes", repo.URL(), nil, nil, 0},
		{"http pack stalls", repo.URL(), func() { gs.FailNextPack(1, gitserver.StallMidway) }, nil, failure.CodeTransient},
		{"http refs stall", repo.URL(), func() { gs.FailNext(1, gitserver.Stall) }, nil, failure.CodeTransient},
		{"git stalls", repo.GitURL(), func() { gs.FailNext(1, gitserver.Stall) }, nil, failure.CodeTransient},
		{"ssh stalls", x.URL(repo), func() { gs.FailNext(1, gitserver.Stall) },
			map[string]string{"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()}, failure.CodeTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, srv, 1000+i)
			tmp := filepath.Join(f.scratch, "tmp")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.fault != nil {
				tc.fault()
			}
			cmd := exec.Command(bins["migrate"], "--plan", "--git-url", tc.url, "--git-revision", "v1.0.0", "--dir", "db/migrations",
				"--git-credentials", f.credentials(tc.creds))
			cmd.Env = append(cleanEnv(), "CHARTREUSE_SKIP_VERSION_CHECK=true", "CHARTREUSE_DATABASE_URL="+f.url, "TMPDIR="+tmp)
			p, err := kit.StartCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if tc.fault != nil {
				kit.Eventually(t, "the git server to stall", time.Minute, func() bool { return gs.Stalling() > 0 })
				if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			code, timedOut := p.Wait(context.Background(), time.Minute)
			kit.Eventually(t, "the stall to end with the client", time.Minute, func() bool { return gs.Stalling() == 0 })
			if timedOut {
				t.Fatalf("did not end within a minute of SIGTERM:\n%s", p.Stderr.String())
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, p.Stderr.String())
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
			line, _ := kit.ErrorLine(p.Stderr.String())
			t.Logf("exit %d: %s", code, trimLog(line))
		})
	}
}
