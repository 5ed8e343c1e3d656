// Package errcheck holds the checks the source packages' tests make on a
// returned error: its exit code, its sentinel, the words it must hold, and
// that no secret shows in it however it is printed. It is a leaf: it imports
// only pkg/failure.
package errcheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// NoSecret fails the test if any of secrets shows in err: in its message as
// %v, %+v or %#v prints it, or in the message of any error of its chain.
func NoSecret(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	var texts []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		texts = append(texts, fmt.Sprintf("%T %s", e, e.Error()))
	}
	texts = append(texts, fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	for _, s := range texts {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Fatalf("a secret shows in the error: %s", s)
			}
		}
	}
}

// Want is what an error must be.
type Want struct {
	Code    int      // its exit code (failure.Code)
	Is      error    // a sentinel it wraps; nil for none
	Parts   []string // words its message holds
	Secrets []string // what must not show in it (see NoSecret)
}

// Expect checks err against want; a nil err fails the test at once.
func Expect(t testing.TB, err error, want Want) {
	t.Helper()
	NoSecret(t, err, want.Secrets...)
	if err == nil {
		t.Fatalf("no error; want exit %d", want.Code)
	}
	t.Logf("exit %d: %v", failure.Code(err), err)
	if got := failure.Code(err); got != want.Code {
		t.Errorf("exit code %d, want %d: %v", got, want.Code, err)
	}
	if want.Is != nil && !errors.Is(err, want.Is) {
		t.Errorf("error is not %v: %v", want.Is, err)
	}
	for _, p := range want.Parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error lacks %q: %v", p, err)
		}
	}
}
