package dbconn

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// SQLSTATE codes the steps react to.
const (
	InvalidPassword          = "28P01"
	InvalidAuthorization     = "28000"
	InvalidCatalogName       = "3D000" // database does not exist
	CannotConnectNow         = "57P03" // starting up, shutting down, in recovery
	AdminShutdown            = "57P01"
	CrashShutdown            = "57P02"
	TooManyConnections       = "53300"
	LockNotAvailable         = "55P03" // lock_timeout
	QueryCanceled            = "57014" // statement_timeout or cancel
	SerializationFailure     = "40001"
	DeadlockDetected         = "40P01"
	InsufficientPrivilege    = "42501"
	UndefinedObject          = "42704" // e.g. SET ROLE to a missing role
	ReadOnlySQLTransaction   = "25006"
	IdleInTransactionTimeout = "25P03"
)

// SQLState returns the SQLSTATE of err, or "" when it is not a server error.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Kind classifies a database error: authentication and SQL errors are permanent,
// unreachable servers, startup/shutdown, lock and statement timeouts are transient.
// A missing database (3D000) is transient: an operator may still be creating it.
func Kind(err error) failure.Kind {
	if err == nil {
		return 0
	}
	if code := SQLState(err); code != "" {
		switch code {
		case CannotConnectNow, AdminShutdown, CrashShutdown, TooManyConnections,
			LockNotAvailable, QueryCanceled, SerializationFailure, DeadlockDetected,
			InvalidCatalogName, IdleInTransactionTimeout:
			return failure.Transient
		}
		if len(code) >= 2 && code[:2] == "08" { // connection exception class
			return failure.Transient
		}
		return failure.Permanent
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return failure.Transient
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failure.Transient
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		// A connect error with no server error and no network cause (e.g. the
		// server closed the connection during start-up) is worth another try.
		return failure.Transient
	}
	return failure.Permanent
}

// Classify marks err with its Kind (nil stays nil).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if Kind(err) == failure.Transient {
		return failure.AsTransient(err)
	}
	return failure.AsPermanent(err)
}
