package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// unpinnedRepository is what tekton/triggers/eventlistener.yaml ships in its
// only-this-repository filters: no repository has that name.
const unpinnedRepository = "<owner>/<repository>"

// pinTriggerRepository does what a user does to the EventListener chartreuse in ns
// before exposing it: replace the placeholder repository in the only-this-repository
// filter of every trigger (GitHub and GitLab) with the repository's full name.
func pinTriggerRepository(t *testing.T, tk *engines.Tekton, ns, repo string) {
	t.Helper()
	els := tk.Triggers.TriggersV1beta1().EventListeners(ns)
	el, err := els.Get(t.Context(), "chartreuse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pinned := 0
	for i := range el.Spec.Triggers {
		for _, ic := range el.Spec.Triggers[i].Interceptors {
			if ic.Name == nil || *ic.Name != "only-this-repository" {
				continue
			}
			for j := range ic.Params {
				var filter string
				if ic.Params[j].Name != "filter" || json.Unmarshal(ic.Params[j].Value.Raw, &filter) != nil || !strings.Contains(filter, unpinnedRepository) {
					continue
				}
				if ic.Params[j].Value.Raw, err = json.Marshal(strings.ReplaceAll(filter, unpinnedRepository, repo)); err != nil {
					t.Fatal(err)
				}
				pinned++
			}
		}
	}
	if pinned != 2 {
		t.Fatalf("EventListener chartreuse: pinned %d filters, want the GitHub and the GitLab one", pinned)
	}
	if _, err := els.Update(t.Context(), el, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("EventListener chartreuse pinned to %s", strconv.Quote(repo))
}
