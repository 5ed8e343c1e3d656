package pgenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const childEnv = "CHARTREUSE_PGENV_CHILD"

// The child of TestServerDiesWithTheTestProcess: starts a server, prints its
// postmaster's PID and directory, and waits to be killed.
func TestChildStartsAServer(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("runs only as the child of TestServerDiesWithTheTestProcess")
	}
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%d %s\n", s.PID(), s.Dir)
	select {}
}

// A test process that dies without stopping its server (go test -timeout
// kills it so) takes the server with it. Before, the postmaster lived on and
// check-clean failed the run.
func TestServerDiesWithTheTestProcess(t *testing.T) {
	child := exec.Command(os.Args[0], "-test.run=^TestChildStartsAServer$", "-test.v=false")
	child.Env = append(os.Environ(), childEnv+"=1")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("the child printed no PID: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		t.Fatalf("the child printed %q, want a PID and a directory", line)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		t.Fatalf("the child printed %q, want a PID", line)
	}
	dir := f[1]
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // only if the test failed
		_ = os.RemoveAll(dir)
	})

	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()
	deadline := time.Now().Add(time.Minute)
	for !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still runs a minute after its test process was killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
