package manifests

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"

	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

// The EventListener's interceptors, in order after the signature check, and the
// repository and tag pattern they pin (test/e2e's tag-trigger scenario runs them).
var (
	triggerChain     = []string{"only-this-repository", "only-tag-creation", "only-matching-tags"}
	repositoryFilter = map[string]*regexp.Regexp{
		"github-tag": regexp.MustCompile(`^body\.repository\.full_name == '([^']+)'$`),
		"gitlab-tag": regexp.MustCompile(`^body\.project\.path_with_namespace == '([^']+)'$`),
	}
	tagFilter = regexp.MustCompile(`^extensions\.tag\.matches\('(\^[^']*\$)'\)$`)
)

// TestTriggersPinRepositoryAndTags: both triggers of the EventListener check, after the
// signature, the repository, that the push creates a tag, and the tag against an
// anchored pattern; both pin the same repository (the placeholder as shipped) and the
// same pattern (^v.*$, the glob v*).
func TestTriggersPinRepositoryAndTags(t *testing.T) {
	docs := docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "EventListener")
	if len(docs) != 1 {
		t.Fatalf("%d EventListeners, want 1", len(docs))
	}
	el := &triggersv1beta1.EventListener{}
	decodeStrict(t, docs[0], el)
	repos := map[string]string{}
	patterns := map[string]string{}
	for _, tr := range el.Spec.Triggers {
		var names []string
		filters := map[string]string{}
		for i, ic := range tr.Interceptors {
			if i == 0 {
				if ic.Ref.Name != "github" && ic.Ref.Name != "gitlab" {
					t.Errorf("trigger %s: first interceptor %s, want the signature check", tr.Name, ic.Ref.Name)
				}
				continue
			}
			names = append(names, *ic.Name)
			if ic.Ref.Name != "cel" {
				t.Errorf("trigger %s: interceptor %s is %s, want cel", tr.Name, *ic.Name, ic.Ref.Name)
			}
			for _, p := range ic.Params {
				if p.Name == "filter" {
					var f string
					if err := json.Unmarshal(p.Value.Raw, &f); err != nil {
						t.Fatal(err)
					}
					filters[*ic.Name] = f
				}
			}
		}
		if !slices.Equal(names, triggerChain) {
			t.Errorf("trigger %s: interceptors %v after the signature, want %v", tr.Name, names, triggerChain)
			continue
		}
		re := repositoryFilter[tr.Name]
		if re == nil {
			t.Errorf("unexpected trigger %s", tr.Name)
			continue
		}
		if m := re.FindStringSubmatch(filters["only-this-repository"]); m != nil {
			repos[tr.Name] = m[1]
		} else {
			t.Errorf("trigger %s: repository filter %q, want %s", tr.Name, filters["only-this-repository"], re)
		}
		if m := tagFilter.FindStringSubmatch(filters["only-matching-tags"]); m != nil {
			patterns[tr.Name] = m[1]
		} else {
			t.Errorf("trigger %s: tag filter %q, want %s", tr.Name, filters["only-matching-tags"], tagFilter)
		}
	}
	for name, r := range repos {
		if r != "<owner>/<repository>" {
			t.Errorf("trigger %s pins %q: the shipped listener pins none (the placeholder matches no repository)", name, r)
		}
	}
	for name, p := range patterns {
		if p != `^v.*$` {
			t.Errorf("trigger %s: tag pattern %q, want ^v.*$ (the glob v*)", name, p)
		}
	}
	if len(repos) != 2 || len(patterns) != 2 {
		t.Errorf("pinned repositories %v, patterns %v: want both triggers", repos, patterns)
	}
}
