package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
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
			if got := Code(tt.err); got != tt.want {
				t.Fatalf("Code(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestNilStaysNil(t *testing.T) {
	if AsPermanent(nil) != nil || AsTransient(nil) != nil || AsUsage(nil) != nil {
		t.Fatal("marking nil must return nil")
	}
}

func TestMessageIsUnchanged(t *testing.T) {
	err := Transientf("lock busy on %s", "db")
	if err.Error() != "lock busy on db" {
		t.Fatalf("message = %q", err.Error())
	}
}
