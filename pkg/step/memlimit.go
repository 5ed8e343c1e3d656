package step

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryFiles hold a container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// setMemoryLimit gives the Go runtime 90% of the container's memory limit, unless
// GOMEMLIMIT says otherwise: near the limit the collector then works harder
// instead of the kernel killing the step (exit 137, which no workflow retries
// as a step failure it understands). Parsing a large pending migration is the
// case: its garbage alone would otherwise double the peak.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if limit, ok := parseMemoryLimit(string(b)); ok {
			debug.SetMemoryLimit(limit / 10 * 9)
		}
		return
	}
}

// parseMemoryLimit reads a cgroup memory limit file: "max" (v2) or a value past
// any real machine's memory (v1's "unlimited") means none.
func parseMemoryLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<50 {
		return 0, false
	}
	return n, true
}
