package gitsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// Errors, for errors.Is. Each comes wrapped in a failure.Error with its kind,
// the same for every error of a group below.

// Usage errors (exit 2): what was given cannot be used as it stands.
var (
	// ErrInvalidURL: the repository URL is not one Fetch can use.
	ErrInvalidURL = errors.New("invalid repository URL")
	// ErrAbbreviatedSHA: a revision looks like a shortened commit SHA.
	ErrAbbreviatedSHA = errors.New("abbreviated commit SHA")
	// ErrInvalidRevision: a revision no tag or branch can be named.
	ErrInvalidRevision = errors.New("invalid revision")
	// ErrAmbiguousRevision: a tag and a branch of that name point at different
	// commits.
	ErrAmbiguousRevision = errors.New("ambiguous revision")
	// ErrInvalidAuth: the Secret's files cannot be used as given, or do not fit the
	// URL's scheme.
	ErrInvalidAuth = errors.New("unusable git credentials")
)

// Permanent errors (exit 1): the server answered, and trying again gets the
// same answer.
var (
	// ErrRevisionNotFound: no tag or branch of that name, or a commit the server
	// does not have or does not serve.
	ErrRevisionNotFound = errors.New("revision not found")
	// ErrSubdirNotFound: the commit has no such directory.
	ErrSubdirNotFound = errors.New("directory not found in commit")
	// ErrAuth: the server asks for credentials, or refused those given.
	ErrAuth = errors.New("authentication failed")
	// ErrRepositoryNotFound: the server has no such repository, or the credentials
	// cannot see it.
	ErrRepositoryNotFound = errors.New("repository not found")
)

// ErrStalled: the server stopped sending, or sent only progress messages, for
// the stall timeout (transient, exit 75).
var ErrStalled = errors.New("the server stopped sending")

// MovedError: the commit resolved at the start of the run can no longer be fetched
// by its SHA, and the revision the user named points elsewhere now (permanent). Got
// is empty when the revision no longer exists.
type MovedError struct {
	Revision string // as the user gave it; "" is the remote HEAD
	Want     string // the commit resolved at the start of the run
	Got      string // what Revision points at now
}

func (e *MovedError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("%s no longer exists, and the server does not serve %s (resolved from it at the start of this run) by its SHA; start a new run",
			revisionName(e.Revision), e.Want)
	}
	return fmt.Sprintf("%s now points at %s, not at %s resolved from it at the start of this run, and the server does not serve %s by its SHA; start a new run to use %s",
		revisionName(e.Revision), e.Got, e.Want, e.Want, e.Got)
}

func revisionName(rev string) string {
	if rev == "" || rev == "HEAD" {
		return "the remote HEAD"
	}
	return fmt.Sprintf("revision %q", rev)
}

// refusedError: the server answered the fetch, but not with the objects asked for
// (it refused a want, or sent something unreadable). Fetch then falls back to the
// revision's ref. go-git reports the server's refusal ("ERR upload-pack: not our
// ref ...") only as text (common.DecodeUploadPackResponse formats it with %s), so it
// is recognised as "not a transport failure", never by its wording.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// maskedError carries a message with the secrets masked and keeps the chain.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// mask replaces every form of the credentials in err's message, keeping the chain
// for errors.Is and failure.KindOf.
func (a Auth) mask(err error) error {
	if err == nil {
		return nil
	}
	r := redact.New()
	for _, s := range a.Secrets() {
		r.Add(s)
	}
	msg := err.Error()
	if masked := r.String(msg); masked != msg {
		return &maskedError{msg: masked, err: err}
	}
	return err
}

// walk visits err and its causes, including those go-git wraps without Unwrap
// (plumbing.UnexpectedError, plumbing.PermanentError), until visit says stop.
func walk(err error, visit func(error) bool) bool {
	for err != nil {
		if visit(err) {
			return true
		}
		switch e := err.(type) {
		case *plumbing.UnexpectedError:
			err = e.Err
			continue
		case *plumbing.PermanentError:
			err = e.Err
			continue
		case interface{ Unwrap() []error }:
			for _, c := range e.Unwrap() {
				if walk(c, visit) {
					return true
				}
			}
			return false
		}
		err = errors.Unwrap(err)
	}
	return false
}

// has reports whether target is among err's causes.
func has(err, target error) bool {
	return walk(err, func(e error) bool { return e == target })
}

// find returns the first cause of type T.
func find[T any](err error) (T, bool) {
	var found T
	ok := walk(err, func(e error) bool {
		t, is := e.(T)
		if is {
			found = t
		}
		return is
	})
	return found, ok
}

// classify gives a transport error its kind and a message naming what was done
// and to which repository. What go-git cannot tell apart from a refusal by the
// server comes back as *refusedError (permanent).
func (c *conn) classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	prefix := what + " " + c.where
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
			return failure.Transientf("%s: %w", prefix, cause)
		}
		return failure.Transientf("%s: %w (%v)", prefix, ctx.Err(), err)
	}
	switch {
	case has(err, transport.ErrAuthenticationRequired), has(err, transport.ErrAuthorizationFailed):
		if to := c.guard.redirected(); to != "" && !c.auth.Anonymous() {
			return failure.Permanentf("%s: %w: the server redirected to %s, and credentials are never sent to another host: if the repository moved there, give its new URL: %w",
				prefix, ErrAuth, to, err)
		}
		return failure.Permanentf("%s: %w: %s: %w", prefix, ErrAuth, c.auth.hint(c.ep.Protocol), err)
	case has(err, transport.ErrRepositoryNotFound):
		if to := c.guard.redirected(); to != "" && !c.auth.Anonymous() {
			return failure.Permanentf("%s: %w at %s, where the server redirected (credentials are never sent to another host: if the repository moved there, give its new URL): %w",
				prefix, ErrRepositoryNotFound, to, err)
		}
		return failure.Permanentf("%s: %w (a private repository answers so too when the credentials cannot see it; %s): %w",
			prefix, ErrRepositoryNotFound, c.auth.used(), err)
	case has(err, transport.ErrEmptyRemoteRepository):
		return failure.Permanentf("%s: %w: the repository is empty: %w", prefix, ErrRevisionNotFound, err)
	}
	if _, ok := find[*rateLimitError](err); ok {
		return failure.Transientf("%s: %w", prefix, err)
	}
	if _, ok := find[*notGitError](err); ok {
		return failure.Permanentf("%s: %w", prefix, err)
	}
	if he, ok := find[*githttp.Err](err); ok {
		code := he.StatusCode()
		if code >= 500 || code == 429 || code == 408 {
			return failure.Transientf("%s: the server answered %d, try again later: %w", prefix, code, err)
		}
		return failure.Permanentf("%s: the server answered %d: %w", prefix, code, err)
	}
	if _, ok := find[*knownhosts.KeyError](err); ok {
		return failure.Permanentf("%s: %w: the server's host key is not in known_hosts, or differs from it (check known_hosts in the Secret, e.g. with ssh-keyscan, and that nobody is in between): %w",
			prefix, ErrAuth, err)
	}
	if certError(err) {
		return failure.Permanentf("%s: the server's TLS certificate is not trusted: %w", prefix, err)
	}
	if de, ok := find[*net.DNSError](err); ok && de.IsNotFound {
		return failure.Permanentf("%s: no such host (check the URL): %w", prefix, err)
	}
	if networkError(err) {
		return failure.Transientf("%s: the server cannot be reached or dropped the connection: %w", prefix, err)
	}
	if c.ep.Protocol == "git" && silentClose(err) {
		return failure.Transientf("%s: the server closed the connection without a word (dropped, or a git daemon without --informative-errors that does not export the repository): %w", prefix, err)
	}
	return failure.AsPermanent(&refusedError{fmt.Errorf("%s: %w", prefix, err)})
}

// silentClose: go-git's answer when a git:// server closed the connection before
// sending anything. It then waits 10 s for an error line that git:// cannot carry
// and returns ErrTimeoutExceeded from its internal transport package, which no
// caller can import: its text is the only handle go-git gives on it.
func silentClose(err error) bool {
	return walk(err, func(e error) bool {
		_, isNet := e.(net.Error)
		return !isNet && e.Error() == "timeout exceeded" && errors.Unwrap(e) == nil
	})
}

func certError(err error) bool {
	return walk(err, func(e error) bool {
		switch e.(type) {
		case *tls.CertificateVerificationError, x509.UnknownAuthorityError, x509.HostnameError, x509.CertificateInvalidError:
			return true
		}
		return false
	})
}

// networkError: the connection failed or broke; a later attempt can work.
func networkError(err error) bool {
	return walk(err, func(e error) bool {
		if e == io.EOF || e == io.ErrUnexpectedEOF || e == context.DeadlineExceeded || e == context.Canceled {
			return true
		}
		switch e := e.(type) {
		case *net.OpError, *net.DNSError:
			return true
		case syscall.Errno:
			switch e {
			case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
				syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
				return true
			}
		case net.Error:
			return e.Timeout()
		}
		return false
	})
}
