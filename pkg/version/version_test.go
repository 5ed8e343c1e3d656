package version

import (
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name, binary, manifest string
		skip                   bool
		code                   int
		mentions               []string
	}{
		{"same", "0.1.0", "0.1.0", false, 0, nil},
		{"patch differs", "0.1.0", "v0.1.7", false, 0, nil},
		{"prerelease", "1.2.0-rc.1", "1.2", false, 0, nil},
		{"minor differs", "0.2.0", "0.1.0", false, 1, []string{"0.2.0", "0.1.0"}},
		{"major differs", "2.0.0", "1.0.0", false, 1, []string{"2.0.0", "1.0.0"}},
		{"missing", "0.1.0", "", false, 2, []string{"--manifest-version"}},
		{"missing but skipped", "0.1.0", "", true, 0, nil},
		{"malformed", "0.1.0", "latest", false, 1, []string{"latest"}},
		{"negative", "0.1.0", "1.-1", false, 1, []string{"1.-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.binary, tt.manifest, tt.skip)
			if got := failure.Code(err); got != tt.code {
				t.Fatalf("Check(%q, %q) code = %d (%v), want %d", tt.binary, tt.manifest, got, err, tt.code)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}
