package patroni

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/test/patronienv"
)

// countingClock is the real clock, counting pauses and keeping the longest.
type countingClock struct {
	poll.RealClock
	pauses  atomic.Int64
	longest atomic.Int64
}

func (c *countingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.pauses.Add(1)
	for {
		old := c.longest.Load()
		if int64(d) <= old || c.longest.CompareAndSwap(old, int64(d)) {
			break
		}
	}
	return c.RealClock.Sleep(ctx, d)
}

// TestRealPatroni runs wait-patroni against a real single-member Patroni 3.0
// cluster whose roles are created while the step waits, then runs the real
// binary against the configured cluster.
func TestRealPatroni(t *testing.T) {
	cl := patronienv.New(t)
	ctx := context.Background()
	db := "app_" + randomHex(3)
	if err := cl.Exec(ctx, "postgres", "CREATE DATABASE "+q(db)); err != nil {
		t.Fatal(err)
	}
	op := newOperator(db)
	op.createLogin(t, cl)
	dbURL := cl.UserURL(op.login, loginPassword, db)

	type result struct {
		o   outcome
		err error
	}
	clock := &countingClock{}
	done := make(chan result, 1)
	go func() {
		o, err := run(newSpec(deps{clock: clock}), "--database-url", dbURL, "--patroni-url", cl.RESTURL(), "--timeout", "60s")
		done <- result{o, err}
	}()
	time.Sleep(2 * time.Second)
	if err := op.apply(ctx, cl); err != nil {
		t.Fatal(err)
	}
	// Pauses begun before the roles were committed: every attempt after them may
	// have started too early, the one after the next pause cannot have.
	pausesBefore := int(clock.pauses.Load())
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	o := r.o
	if o.code != 0 {
		t.Fatalf("code %d\n%s", o.code, o.stderr)
	}
	if got := o.summary.Results["leader"]; got != patronienv.MemberName {
		t.Errorf("leader = %q, want %q", got, patronienv.MemberName)
	}
	attempts := o.attempts(t)
	if attempts < 2 {
		t.Errorf("attempts = %d: the step did not wait for the roles", attempts)
	}
	if attempts > pausesBefore+2 {
		t.Errorf("the cluster was ready after pause %d but the step needed %d attempts: it did not notice at the next check", pausesBefore, attempts)
	}
	if longest := time.Duration(clock.longest.Load()); longest > time.Second {
		t.Errorf("longest pause between checks = %s, want at most 1s", longest)
	}

	// The real binary, as a workflow runs it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "wait-patroni")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/chartreuse-go/chartreuse/steps/wait-patroni").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	res := filepath.Join(dir, "results")
	cmd := exec.Command(bin, "--patroni-url", cl.RESTURL(), "--results-dir", res, "--timeout", "30s")
	cmd.Env = append(os.Environ(), "CHARTREUSE_DATABASE_URL="+dbURL, "CHARTREUSE_SKIP_VERSION_CHECK=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wait-patroni: %v\n%s", err, out)
	}
	for name, want := range map[string]string{"leader": patronienv.MemberName, "owner-role": op.roles.Owner, "attempts": "1"} {
		if b, err := os.ReadFile(filepath.Join(res, name)); err != nil || string(b) != want {
			t.Errorf("result %s = %q (%v), want %q", name, b, err, want)
		}
	}

	// A wrong password still ends at once, behind a healthy leader.
	cmd = exec.Command(bin, "--patroni-url", cl.RESTURL(), "--timeout", "30s")
	cmd.Env = append(os.Environ(), "CHARTREUSE_DATABASE_URL="+cl.UserURL(op.login, "wrong", db), "CHARTREUSE_SKIP_VERSION_CHECK=true")
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("wrong password: %v, want exit 1", err)
	}

	// A URL with a path reaches Patroni, but not /cluster: the member's own
	// api_url (.../patroni, as /cluster lists it) answers its status, an
	// unknown path its health check (503 on this leader). Neither ever lists
	// members, so waiting cannot help: fail at once and say what to give.
	for _, path := range []string{"/patroni", "/api"} {
		o, err := run(Spec(), "--database-url", dbURL, "--patroni-url", cl.RESTURL()+path, "--timeout", "30s")
		if err != nil {
			t.Fatal(err)
		}
		if o.code != 1 || o.attempts(t) != 1 || !strings.Contains(o.summary.Error, "give the REST API's base URL without a path") {
			t.Errorf("--patroni-url ...%s: code %d, attempts %s, error %s; want exit 1 at once naming the fix", path, o.code, o.summary.Results["attempts"], o.summary.Error)
		}
	}
}
