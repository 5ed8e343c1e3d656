package dbconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// Options are the connection flags shared by wait-for-db, wait-patroni and migrate.
type Options struct {
	URL            string
	URLFile        string
	ConnectTimeout time.Duration
	// AppName is the application_name Config gives the sessions when the user set
	// none (in the URL, or PGAPPNAME): ApplicationName(run id, step). Empty:
	// "chartreuse".
	AppName string
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "database-url", Usage: "PostgreSQL URL or keyword/value DSN; prefer the environment variable or --database-url-file fed from a Secret. Empty: the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE... are used (refused when none of PGHOST, PGHOSTADDR, PGPORT, PGDATABASE, PGUSER, PGSERVICE, PGSERVICEFILE is set)", Destination: &o.URL},
		&cli.StringFlag{Name: "database-url-file", Usage: "file holding the database URL (a mounted Secret key)", Destination: &o.URLFile},
		&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: "timeout of one connection attempt", Destination: &o.ConnectTimeout},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	if o.URL != "" && o.URLFile != "" {
		return errors.New("--database-url and --database-url-file are both set: give only one")
	}
	if o.ConnectTimeout < time.Millisecond || o.ConnectTimeout > time.Hour {
		return fmt.Errorf("--connect-timeout %s is out of range: use a duration between 1ms and 1h, e.g. 10s", o.ConnectTimeout)
	}
	return nil
}

// source names where the connection settings came from, for messages.
func (o *Options) source() string {
	switch {
	case o.URL != "":
		return "--database-url"
	case o.URLFile != "":
		return "--database-url-file " + o.URLFile
	}
	return "the PG* environment variables"
}

// Config builds the pgx connection config. Every password it meets is registered
// with red before anything can print it. Errors are permanent: no retry fixes them.
func (o *Options) Config(red *redact.Redactor) (*pgx.ConnConfig, error) {
	raw := o.URL
	if o.URLFile != "" {
		b, err := os.ReadFile(o.URLFile)
		if err != nil {
			return nil, failure.Permanentf("reading --database-url-file: %w (mount the Secret key holding the URL there)", unwrapPath(err))
		}
		raw = strings.TrimSpace(string(b))
		if raw == "" {
			return nil, failure.Permanentf("--database-url-file %s is empty: the Secret key must hold the database URL", o.URLFile)
		}
	}
	if o.URLFile == "" && strings.TrimSpace(raw) == "" && !pgVarsSet() {
		// libpq's defaults (a local socket, the OS user) are never a database in a
		// pod: an empty Secret key, or a misspelt variable, would be waited on
		// and retried as if the server were down.
		return nil, failure.Permanentf("no database given: --database-url (CHARTREUSE_DATABASE_URL) is empty and no PG* connection variable (PGHOST, PGSERVICE...) is set; put the database URL in the Secret key the step reads (the workflows' database-secret and database-secret-key), or give --database-url")
	}
	red.AddURLPassword(raw)
	red.Add(os.Getenv("PGPASSWORD"))
	if err := checkShape(raw); err != nil {
		return nil, failure.Permanentf("the database %s from %s is not valid: %w", formName(raw), o.source(), err)
	}
	if key := unsupportedSecret(raw); key != "" {
		return nil, failure.Permanentf("the database %s from %s sets %s, which the PostgreSQL driver of this step (pgx) does not support: it would send the value to the server as a server setting; remove it and authenticate with a password or a client certificate", formName(raw), o.source(), key)
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		// pgx reads sslrootcert/sslcert/sslkey while parsing: a missing file is not
		// a malformed URL. File paths are not secret; the URL is never echoed.
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, failure.Permanentf("the database URL from %s names a file that cannot be read: %s: %v (mount the certificate or key there, or fix sslrootcert/sslcert/sslkey)", o.source(), pe.Path, pe.Err)
		}
		if bad := badSetting(raw); bad != "" {
			return nil, failure.Permanentf("the database %s from %s is not valid: the value of %s is not one libpq accepts: fix it (the connection parameters: https://www.postgresql.org/docs/current/libpq-connect.html)", formName(raw), o.source(), bad)
		}
		return nil, failure.Permanentf("the database %s from %s is not valid: %s", formName(raw), o.source(), parseReason(raw))
	}
	// A host name never holds '@': one that does took a piece of a password whose
	// '@' was not percent-encoded, and would print it in every message naming the
	// host.
	for _, h := range hosts(cfg) {
		if strings.ContainsAny(h, "@") {
			return nil, failure.Permanentf("the database %s from %s is not valid: %s", formName(raw), o.source(), parseReason(raw))
		}
	}
	red.Add(cfg.Password)
	entries := passfileEntries(raw, cfg)
	registerPassfile(red, entries)
	if first, other := passfileMismatch(raw, cfg, entries); other != "" {
		return nil, failure.Permanentf("the database %s from %s lists several hosts and takes the password from a passfile that gives host %s another password than host %s (or none): this step's PostgreSQL driver (pgx) would send %s's password to every host; give every host of the list the same passfile entry, or put the password in the %s", formName(raw), o.source(), other, first, first, formName(raw))
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// pgx has put the URL's application_name, else PGAPPNAME's, in RuntimeParams.
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		name := o.AppName
		if name == "" {
			name = "chartreuse"
		}
		cfg.RuntimeParams["application_name"] = name
	}
	return cfg, nil
}

// pgVars are the libpq variables that say where to connect, any of which
// makes an empty --database-url a choice rather than a mistake.
var pgVars = []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSERVICEFILE"}

func pgVarsSet() bool {
	for _, v := range pgVars {
		if strings.TrimSpace(os.Getenv(v)) != "" {
			return true
		}
	}
	return false
}

func hosts(cfg *pgx.ConnConfig) []string {
	hs := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hs = append(hs, f.Host)
	}
	return hs
}

// parseReason explains a parse failure without echoing any part of the connection
// string: a parser's own detail ("invalid port \":Q\" after host") can quote a
// fragment of a password that an unescaped '/' or '@' pushed into another field.
func parseReason(raw string) string {
	if strings.Contains(raw, "://") {
		return "expected postgres://user:password@host:port/database?sslmode=...; " + encodeHint
	}
	return "expected a postgres:// URL or keyword=value pairs such as host=... dbname=...; " + quoteHint
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// Describe names the target of cfg for messages: host, port, database, user — never
// the password.
func Describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("host=%s port=%d database=%s user=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User)
}

// Connect opens one connection. Errors name the target (never the password) and are
// classified with Kind.
func Connect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if problem := CertificateProblem(err); problem != "" {
			return nil, Classify(fmt.Errorf("connecting to %s: %s (not retried): %w", Describe(cfg), problem, err))
		}
		if Kind(err) == failure.Permanent && refusedByClient(err) {
			return nil, failure.AsPermanent(fmt.Errorf("connecting to %s: %s: %w", Describe(cfg), refusedHint, err))
		}
		return nil, Classify(fmt.Errorf("connecting to %s: %w", Describe(cfg), err))
	}
	return conn, nil
}

// CloseQuietly closes conn with its own short deadline: the caller's context may
// already be done, and a failed close changes nothing.
func CloseQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
