package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Classify wraps err, returned by an API call doing verb on resource (e.g. "patch",
// "deployments.apps/scale"), with the failure kind the workflow needs:
//
//   - Forbidden, Unauthorized: permanent, naming the verb and resource to grant;
//   - NotFound, Invalid, BadRequest and other client errors: permanent;
//   - Conflict, ServerTimeout, Timeout, TooManyRequests, ServiceUnavailable,
//     InternalError and other 5xx, connection refused/reset, timeouts, EOF: transient;
//   - a cancelled or expired context: transient.
//
// Errors already classified keep their kind; nil stays nil.
func Classify(err error, verb, resource string) error {
	if err == nil {
		return nil
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	what := verb + " " + resource
	switch {
	case apierrors.IsForbidden(err):
		return failure.Permanentf("permission denied: cannot %s; grant verb %q on %q in the step's Role: %w", what, verb, resource, err)
	case apierrors.IsUnauthorized(err):
		return failure.Permanentf("%s: the API server rejected the credentials: %w", what, err)
	case apierrors.IsConflict(err):
		return failure.Transientf("%s: conflict with a concurrent change: %w", what, err)
	case serverBusy(err):
		return failure.Transientf("%s: API server temporarily unavailable: %w", what, err)
	case apierrors.IsNotFound(err):
		return failure.Permanentf("%s: %w", what, err)
	}
	if code := statusCode(err); code != 0 {
		if code >= 500 {
			return failure.Transientf("%s: API server error %d: %w", what, code, err)
		}
		return failure.Permanentf("%s: %w", what, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return failure.Transientf("%s: %w", what, err)
	}
	if IsUnreachable(err) {
		return failure.Transientf("%s: API server unreachable: %w", what, err)
	}
	return failure.Permanentf("%s: %w", what, err)
}

// serverBusy: the API server answered that it cannot do it now (a timeout, 429,
// 503, 500 and other unexpected server errors).
func serverBusy(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

func statusCode(err error) int32 {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		if s := st.Status(); s.Status == metav1.StatusFailure || s.Code != 0 {
			return s.Code
		}
	}
	return 0
}

// IsUnreachable reports whether err says the API server could not be reached or the
// connection broke: refused or reset connections, network timeouts, unexpected EOF.
func IsUnreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsTemporary || de.IsTimeout)
}

// IsUnavailable reports whether err says the API server did not answer the
// request now but may answer it later: unreachable (see IsUnreachable), or 429,
// a server timeout, 503, 500 and other 5xx. A change that failed so may still
// have been made.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if serverBusy(err) {
		return true
	}
	if code := statusCode(err); code >= 500 {
		return true
	}
	return IsUnreachable(err)
}

// IsServerError reports whether err is an answer of status 500 or above: the
// API server's own failure, or a gateway's before it.
func IsServerError(err error) bool { return statusCode(err) >= 500 }

// MayHaveBeenMade reports whether a change that failed with err may have been
// made all the same: the connection broke after the request went out, so its
// answer was lost, or the API server answered 504 (the request may still
// complete). Not when the connection could not even be opened, nor for an
// answer that refused the change.
func MayHaveBeenMade(err error) bool {
	if apierrors.IsTimeout(err) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	return statusCode(err) == 0 && IsUnreachable(err)
}

// Describe names a resource for Classify: "deployments.apps/scale" style.
func Describe(resource, group, subresource string) string {
	r := resource
	if group != "" {
		r += "." + group
	}
	if subresource != "" {
		r += "/" + subresource
	}
	return r
}
