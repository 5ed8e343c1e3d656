package ocisource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// Errors, for errors.Is. Each comes wrapped in a failure.Error with its kind,
// the same for every error of a group below.

// Usage errors (exit 2): what was given cannot be used as it stands.
var (
	// ErrInvalidReference: the image reference, the digest or the directory does
	// not parse.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrInvalidAuth: the Secret's registry credentials cannot be used as given.
	ErrInvalidAuth = errors.New("unusable registry credentials")
)

// Permanent errors (exit 1): the registry answered, or holds the image so, and
// trying again gets the same.
var (
	// ErrImageNotFound: the registry has no such repository, tag or manifest, or
	// lacks one of the image's blobs.
	ErrImageNotFound = errors.New("image not found")
	// ErrAuth: the registry asks for credentials, or refused those given.
	ErrAuth = errors.New("registry authentication failed")
	// ErrSubdirNotFound: the image has no such directory.
	ErrSubdirNotFound = errors.New("directory not found in image")
	// ErrRefused: the image's files under the directory are not only regular
	// files that stay inside it: a link out of it, a "..", a device, too many
	// entries or bytes.
	ErrRefused = errors.New("image content refused")
	// ErrCorrupt: a blob the registry sent does not match its digest (the
	// registry stores it so).
	ErrCorrupt = errors.New("blob does not match its digest")
	// ErrNoPlatform: an index without a manifest for linux/GOARCH and more than one
	// for other platforms.
	ErrNoPlatform = errors.New("no manifest for this platform")
	// ErrPlainHTTP: the registry can only be reached over plain http, which is
	// allowed only with Insecure or on the loopback interface.
	ErrPlainHTTP = errors.New("plain http not allowed")
)

// ErrStalled: the registry sent nothing for a while in the middle of an
// answer, or gave none (transient, exit 75).
var ErrStalled = errors.New("registry stalled")

// plainHTTPError is what the transport answers instead of sending a request over
// plain http that Insecure does not allow.
type plainHTTPError struct{ host string }

func (e *plainHTTPError) Error() string {
	return "not sending a request to " + e.host + " over plain http"
}

// digestError: the bytes of a blob do not hash to its digest.
type digestError struct {
	digest, got string
	size, want  int64
}

func (e *digestError) Error() string {
	if e.size != e.want {
		return fmt.Sprintf("blob %s: %d bytes received, %d described", e.digest, e.size, e.want)
	}
	return fmt.Sprintf("blob %s: the bytes received hash to %s", e.digest, e.got)
}

// maskedError carries a message with the secrets masked and keeps the chain.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

func (a Auth) redactor() *redact.Redactor {
	r := redact.New()
	for _, e := range a.entries {
		for _, s := range e.secrets() {
			r.Add(s)
		}
	}
	return r
}

// mask replaces every form of the credentials in err's message, keeping the chain
// for errors.Is and failure.KindOf.
func (a Auth) mask(err error) error {
	if err == nil || a.Anonymous() {
		return err
	}
	msg := err.Error()
	if masked := a.redactor().String(msg); masked != msg {
		return &maskedError{msg: masked, err: err}
	}
	return err
}

// answerError is an error answer of the registry with the credentials masked
// (a registry or a proxy in front of it may echo the request, Authorization
// header included). Its cause is a copy of the answer without the body, so that no
// error of the chain prints what the registry echoed.
type answerError struct {
	msg    string
	answer *transport.Error
}

func (e *answerError) Error() string { return e.msg }
func (e *answerError) Unwrap() error { return e.answer }

// scrub replaces an error holding a registry's answer by an answerError.
func (a Auth) scrub(err error, te *transport.Error) error {
	r := a.redactor()
	answer := &transport.Error{StatusCode: te.StatusCode, Request: te.Request}
	for _, d := range te.Errors {
		answer.Errors = append(answer.Errors, transport.Diagnostic{Code: d.Code, Message: r.String(d.Message)})
	}
	return &answerError{msg: r.String(err.Error()), answer: answer}
}

// classify gives an error of go-containerregistry its kind and a message saying
// what was done to what. what names the action and the reference ("reading the
// manifest of host/repo:tag").
func (i Image) classify(ctx context.Context, what, host, repo string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
			return failure.Transientf("%s: %s: %w", what, host, cause)
		}
		return failure.Transientf("%s: %w (%v)", what, ctx.Err(), err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return i.classifyAnswer(what, host, repo, te, i.Auth.scrub(err, te))
	}
	var pe *plainHTTPError
	if errors.As(err, &pe) && !networkError(err) {
		return failure.Permanentf("%s: %w: %s answers plain http only (not https); set insecure for a registry without TLS: %w",
			what, ErrPlainHTTP, host, err)
	}
	if certError(err) {
		return failure.Permanentf("%s: the TLS certificate of %s is not trusted: %w", what, host, err)
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return failure.Permanentf("%s: no such host %s (check the image reference): %w", what, host, err)
	}
	if networkError(err) {
		return failure.Transientf("%s: %s cannot be reached or dropped the connection: %w", what, host, err)
	}
	return failure.Permanentf("%s: %w", what, err)
}

// classifyAnswer classifies an error answer of the registry: by its error codes
// first (they say what is missing or refused), then by the status (a HEAD answer
// has no body).
func (i Image) classifyAnswer(what, host, repo string, te *transport.Error, err error) error {
	codes := make([]transport.ErrorCode, len(te.Errors))
	for n, d := range te.Errors {
		codes[n] = d.Code
	}
	has := func(cs ...transport.ErrorCode) bool {
		return slices.ContainsFunc(codes, func(c transport.ErrorCode) bool { return slices.Contains(cs, c) })
	}
	status := te.StatusCode
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		has(transport.TooManyRequestsErrorCode, transport.UnavailableErrorCode):
		return failure.Transientf("%s: %s answered %d, try again later: %w", what, host, status, err)
	case has(transport.UnauthorizedErrorCode, transport.DeniedErrorCode),
		status == http.StatusUnauthorized, status == http.StatusForbidden:
		return failure.Permanentf("%s: %w: %s: %w", what, ErrAuth, i.Auth.hint(host, repo), err)
	case has(transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode),
		status == http.StatusNotFound:
		return failure.Permanentf("%s: %w: %w", what, ErrImageNotFound, err)
	}
	return failure.Permanentf("%s: %s answered %d: %w", what, host, status, err)
}

func certError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// networkError: the connection failed, broke or timed out; a later attempt can
// work.
func networkError(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
