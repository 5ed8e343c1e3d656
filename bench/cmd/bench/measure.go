package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

// sample is one measured run of a tool: wall time from the first process's start
// to the last one's exit, and each process's peak RSS (rusage ru_maxrss, KiB).
type sample struct {
	wall time.Duration
	each []time.Duration // per process
	rss  []int64         // per process; 0 when not measured
}

// series are a tool's samples.
type series struct {
	name    string
	samples []sample // timed runs
	rssOnly []sample // runs under GNU time for the peak RSS only
}

func (s *series) walls() []time.Duration {
	out := make([]time.Duration, len(s.samples))
	for i, x := range s.samples {
		out[i] = x.wall
	}
	return out
}

// median wall time.
func (s *series) median() time.Duration { return median(s.walls()) }

// peak is the highest RSS of process i over all runs, in KiB.
func (s *series) peak(i int) int64 {
	var m int64
	for _, x := range append(slices.Clone(s.samples), s.rssOnly...) {
		if i < len(x.rss) {
			m = max(m, x.rss[i])
		}
	}
	return m
}

// peakAll is the highest RSS of any process of the tool, in KiB.
func (s *series) peakAll() int64 {
	var m int64
	for _, x := range append(slices.Clone(s.samples), s.rssOnly...) {
		for _, r := range x.rss {
			m = max(m, r)
		}
	}
	return m
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread describes the runs: min–max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return ""
	}
	return fmt.Sprintf("%s–%s", ms(slices.Min(ds)), ms(slices.Max(ds)))
}

// command is one process of a tool.
type command struct {
	argv []string
	env  []string
	dir  string
}

// timeBin is GNU time. A child of this (Go, 30 MB) process inherits its resident
// set as the starting point of ru_maxrss, because Go starts children with
// CLONE_VM|CLONE_VFORK and the kernel records the shared memory's high-water mark at
// exec; so every process is started through GNU time (about 1.5 MB), which reports
// the child's own ru_maxrss.
const timeBin = "/usr/bin/time"

// scratch holds the files GNU time writes (the run's work directory, removed at
// the end, so nothing is left in /tmp even when a run fails).
var scratch = os.TempDir()

// rssWrapped reports whether peak RSS comes from GNU time (else from this
// process's rusage of the child, inflated by this process's own size).
var rssWrapped = func() bool { _, err := os.Stat(timeBin); return err == nil }()

// runOnce runs the commands one after another and measures them; any exit code
// but 0 is an error naming the command and the end of its output.
// With wrap, each process runs under GNU time for its peak RSS (which adds about
// a millisecond of start-up); without, only times are taken.
func runOnce(ctx context.Context, cmds []command, wrap bool) (sample, error) {
	var s sample
	start := time.Now()
	for _, c := range cmds {
		argv := c.argv
		var rssFile string
		if wrap && rssWrapped {
			f, err := os.CreateTemp(scratch, "rss-")
			if err != nil {
				return s, err
			}
			f.Close()
			rssFile = f.Name()
			defer os.Remove(rssFile)
			argv = append([]string{timeBin, "-q", "-f", "%M", "-o", rssFile}, argv...)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(cleanEnv(), c.env...)
		cmd.Dir = c.dir
		p, err := stepbin.StartCommand(cmd)
		if err != nil {
			return s, err
		}
		code, timedOut := p.Wait(ctx, 30*time.Minute)
		r := p.Result(code)
		if timedOut || code != 0 {
			return s, fmt.Errorf("%s exited %d:\n%s", strings.Join(c.argv, " "), code, tail(r.Stdout+r.Stderr, 2000))
		}
		s.each = append(s.each, p.Took)
		rss := int64(0)
		if wrap {
			rss = r.MaxRSSKiB
		}
		if rssFile != "" {
			b, err := os.ReadFile(rssFile)
			if err != nil {
				return s, err
			}
			if rss, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
				return s, fmt.Errorf("GNU time wrote %q: %v", b, err)
			}
		}
		s.rss = append(s.rss, rss)
	}
	s.wall = time.Since(start)
	return s, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func mib(kib int64) string {
	if kib <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// startMeasured starts argv under GNU time (when there is one) and returns the
// process and a function that reads the child's peak RSS (KiB) once it exited.
func startMeasured(argv []string, env []string) (*stepbin.Proc, func(stepbin.Result) int64, error) {
	rssFile := ""
	if rssWrapped {
		f, err := os.CreateTemp(scratch, "rss-")
		if err != nil {
			return nil, nil, err
		}
		f.Close()
		rssFile = f.Name()
		argv = append([]string{timeBin, "-q", "-f", "%M", "-o", rssFile}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	p, err := stepbin.StartCommand(cmd)
	if err != nil {
		return nil, nil, err
	}
	return p, func(r stepbin.Result) int64 {
		if rssFile == "" {
			return r.MaxRSSKiB
		}
		defer os.Remove(rssFile)
		b, err := os.ReadFile(rssFile)
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}, nil
}
