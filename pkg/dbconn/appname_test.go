package dbconn

import (
	"strings"
	"testing"
)

func TestApplicationName(t *testing.T) {
	long := "nightly-release-of-the-payments-service-" + strings.Repeat("x", 40) + "-k7f2q"
	tests := []struct {
		run, step, want string
	}{
		{"chartreuse-abcde", "migrate", "chartreuse/chartreuse-abcde/migrate"},
		{"", "wait-for-db", "chartreuse/wait-for-db"},
		{"  spaced  ", "plan", "chartreuse/spaced/plan"},
		{"café", "plan", "chartreuse/caf?/plan"}, // PostgreSQL would print '?' (or an escape) itself
		{"tab\there", "plan", "chartreuse/tab?here/plan"},
		{long, "wait-patroni", "chartreuse/nightly-release-of-~xxxxxxxxxxxxx-k7f2q/wait-patroni"},
		{long, "migrate", "chartreuse/nightly-release-of-th~xxxxxxxxxxxxxxxx-k7f2q/migrate"},
	}
	for _, tt := range tests {
		got := ApplicationName(tt.run, tt.step)
		if got != tt.want {
			t.Errorf("ApplicationName(%q, %q) = %q, want %q", tt.run, tt.step, got, tt.want)
		}
		if len(got) > 63 {
			t.Errorf("ApplicationName(%q, %q) is %d bytes: PostgreSQL cuts at 63", tt.run, tt.step, len(got))
		}
		run, step, shortened, ok := ParseApplicationName(got)
		if !ok || step != tt.step || shortened != (len(tt.run) > 40) {
			t.Errorf("ParseApplicationName(%q) = %q, %q, %v, %v", got, run, step, shortened, ok)
		}
		if !shortened && run != printable(tt.run) {
			t.Errorf("ParseApplicationName(%q) run %q, want %q", got, run, tt.run)
		}
	}
	for _, name := range []string{"", "chartreuse", "psql", "chartreuse/", "chartreuse/run/"} {
		if _, _, _, ok := ParseApplicationName(name); ok {
			t.Errorf("ParseApplicationName(%q) ok, want not a step's name", name)
		}
	}
}
