package stepbin

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

// Proc is a running step binary.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr syncbuf.Buffer
	Started        time.Time
	done           chan struct{}
	// Rusage of the finished process (peak RSS in KiB in Maxrss).
	Rusage *syscall.Rusage
	Took   time.Duration
}

// Start runs bin with args; env is added to the test process's environment.
func Start(bin string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return StartCommand(cmd)
}

// StartCommand starts a prepared command (e.g. with other credentials), capturing
// its output.
func StartCommand(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.Stdout, &p.Stderr
	p.Started = time.Now()
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = p.Cmd.Wait()
		p.Took = time.Since(p.Started)
		if ru, ok := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.Rusage = ru
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits up to timeout (killing the process after it) and returns the exit
// code: -1 when killed by a signal.
func (p *Proc) Wait(ctx context.Context, timeout time.Duration) (code int, timedOut bool) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		timedOut = true
	case <-ctx.Done():
		p.Kill()
		timedOut = true
	}
	return p.Cmd.ProcessState.ExitCode(), timedOut
}

// Summary parses the final JSON line on stdout (zero value when there is none).
func (p *Proc) Summary() (results.Summary, bool) { return ParseSummary(p.Stdout.String()) }

// ParseSummary reads a step's stdout: one JSON summary line.
func ParseSummary(stdout string) (results.Summary, bool) {
	var s results.Summary
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		return s, false
	}
	return s, true
}

// Result is a finished run.
type Result struct {
	Code           int
	Stdout, Stderr string
	Summary        results.Summary
	HasSummary     bool
	Took           time.Duration
	MaxRSSKiB      int64
}

// Output is stdout and stderr together, for messages and secret scans.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// Run runs bin to completion (at most timeout) and returns what it did.
func Run(bin string, env []string, timeout time.Duration, args ...string) (Result, error) {
	p, err := Start(bin, env, args...)
	if err != nil {
		return Result{}, err
	}
	code, _ := p.Wait(context.Background(), timeout)
	return p.Result(code), nil
}

// Result describes the finished process.
func (p *Proc) Result(code int) Result {
	r := Result{Code: code, Stdout: p.Stdout.String(), Stderr: p.Stderr.String(), Took: p.Took}
	r.Summary, r.HasSummary = ParseSummary(r.Stdout)
	if p.Rusage != nil {
		r.MaxRSSKiB = p.Rusage.Maxrss
	}
	return r
}
