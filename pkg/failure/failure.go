package failure

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Exit codes shared by every step binary.
const (
	CodeOK        = 0
	CodePermanent = 1
	CodeUsage     = 2
	CodeTransient = 75 // EX_TEMPFAIL
)

// Kind says how a workflow should react to an error.
type Kind int

const (
	// Permanent: bad input, SQL error, permission denied, incompatible version. Not retried.
	Permanent Kind = iota + 1
	// Usage: unknown flag, missing or invalid flag value. Not retried.
	Usage
	// Transient: timeout while waiting, lock busy, server unreachable, API conflict. Retried.
	Transient
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Usage:
		return "usage"
	case Transient:
		return "transient"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Code is the exit code for errors of this kind.
func (k Kind) Code() int {
	switch k {
	case Usage:
		return CodeUsage
	case Transient:
		return CodeTransient
	}
	return CodePermanent
}

// Error marks an error with its Kind. The innermost Error in a chain wins, so a
// classification made close to the cause is not overridden by outer wrapping.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func mark(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// AsPermanent marks err as permanent (nil stays nil).
func AsPermanent(err error) error { return mark(Permanent, err) }

// AsTransient marks err as transient (nil stays nil).
func AsTransient(err error) error { return mark(Transient, err) }

// AsUsage marks err as a usage error (nil stays nil).
func AsUsage(err error) error { return mark(Usage, err) }

// Permanentf formats a permanent error; %w wraps as with fmt.Errorf.
func Permanentf(format string, args ...any) error {
	return mark(Permanent, fmt.Errorf(format, args...))
}

// Transientf formats a transient error; %w wraps as with fmt.Errorf.
func Transientf(format string, args ...any) error {
	return mark(Transient, fmt.Errorf(format, args...))
}

// Usagef formats a usage error; %w wraps as with fmt.Errorf.
func Usagef(format string, args ...any) error {
	return mark(Usage, fmt.Errorf(format, args...))
}

// KindOf reports the kind of err. Unclassified errors are permanent, except that a
// cancelled or expired context (SIGTERM, a deadline) is transient: rerunning can finish.
func KindOf(err error) Kind {
	var inner *Error
	for e := err; e != nil; {
		var fe *Error
		if !errors.As(e, &fe) {
			break
		}
		inner = fe
		e = fe.Err
	}
	if inner != nil {
		return inner.Kind
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Transient
	}
	return Permanent
}

// Join combines errs (nils dropped; nil when none is left) into one error whose
// message is the summary and the first error, and whose kind is decided over
// all of them: permanent and final if any is marked by Final (a retry would do
// harm there, whatever it could finish elsewhere), else transient if any is (a
// retry can finish the rest), else usage if any is, else permanent. errors.Is
// and errors.As see every one of them; for KindOf the combined kind counts as
// the innermost, whatever the errors inside say. One error is returned as it is.
func Join(summary string, errs ...error) error {
	var kept []error
	for _, e := range errs {
		if e != nil {
			kept = append(kept, e)
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case 1:
		return kept[0]
	}
	j := &joined{kind: Permanent, msg: summary + "; first: " + kept[0].Error(), errs: kept}
	if slices.ContainsFunc(kept, IsFinal) {
		return j // IsFinal sees the one inside
	}
	for _, e := range kept {
		switch KindOf(e) {
		case Transient:
			j.kind = Transient
		case Usage:
			if j.kind != Transient {
				j.kind = Usage
			}
		}
	}
	return j
}

// joined is what Join returns.
type joined struct {
	kind Kind
	msg  string
	errs []error
}

func (j *joined) Error() string   { return j.msg }
func (j *joined) Unwrap() []error { return j.errs }

// As answers for *Error with the combined kind, before errors.As looks at the
// errors inside (whose own kinds must not decide).
func (j *joined) As(target any) bool {
	if t, ok := target.(**Error); ok {
		*t = &Error{Kind: j.kind, Err: errors.New(j.msg)}
		return true
	}
	return false
}

// finalError is a permanent error that an interruption does not make transient.
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

// Final marks err permanent even when the run was interrupted (SIGTERM, a
// deadline): a step turns failures after an interruption into transient ones,
// since a rerun can usually finish, but not one whose rerun would repeat work
// that cannot be undone (a migration without a transaction stopped partway).
func Final(err error) error {
	if err == nil {
		return nil
	}
	return finalError{mark(Permanent, err)}
}

// IsFinal reports whether err was marked by Final.
func IsFinal(err error) bool {
	var f finalError
	return errors.As(err, &f)
}

// Code maps err to the process exit code.
func Code(err error) int {
	if err == nil {
		return CodeOK
	}
	return KindOf(err).Code()
}
