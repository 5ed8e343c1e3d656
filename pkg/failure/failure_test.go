package failure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestCode(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, CodeOK},
		{"plain error is permanent", base, CodePermanent},
		{"permanent", AsPermanent(base), CodePermanent},
		{"usage", Usagef("bad flag %q", "x"), CodeUsage},
		{"transient", AsTransient(base), CodeTransient},
		{"wrapped transient", fmt.Errorf("outer: %w", AsTransient(base)), CodeTransient},
		{"innermost wins", AsPermanent(fmt.Errorf("ctx: %w", AsTransient(base))), CodeTransient},
		{"cancelled context", fmt.Errorf("waiting: %w", context.Canceled), CodeTransient},
		{"deadline", context.DeadlineExceeded, CodeTransient},
		{"classified beats context", AsPermanent(fmt.Errorf("x: %w", context.Canceled)), CodePermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Code(tt.err); got != tt.want {
				t.Fatalf("Code(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestNilStaysNil(t *testing.T) {
	t.Parallel()
	if AsPermanent(nil) != nil || AsTransient(nil) != nil || AsUsage(nil) != nil {
		t.Fatal("marking nil must return nil")
	}
}

func TestMessageIsUnchanged(t *testing.T) {
	t.Parallel()
	err := Transientf("lock busy on %s", "db")
	if err.Error() != "lock busy on db" {
		t.Fatalf("message = %q", err.Error())
	}
}

// Join: the combined kind decides, whatever the first error's kind; every error
// stays reachable with errors.Is; wrapping keeps the combined kind.
func TestJoin(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("the cause")
	perm := Permanentf("bad value: %w", sentinel)
	trans := Transientf("unreachable")
	usage := Usagef("bad flag")
	tests := []struct {
		name string
		errs []error
		want Kind
	}{
		{"transient after a permanent", []error{perm, trans}, Transient},
		{"permanent only", []error{perm, Permanentf("other")}, Permanent},
		{"usage and permanent", []error{perm, usage}, Usage},
		{"usage and transient", []error{usage, trans}, Transient},
		{"unclassified counts as permanent", []error{errors.New("plain"), perm}, Permanent},
		{"a cancelled context is transient", []error{perm, context.Canceled}, Transient},
		// A restore that may have been done must not be retried because another
		// workload failed transiently (found by an attack).
		{"final wins over transient", []error{trans, Final(Permanentf("may have been done"))}, Permanent},
		{"final wins over usage", []error{usage, Final(Permanentf("may have been done"))}, Permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Join("2 things failed", tt.errs...)
			if got := KindOf(err); got != tt.want {
				t.Fatalf("KindOf = %v, want %v", got, tt.want)
			}
			if got := KindOf(fmt.Errorf("outer: %w", err)); got != tt.want {
				t.Fatalf("wrapped: KindOf = %v, want %v", got, tt.want)
			}
			if got, want := IsFinal(err), slices.ContainsFunc(tt.errs, IsFinal); got != want {
				t.Errorf("IsFinal = %v, want %v", got, want)
			}
			for _, e := range tt.errs {
				if !errors.Is(err, e) {
					t.Errorf("%v is not reachable with errors.Is", e)
				}
			}
			if want := "2 things failed; first: " + tt.errs[0].Error(); err.Error() != want {
				t.Errorf("message %q, want %q", err.Error(), want)
			}
		})
	}
	if !errors.Is(Join("x", perm, trans), sentinel) {
		t.Error("a cause inside one of the errors is not reachable")
	}
	if Join("none", nil, nil) != nil {
		t.Error("no errors joined is not nil")
	}
	if err := Join("one", nil, trans); err != trans {
		t.Errorf("one error is not returned as it is: %v", err)
	}
}
