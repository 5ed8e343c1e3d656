package workload

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func TestParseRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
		err  string
	}{
		{"deployment/web", "deployment/web", ""},
		{"Deployment/web", "deployment/web", ""},
		{"deploy/web", "deployment/web", ""},
		{"deployments.apps/web", "deployment/web", ""},
		{"STS/db-0", "statefulset/db-0", ""},
		{"statefulset/db", "statefulset/db", ""},
		{"cj/report", "cronjob/report", ""},
		{"CronJob/report", "cronjob/report", ""},
		{"pod/web", "", `unknown kind "pod"`},
		{"web", "", "not kind/name"},
		{"deployment/", "", "not kind/name"},
		{"/web", "", "not kind/name"},
		{"deployment/Web_1", "", "not a valid object name"},
	}
	for _, tt := range tests {
		r, err := ParseRef(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || r.String() != tt.want {
			t.Errorf("%q: %v %v, want %s", tt.in, r, err, tt.want)
		}
	}
}

// The specs reject bad input with exit 2 before connecting to any cluster.
func TestSpecUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		spec step.Spec
		args []string
		want int
		msg  string
	}{
		{"bad selector", ScaleDownSpec(), []string{"--selector", "app in (a"}, 2, "--selector"},
		{"bad kind", ScaleDownSpec(), []string{"--workload", "replicaset/web"}, 2, "replicaset"},
		{"bad kind from env", ScaleDownSpec(), []string{}, 2, "unknown kind"},
		{"nothing chosen", ScaleDownSpec(), []string{}, 2, "pass --selector and/or --workload"},
		{"negative timeout", ScaleDownSpec(), []string{"--workload", "deploy/web", "--timeout", "-5s"}, 2, "--timeout"},
		{"bad namespace", ScaleDownSpec(), []string{"--workload", "deploy/web", "--namespace", "Not_OK"}, 2, "--namespace"},
		{"bad database key", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-uid", "u", "--database-secret", "shop-db/a b"}, 2, "is not a Secret key"},
		{"bad database Secret", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-uid", "u", "--database-secret", "Shop/url"}, 2, "is not a Secret name"},
		{"database twice", ScaleRestoreSpec(), []string{"--only-run-uid", "u", "--supersede-database", "a/url+a/url"}, 2, "twice: give each database once"},
		{"restore bad selector", ScaleRestoreSpec(), []string{"--selector", "=x"}, 2, "--selector"},
		{"restore zero timeout", ScaleRestoreSpec(), []string{"--timeout", "0s"}, 2, "--timeout"},
		{"restore unknown flag", ScaleRestoreSpec(), []string{"--replicas", "3"}, 2, "replicas"},
		{"restore zero ready timeout", ScaleRestoreSpec(), []string{"--wait-ready", "--ready-timeout", "0s"}, 2, "--ready-timeout"},
		{"restore multi-line run uid", ScaleRestoreSpec(), []string{"--only-run-uid", "a\nb"}, 2, "--only-run-uid"},
		{"multi-line run uid", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-uid", "a\nb"}, 2, "--run-uid"},
		// the holder list's separators, a tab among them: the uid stands in a
		// held-by entry and in plan's superseded-holds list, which refuses a tab
		{"run uid with a tab", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-uid", "a\tb"}, 2, "--run-uid"},
		{"restore run uid with a tab", ScaleRestoreSpec(), []string{"--only-run-uid", "a\tb"}, 2, "--only-run-uid"},
		{"run uid with a colon", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-uid", "a:b"}, 2, "--run-uid"},
		{"run created not a time", ScaleDownSpec(), []string{"--workload", "deploy/web", "--run-created", "yesterday"}, 2, "is not a time in RFC 3339"},
		{"restore run created not a time", ScaleRestoreSpec(), []string{"--run-created", "1733560000"}, 2, "--run-created"},
		{"run uid on restore", ScaleRestoreSpec(), []string{"--run-uid", "x"}, 2, "run-uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "bad kind from env" {
				t.Setenv("CHARTREUSE_WORKLOAD", "job/x")
			}
			var out, errOut bytes.Buffer
			code := step.Run(context.Background(), tt.spec, append([]string{tt.spec.Name, "--skip-version-check"}, tt.args...), &out, &errOut)
			if code != tt.want || !strings.Contains(out.String()+errOut.String(), tt.msg) {
				t.Fatalf("code %d, want %d; output %s %s", code, tt.want, out.String(), errOut.String())
			}
		})
	}
}

func TestWorkloadFlagsFromEnvironment(t *testing.T) {
	t.Setenv("CHARTREUSE_WORKLOAD", "deploy/web,sts/db")
	t.Setenv("CHARTREUSE_SELECTOR", "tier=backend")
	so := &SelectOptions{RequireSome: true}
	spec := step.Spec{Name: "t", Options: []step.Options{so}, Run: func(context.Context, *step.Env) error { return nil }}
	var out, errOut bytes.Buffer
	if code := step.Run(context.Background(), spec, []string{"t", "--skip-version-check"}, &out, &errOut); code != 0 {
		t.Fatalf("code %d: %s", code, errOut.String())
	}
	s := so.Selection()
	if s.Selector.String() != "tier=backend" || len(s.Refs) != 2 || s.Refs[1].String() != "statefulset/db" {
		t.Fatalf("%+v", s)
	}
}

// TestRestoreWithoutWaitIgnoresReadyTimeout: a restore that does not wait is
// not refused over --ready-timeout (Argo's exit handler passes the run's
// parameter to restores that do not wait; refusing there left the application
// stopped after a good migration).
func TestRestoreWithoutWaitIgnoresReadyTimeout(t *testing.T) {
	for _, v := range []string{"0s", "-1s"} {
		var out, errOut bytes.Buffer
		code := step.Run(context.Background(), ScaleRestoreSpec(), []string{"scale-restore", "--skip-version-check", "--kubeconfig", "/nonexistent", "--ready-timeout", v}, &out, &errOut)
		if code == 2 || strings.Contains(errOut.String(), "--ready-timeout") {
			t.Errorf("--ready-timeout %s without --wait-ready: exit %d\n%s", v, code, errOut.String())
		}
	}
}
