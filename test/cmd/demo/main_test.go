package main

import (
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"
)

// TestHeartbeat: lines while the step runs, none after stop, stop twice.
func TestHeartbeat(t *testing.T) {
	t.Setenv("CHARTREUSE_PROGRESS_FIRST", "0.05")
	t.Setenv("CHARTREUSE_PROGRESS_TICK", "0.05")
	var mu sync.Mutex
	var lines []string
	stop := heartbeat("starting the cluster", func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	})
	time.Sleep(400 * time.Millisecond)
	stop()
	mu.Lock()
	n := len(lines)
	mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if n < 3 {
		t.Errorf("%d lines in 400 ms at 50 ms intervals, want 3 or more: %q", n, lines)
	}
	if len(lines) != n {
		t.Errorf("lines after stop: %q", lines[n:])
	}
	re := regexp.MustCompile(`^starting the cluster: [0-9.]+m?s elapsed$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("line %q, want %s", l, re)
		}
	}
}
