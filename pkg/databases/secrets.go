package databases

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// maxKeysListed bounds the keys a message lists for a Secret lacking the entry's key.
const maxKeysListed = 10

// CheckSecrets reads, in namespace, the Secret of every entry, once per Secret, and
// refuses (failure.Permanent) a Secret that does not exist, or lacks an entry's key,
// or holds nothing under it, naming each such entry. A Secret's values are never
// kept: only whether each key holds something, and the key names. An API server
// that does not answer, or refuses the read, ends the check at once (transient or
// permanent, see kube.Classify).
func CheckSecrets(ctx context.Context, cs kubernetes.Interface, namespace string, entries []Entry) error {
	// which keys of each Secret hold something
	type secretKeys struct {
		found bool
		keys  map[string]bool // key -> holds a non-empty value
	}
	seen := map[string]*secretKeys{}
	for _, name := range Secrets(entries) {
		sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			seen[name] = &secretKeys{}
			continue
		case err != nil:
			return kube.Classify(err, "get", "secrets")
		}
		sk := &secretKeys{found: true, keys: map[string]bool{}}
		for k, v := range sec.Data {
			sk.keys[k] = len(v) > 0
		}
		sec.Data, sec.StringData = nil, nil
		seen[name] = sk
	}
	var bad problems
	for i, e := range entries {
		sk := seen[e.Secret]
		switch holds, has := sk.keys[e.Key]; {
		case !sk.found:
			bad.add("%s: Secret %s does not exist in namespace %s; create it, or correct \"secret\"", where(i, e.Name), e.Secret, namespace)
		case !has:
			bad.add("%s: Secret %s has no key %q (%s); correct \"key\"", where(i, e.Name), e.Secret, e.Key, listKeys(sk.keys))
		case !holds:
			bad.add("%s: key %q of Secret %s is empty; put the database URL in it", where(i, e.Name), e.Key, e.Secret)
		}
	}
	if len(bad) > 0 {
		return failure.Permanentf("databases: %s", bad.message())
	}
	return nil
}

// listKeys names a Secret's keys for a message (names only, never values).
func listKeys(keys map[string]bool) string {
	if len(keys) == 0 {
		return "it has no keys"
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	more := ""
	if len(names) > maxKeysListed {
		more = fmt.Sprintf(" and %d more", len(names)-maxKeysListed)
		names = names[:maxKeysListed]
	}
	return "its keys: " + strings.Join(names, ", ") + more
}
