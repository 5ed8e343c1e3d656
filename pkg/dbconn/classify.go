package dbconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
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
	UndefinedTable           = "42P01"
	InvalidSchemaName        = "3F000" // e.g. CREATE TABLE in a schema that does not exist
	ReadOnlySQLTransaction   = "25006" // e.g. a standby after a switchover
	IdleInTransactionTimeout = "25P03"
	TransactionTimeout       = "25P04" // PostgreSQL 17
	DatabaseDropped          = "57P04"
	IdleSessionTimeout       = "57P05"
	InsufficientResources    = "53000"
	DiskFull                 = "53100"
	OutOfMemory              = "53200"
	SnapshotTooOld           = "72000"
)

// SQLState returns the SQLSTATE of err, or "" when it is not a server error.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// transientStates are the SQLSTATEs a later attempt can get past without anyone
// changing the input: the server or the session went away or is busy, a
// standby refused a write (a switchover: the next connection reaches the new
// primary), a timeout or conflict ended the transaction, resources ran short.
// A missing database (3D000, or 57P04 when it vanished while connecting) is
// waited for: an operator may still be creating it.
//
// Left permanent on purpose: 53400 (a configured limit: the same work hits it
// again), class 58 (I/O and system errors: an operator must look at the
// server), 55006 (object in use, also raised for the session's own cursor),
// 40003 (completion unknown: a retry could apply a statement twice), XX.
var transientStates = map[string]bool{
	CannotConnectNow: true, AdminShutdown: true, CrashShutdown: true,
	DatabaseDropped: true, IdleSessionTimeout: true,
	TooManyConnections: true, InsufficientResources: true, DiskFull: true, OutOfMemory: true,
	LockNotAvailable: true, QueryCanceled: true, SerializationFailure: true, DeadlockDetected: true,
	InvalidCatalogName: true, IdleInTransactionTimeout: true, TransactionTimeout: true,
	ReadOnlySQLTransaction: true, SnapshotTooOld: true,
}

// Kind classifies a database error: authentication, SQL and certificate errors
// are permanent; unreachable servers, the states in transientStates, lock and
// statement timeouts are transient.
func Kind(err error) failure.Kind {
	if err == nil {
		return 0
	}
	if code := SQLState(err); code != "" {
		if transientStates[code] || code[:min(2, len(code))] == "08" { // 08: connection exception
			return failure.Transient
		}
		return failure.Permanent
	}
	// Before the network cases: the handshake failure arrives wrapped in a
	// connect error, but no wait makes a certificate trusted or valid.
	if CertificateProblem(err) != "" {
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
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// The session ended under the client (terminated, reset): a new one may work.
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, pgconn.ErrConnClosed),
		pgconn.SafeToRetry(err):
		return failure.Transient
	}
	if refusedByClient(err) {
		return failure.Permanent
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		// A server that closed the connection during start-up gave io.EOF above;
		// what is left is a target_session_attrs check (refusedByClient): a
		// switchover can give the wanted role.
		return failure.Transient
	}
	return failure.Permanent
}

// refusedByClient reports a connect error in which the server answered and the
// client turned it down because of the connection settings: sslmode=require or
// verify-* against a server without TLS, require_auth naming a method the
// server does not use, channel_binding=require without TLS, a SCRAM exchange
// that failed on the client. No server error, network error, timeout or EOF is
// in it (Kind looked for those first), and no ValidateConnect ran — pgx returns
// these as plain text errors, so the shape of the error decides, not its words.
// No wait changes either side: an operator fixes the settings or the server.
func refusedByClient(err error) bool {
	var connErr *pgconn.ConnectError
	if !errors.As(err, &connErr) || SQLState(err) != "" {
		return false
	}
	return connErr.Config == nil || connErr.Config.ValidateConnect == nil
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

// CertificateProblem says what is wrong with the server's TLS certificate when err
// is a verification failure (sslmode=verify-ca or verify-full), else "".
func CertificateProblem(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's TLS certificate is signed by an unknown authority: sslrootcert must hold the CA that signed it"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's TLS certificate is not valid for the host name %q: connect with a name the certificate holds, or fix the certificate", hostname.Host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's TLS certificate or its CA has expired or is not valid yet: renew it (or fix the clock)"
	case errors.As(err, &invalid):
		return "the server's TLS certificate is not valid for this use: fix the certificate"
	case errors.As(err, &verify):
		return "the server's TLS certificate failed verification: fix the certificate or sslrootcert"
	}
	return ""
}

// Explain puts a connection error into words an operator acts on: a database not
// created yet, wrong credentials, a server starting or full. The kind (transient
// or permanent) stays the one Classify decided, by SQLSTATE or network error.
func Explain(cfg *pgx.ConnConfig, err error) error {
	return explain(cfg.User, cfg.Database, err)
}

// ExplainConnect is Explain for a connection database/sql opened, whose
// settings are not at hand: the user and database come from the connect error,
// and a connection the client refused for its settings says what to fix.
func ExplainConnect(err error) error {
	var connErr *pgconn.ConnectError
	if !errors.As(err, &connErr) || connErr.Config == nil {
		return err
	}
	if problem := CertificateProblem(err); problem != "" {
		return fmt.Errorf("%s (not retried): %w", problem, err)
	}
	if Kind(err) == failure.Permanent && refusedByClient(err) {
		return fmt.Errorf("%s: %w", refusedHint, err)
	}
	return explain(connErr.Config.User, connErr.Config.Database, err)
}

// refusedHint is what an operator does about a connection refusedByClient.
const refusedHint = "the connection settings and the server do not agree (fix sslmode, require_auth or channel_binding, or the server; not retried)"

func explain(user, database string, err error) error {
	switch SQLState(err) {
	case InvalidCatalogName:
		return fmt.Errorf("database %q does not exist yet (an operator may still be creating it): %w", database, err)
	case InvalidPassword:
		return fmt.Errorf("authentication failed for user %q: wrong password or no such role; fix the credentials (not retried): %w", user, err)
	case InvalidAuthorization:
		return fmt.Errorf("user %q may not connect (pg_hba.conf rejects it or the role cannot log in; not retried): %w", user, err)
	case CannotConnectNow:
		return fmt.Errorf("the server is starting up, shutting down or in recovery: %w", err)
	case TooManyConnections:
		return fmt.Errorf("the server has no free connection slots: %w", err)
	}
	return err
}

// CancelCause is why the server cancelled a statement: PostgreSQL raises
// QueryCanceled (57014) for each cause alike and names the cause only in the
// message.
type CancelCause int

const (
	// CancelUnknown: not a QueryCanceled error, or a message this package does
	// not know (a server whose lc_messages translates it); callers keep their
	// rule for 57014 as a whole.
	CancelUnknown CancelCause = iota
	// CancelStatementTimeout: statement_timeout expired; a retry of the same
	// statement under the same setting stops the same way.
	CancelStatementTimeout
	// CancelRequest: a cancel request (pg_cancel_backend from another session,
	// or a client's own); the statement may pass when run again.
	CancelRequest
)

// CanceledBy reads err's CancelCause from the server's message (the texts of
// PostgreSQL's ProcessInterrupts, untranslated). This is the one place the
// steps read a server message: the SQLSTATE cannot tell the causes apart.
func CanceledBy(err error) CancelCause {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != QueryCanceled {
		return CancelUnknown
	}
	switch pgErr.Message {
	case "canceling statement due to statement timeout":
		return CancelStatementTimeout
	case "canceling statement due to user request":
		return CancelRequest
	}
	return CancelUnknown
}
