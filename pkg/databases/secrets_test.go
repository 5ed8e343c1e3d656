package databases

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// CheckSecrets with a fake client: each Secret is read once, however many entries
// use it, and the API server's answers map to the exit codes.
func TestCheckSecretsReadsEachSecretOnce(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tenants", Namespace: "app"}, Data: map[string][]byte{"a": []byte("postgres://a"), "b": []byte("postgres://b")}},
	)
	entries, err := Parse(`[{"secret": "tenants", "key": "a"}, {"secret": "tenants", "key": "b"}]`, runDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSecrets(context.Background(), cs, "app", entries); err != nil {
		t.Fatal(err)
	}
	gets := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "secrets" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d gets of secrets, want 1", gets)
	}
}

func TestCheckSecretsAPIErrors(t *testing.T) {
	entries, err := Parse(`[{"secret": "a"}]`, runDefaults)
	if err != nil {
		t.Fatal(err)
	}
	gr := schema.GroupResource{Resource: "secrets"}
	for _, tc := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"forbidden", apierrors.NewForbidden(gr, "a", errors.New("no")), failure.CodePermanent, `permission denied: cannot get secrets`},
		{"unavailable", apierrors.NewServiceUnavailable("busy"), failure.CodeTransient, "temporarily unavailable"},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), failure.CodeTransient, "temporarily unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			err := CheckSecrets(context.Background(), cs, "app", entries)
			if failure.Code(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got exit %d %v, want %d with %q", failure.Code(err), err, tc.code, tc.want)
			}
		})
	}
}
