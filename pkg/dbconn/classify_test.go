package dbconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestKindBySQLState: whether a retry can fix what the server reported.
func TestKindBySQLState(t *testing.T) {
	tests := []struct {
		code string
		want failure.Kind
		why  string
	}{
		{"25006", failure.Transient, "read-only transaction: a standby after a switchover; the next connection reaches the new primary"},
		{"57P05", failure.Transient, "idle_session_timeout ended the session; a new one works"},
		{"25P03", failure.Transient, "idle_in_transaction_session_timeout ended the session"},
		{"25P04", failure.Transient, "transaction_timeout (PostgreSQL 17), like statement_timeout"},
		{"57P04", failure.Transient, "database dropped while connecting, or a recovery conflict on a standby: waited for like 3D000"},
		{"72000", failure.Transient, "snapshot too old: a new snapshot works"},
		{"53000", failure.Transient, "insufficient resources, e.g. dynamic shared memory"},
		{"53100", failure.Transient, "disk full: space comes back when WAL and temporary files are removed"},
		{"53200", failure.Transient, "out of memory, shared or not"},
		{"53300", failure.Transient, "too many connections"},
		{"57P01", failure.Transient, "admin shutdown or pg_terminate_backend"},
		{"08006", failure.Transient, "connection failure"},
		{"40001", failure.Transient, "serialization failure"},
		{"53400", failure.Permanent, "a configured limit: the same work hits it again"},
		{"58000", failure.Permanent, "system error: an operator must look at the server"},
		{"58030", failure.Permanent, "I/O error: retrying writes on failing storage is no cure"},
		{"58P01", failure.Permanent, "a file the server needs is missing (e.g. an extension's library)"},
		{"XX000", failure.Permanent, "internal error"},
		{"XX001", failure.Permanent, "data corrupted"},
		{"55006", failure.Permanent, "object in use: also raised for the session's own open cursor, which recurs"},
		{"40003", failure.Permanent, "statement completion unknown: a retry could apply it twice"},
		{"28P01", failure.Permanent, "wrong password"},
		{"42601", failure.Permanent, "syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			err := fmt.Errorf("running: %w", &pgconn.PgError{Severity: "ERROR", Code: tt.code, Message: "m"})
			if got := Kind(err); got != tt.want {
				t.Errorf("Kind(SQLSTATE %s) = %v, want %v: %s", tt.code, got, tt.want, tt.why)
			}
		})
	}
}

// TestCertificateFailuresArePermanent: no wait makes a certificate trusted, valid
// for the host or current; every other network failure stays transient.
func TestCertificateFailuresArePermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want failure.Kind
	}{
		{"unknown authority (verify-ca)", x509.UnknownAuthorityError{}, failure.Permanent},
		{"unknown authority (verify-full)", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, failure.Permanent},
		{"host name mismatch", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "db"}}, failure.Permanent},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, failure.Permanent},
		{"other verification failure", &tls.CertificateVerificationError{Err: errors.New("x")}, failure.Permanent},
		{"one of several addresses", errors.Join(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, x509.HostnameError{Host: "db"}), failure.Permanent},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, failure.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Kind(fmt.Errorf("connecting: %w", tt.err)); got != tt.want {
				t.Errorf("Kind = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReadOnlyServerIsTransient makes the real server refuse writes as a standby
// does (default_transaction_read_only, set through the URL's options and on the
// database) and classifies the write's error as every step does.
func TestReadOnlyServerIsTransient(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	readOnlyDB, err := srv.CreateDatabase(ctx, "read_only")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), readOnlyDB) })
	if err := srv.Exec(ctx, "postgres", "ALTER DATABASE "+readOnlyDB+" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]string{
		"options in the URL":         srv.URL(db) + "&options=-c%20default_transaction_read_only%3Don",
		"ALTER DATABASE ... SET ...": srv.URL(readOnlyDB),
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := (&Options{URL: u, ConnectTimeout: 5 * time.Second}).Config(redact.New())
			if err != nil {
				t.Fatal(err)
			}
			conn, err := Connect(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE TABLE t (id int)")
			if SQLState(err) != ReadOnlySQLTransaction {
				t.Fatalf("SQLSTATE %q (%v), want %s", SQLState(err), err, ReadOnlySQLTransaction)
			}
			if code := failure.Code(Classify(err)); code != failure.CodeTransient {
				t.Fatalf("exit code %d for %v, want 75", code, err)
			}
		})
	}
}

// TestLostSessionIsTransient: the errors database/sql and pgx give for a session
// that ended under them (pg_terminate_backend, a reset) are worth another try.
func TestLostSessionIsTransient(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("failed to execute pg_try_advisory_lock: %w", driver.ErrBadConn),
		fmt.Errorf("taking the migration lock: %w", sql.ErrConnDone),
		fmt.Errorf("setting lock_timeout and statement_timeout: %w", pgconn.ErrConnClosed),
	} {
		if k := Kind(err); k != failure.Transient {
			t.Errorf("Kind(%v) = %v, want transient", err, k)
		}
	}
}

// TestRefusedConnectionSettingsArePermanent: the server answers, and the client
// refuses what it offers because of the connection string (sslmode=require or
// verify-full against a server without TLS, require_auth naming a method the
// server does not use, channel_binding=require without TLS). No wait changes
// either side, so the steps must stop at once (exit 1), not retry to their
// timeout (exit 75). target_session_attrs stays transient: a switchover can
// give the wanted role.
func TestRefusedConnectionSettingsArePermanent(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	ctx := context.Background()
	for _, tt := range []struct {
		query string
		code  int
	}{
		{"sslmode=require", failure.CodePermanent},
		{"sslmode=verify-full", failure.CodePermanent},
		{"sslmode=disable&require_auth=md5", failure.CodePermanent},
		{"sslmode=disable&channel_binding=require", failure.CodePermanent},
		{"sslmode=disable&target_session_attrs=read-only", failure.CodeTransient},
		{"sslmode=disable&target_session_attrs=standby", failure.CodeTransient},
	} {
		t.Run(tt.query, func(t *testing.T) {
			u := strings.Replace(srv.URL(db), "sslmode=disable", tt.query, 1)
			cfg, err := (&Options{URL: u, ConnectTimeout: 5 * time.Second}).Config(redact.New())
			if err != nil {
				t.Fatal(err)
			}
			conn, err := Connect(ctx, cfg)
			if conn != nil {
				conn.Close(ctx)
				t.Fatal("connected; the server must refuse or be refused")
			}
			if code := failure.Code(err); code != tt.code {
				t.Fatalf("exit code %d, want %d: %v", code, tt.code, err)
			}
			if tt.code == failure.CodePermanent && !strings.Contains(err.Error(), "not retried") {
				t.Fatalf("the message does not say it is not retried: %v", err)
			}
		})
	}
}

func TestCanceledBy(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want CancelCause
	}{
		{&pgconn.PgError{Code: QueryCanceled, Message: "canceling statement due to statement timeout"}, CancelStatementTimeout},
		{fmt.Errorf("applying: %w", &pgconn.PgError{Code: QueryCanceled, Message: "canceling statement due to user request"}), CancelRequest},
		{&pgconn.PgError{Code: QueryCanceled, Message: "Abbruch der Anweisung wegen Zeitüberschreitung"}, CancelUnknown}, // lc_messages=de
		{&pgconn.PgError{Code: LockNotAvailable, Message: "canceling statement due to lock timeout"}, CancelUnknown},
		{errors.New("canceling statement due to user request"), CancelUnknown}, // not from the server
	} {
		if got := CanceledBy(tc.err); got != tc.want {
			t.Errorf("CanceledBy(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
