package stepbin

import (
	"fmt"
	"strings"
)

// ErrorLine finds a failed step's error in its stderr: the single level=ERROR
// line (text logs; among several, the one with the exit code), or the single line that is not a log record (errors found
// before logging starts, such as bad flags, or after it ends, such as a results
// directory that cannot be written). It fails when the error is spread over
// several lines or there is none.
func ErrorLine(stderr string) (string, error) {
	var lines, errs []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		lines = append(lines, l)
		if strings.Contains(l, "level=ERROR") || !strings.HasPrefix(l, "time=") && !strings.HasPrefix(l, "{") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 1 {
		// Steps that go on after a per-workload failure log each one at ERROR;
		// the step's own error is the line with its exit code.
		var final []string
		for _, l := range errs {
			if strings.Contains(l, "exit-code=") {
				final = append(final, l)
			}
		}
		if len(final) == 1 {
			return final[0], nil
		}
	}
	switch {
	case len(errs) == 1:
		return errs[0], nil
	case len(errs) > 1:
		return "", fmt.Errorf("%d error lines, want one:\n%s", len(errs), strings.Join(errs, "\n"))
	case len(lines) == 0:
		return "", fmt.Errorf("no error on stderr")
	}
	return "", fmt.Errorf("no error line among the %d lines on stderr:\n%s", len(lines), stderr)
}
