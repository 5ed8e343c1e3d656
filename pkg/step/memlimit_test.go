package step

import "testing"

func TestParseMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		in    string
		limit int64
		ok    bool
	}{
		{"134217728\n", 134217728, true},
		{"max\n", 0, false},
		{"9223372036854771712\n", 0, false}, // cgroup v1 without a limit
		{"", 0, false},
		{"0", 0, false},
		{"-1", 0, false},
	} {
		if limit, ok := parseMemoryLimit(tt.in); limit != tt.limit || ok != tt.ok {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d, %v", tt.in, limit, ok, tt.limit, tt.ok)
		}
	}
}
