package helmchart

import (
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	release "helm.sh/helm/v4/pkg/release/v1"
)

// hookObjects renders vals and returns the hooks by kind/name.
func hookObjects(t *testing.T, vals map[string]any) (*release.Release, map[string]object) {
	t.Helper()
	rel := mustRender(t, vals)
	out := map[string]object{}
	for _, h := range rel.Hooks {
		for _, o := range splitObjects(t, []byte(h.Manifest)) {
			out[o.key()] = o
		}
	}
	return rel, out
}

// TestHooksRendered: the hook Job and what it needs, per engine and mode: the events,
// weights and delete policy; the Job's arguments, deadline and security context; a
// Role limited to this revision's run; the run in the hook's ConfigMap equal to the
// release's.
func TestHooksRendered(t *testing.T) {
	for _, engine := range []string{"argo", "tekton"} {
		for _, mode := range []string{"post", "pre"} {
			t.Run(engine+"/"+mode, func(t *testing.T) {
				vals := set(set(ciValues(t, engine), "hook.mode", mode), "hook.timeout", "1h30m")
				rel, hooks := hookObjects(t, vals)
				wantEvents := []release.HookEvent{release.HookPostInstall, release.HookPostUpgrade}
				if mode == "pre" {
					wantEvents = []release.HookEvent{release.HookPostInstall, release.HookPreUpgrade}
				}
				var keys []string
				for _, h := range rel.Hooks {
					keys = append(keys, h.Kind+"/"+h.Name)
					if !slices.Equal(h.Events, wantEvents) {
						t.Errorf("%s/%s: events %v, want %v", h.Kind, h.Name, h.Events, wantEvents)
					}
					if !slices.Equal(h.DeletePolicies, []release.HookDeletePolicy{release.HookBeforeHookCreation}) {
						t.Errorf("%s/%s: delete policies %v, want before-hook-creation only", h.Kind, h.Name, h.DeletePolicies)
					}
					if want := map[bool]int{true: 0, false: -10}[h.Kind == "Job"]; h.Weight != want {
						t.Errorf("%s/%s: weight %d, want %d", h.Kind, h.Name, h.Weight, want)
					}
				}
				sameSet(t, "hooks", keys, []string{"ServiceAccount/shop-chartreuse-hook", "Role/shop-chartreuse-hook", "RoleBinding/shop-chartreuse-hook", "ConfigMap/shop-chartreuse-hook", "Job/shop-chartreuse-hook"})

				var job batchv1.Job
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(hooks["Job/shop-chartreuse-hook"].obj.Object, &job, true); err != nil {
					t.Fatalf("the Job: %v", err)
				}
				if job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 5400 {
					t.Errorf("activeDeadlineSeconds %v, want 5400 (hook.timeout 1h30m)", job.Spec.ActiveDeadlineSeconds)
				}
				if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 2 || job.Spec.PodFailurePolicy == nil || len(job.Spec.PodFailurePolicy.Rules) != 2 ||
					job.Spec.PodFailurePolicy.Rules[0].OnExitCodes == nil || !slices.Equal(job.Spec.PodFailurePolicy.Rules[0].OnExitCodes.Values, []int32{1, 2}) {
					t.Errorf("the Job retries: backoffLimit %v, podFailurePolicy %+v; want 2 retries, for exit 75 and evictions only", job.Spec.BackoffLimit, job.Spec.PodFailurePolicy)
				}
				pod := job.Spec.Template.Spec
				c := pod.Containers[0]
				if pod.ServiceAccountName != "shop-chartreuse-hook" || c.Image != rel.Config["image"] && c.Image != "ghcr.io/chartreuse-go/chartreuse:0.1.0" || !slices.Equal(c.Command, []string{"/usr/local/bin/helm-wait"}) {
					t.Errorf("Job runs %v from %s as %s", c.Command, c.Image, pod.ServiceAccountName)
				}
				for _, a := range []string{"--revision=1", "--namespace=shop", "--check-declared", "--manifest-version=0.1.0", "--run-file=/etc/chartreuse/run.yaml"} {
					if !slices.Contains(c.Args, a) {
						t.Errorf("Job args %v lack %s", c.Args, a)
					}
				}
				// The Job's own uid, so that a later install's hook never follows this
				// install's run (helmwait.HookAnnotation).
				if len(c.Env) != 1 || c.Env[0].Name != "CHARTREUSE_HOOK_UID" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef == nil ||
					c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.labels['batch.kubernetes.io/controller-uid']" {
					t.Errorf("Job env %+v, want CHARTREUSE_HOOK_UID from the pod's batch.kubernetes.io/controller-uid label", c.Env)
				}
				sc := c.SecurityContext
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
					t.Errorf("Job's security context: pod %+v, container %+v", pod.SecurityContext, sc)
				}

				var role rbacv1.Role
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(hooks["Role/shop-chartreuse-hook"].obj.Object, &role, true); err != nil {
					t.Fatalf("the Role: %v", err)
				}
				var rules []string
				for _, r := range role.Rules {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							rules = append(rules, res+":"+v+":"+strings.Join(r.ResourceNames, ","))
						}
					}
				}
				runs, defs := "workflows", "workflowtemplates"
				if engine == "tekton" {
					runs, defs = "pipelineruns", "pipelines"
				}
				want := []string{runs + ":create:", runs + ":get:shop-chartreuse-1", runs + ":list:shop-chartreuse-1", runs + ":watch:shop-chartreuse-1", defs + ":get:chartreuse"}
				if engine == "tekton" {
					want = append(want, "taskruns:get:")
				}
				sameSet(t, "the hook Role's rules", rules, want)

				_, releaseRun := runOf(t, rel)
				hookRun := hooks["ConfigMap/shop-chartreuse-hook"].obj.Object["data"].(map[string]any)["run.yaml"].(string)
				if hookRun != string(releaseRun) {
					t.Errorf("the hook's run differs from the release's:\n%s", firstDifference(hookRun, string(releaseRun)))
				}
				for _, w := range []string{"shop-chartreuse-hook (" + mode + " mode)", "hook.timeout = 1h30m (5400s)", "helm upgrade --timeout"} {
					if !strings.Contains(rel.Info.Notes, w) {
						t.Errorf("NOTES do not say %q:\n%s", w, rel.Info.Notes)
					}
				}
			})
		}
	}
}

// TestHookBudget: the NOTES' worst case is the sum of the steps' timeouts.
func TestHookBudget(t *testing.T) {
	// argo defaults: 2m pull + 5m plan (waiting for the database) + 10m scale + 5m lock
	// + 10m restore + 5m ready; no wait-for-db without Patroni.
	rel := mustRender(t, minimal("argo"))
	if !strings.Contains(rel.Info.Notes, "up to 2220s (37 min)") {
		t.Errorf("argo defaults: NOTES:\n%s", rel.Info.Notes)
	}
	// tekton, no wait for ready, Patroni on: 5m wait-for-db + 60s Patroni + 5m plan + 10m scale
	// + 5m lock + 10m restore + 1h gate.
	vals := set(set(minimal("tekton"), "workloads.waitReady", false), "patroni.enabled", true)
	rel = mustRender(t, vals)
	if !strings.Contains(rel.Info.Notes, "up to 5760s (96 min)") {
		t.Errorf("tekton: NOTES:\n%s", rel.Info.Notes)
	}
	// Sub-second and fractional durations round up to whole seconds.
	_, hooks := hookObjects(t, set(minimal("argo"), "hook.timeout", "1.5m500ms"))
	if d, _, _ := nestedInt(hooks["Job/shop-chartreuse-hook"].obj.Object, "spec", "activeDeadlineSeconds"); d != 91 {
		t.Errorf("hook.timeout 1.5m500ms: activeDeadlineSeconds %d, want 91", d)
	}
	// hook.enabled false: no hook.
	if rel := mustRender(t, set(minimal("argo"), "hook.enabled", false)); len(rel.Hooks) != 0 {
		t.Errorf("hook.enabled=false: %d hooks", len(rel.Hooks))
	}
}

func nestedInt(m map[string]any, path ...string) (int64, bool, error) {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return 0, false, nil
		}
		v = mm[p]
	}
	switch n := v.(type) {
	case int64:
		return n, true, nil
	case float64:
		return int64(n), true, nil
	}
	return 0, false, nil
}
