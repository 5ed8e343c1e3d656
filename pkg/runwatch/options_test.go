package runwatch

import (
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Bad flags are usage errors (exit 2) naming the flag and what it wants.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want string // "" valid
	}{
		{"no watch", Options{Every: time.Second}, ""},
		{"taskrun", Options{Run: "taskrun/migrate-x-0", UID: "u", Every: time.Second}, ""},
		{"workflow", Options{Run: "workflow/wf", UID: "u", Every: time.Second, Namespace: "apps"}, ""},
		{"uid alone", Options{UID: "u", Every: time.Second}, "--watch-run-uid without --watch-run"},
		{"unknown kind", Options{Run: "pipelinerun/x", UID: "u", Every: time.Second}, "want taskrun/NAME"},
		{"no name", Options{Run: "taskrun/", UID: "u", Every: time.Second}, "is not an object name"},
		{"unsubstituted", Options{Run: "taskrun/$(context.taskRun.name)", UID: "u", Every: time.Second}, "is not an object name"},
		{"no uid", Options{Run: "workflow/wf", Every: time.Second}, "needs --watch-run-uid"},
		{"interval", Options{Run: "workflow/wf", UID: "u", Every: time.Millisecond}, "--watch-run-interval"},
		{"namespace", Options{Run: "workflow/wf", UID: "u", Every: time.Second, Namespace: "Bad_NS"}, "--watch-run-namespace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || failure.Code(err) != failure.CodeUsage {
				t.Errorf("error %v (exit %d), want exit %d saying %q", err, failure.Code(err), failure.CodeUsage, c.want)
			}
		})
	}
}
