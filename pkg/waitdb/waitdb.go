package waitdb

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
)

// Pauses between connection attempts: quick at first (the server is often just
// starting), then capped so a long wait does not hammer the server.
const (
	InitialPause = 100 * time.Millisecond
	MaxPause     = 2 * time.Second
)

// Options are wait-for-db's own flags.
type Options struct {
	Timeout time.Duration
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up (exit 75) when the database is not ready after this long", Destination: &o.Timeout},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	return ValidateTimeout("--timeout", o.Timeout, "5m")
}

// ValidateTimeout rejects zero, negative and absurd waits (over a day: surely a
// unit mistake such as 300h for 300s).
func ValidateTimeout(flag string, d time.Duration, example string) error {
	if d < time.Second || d > 24*time.Hour {
		return fmt.Errorf("%s %s is out of range: use a duration between 1s and 24h, e.g. %s", flag, d, example)
	}
	return nil
}

// Ping returns one attempt: connect with cfg, run SELECT 1, close.
func Ping(cfg *pgx.ConnConfig) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := dbconn.Connect(ctx, cfg)
		if err != nil {
			return Explain(cfg, err)
		}
		defer dbconn.CloseQuietly(conn)
		var one int
		// The simple protocol answers in one round trip; pgx's default would first
		// prepare the statement, a second one.
		if err := conn.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
			return dbconn.Classify(fmt.Errorf("SELECT 1 on %s: %w", dbconn.Describe(cfg), err))
		}
		return nil
	}
}

// Explain puts a connection error into words an operator acts on. The kind
// (transient or permanent) stays dbconn's, decided by SQLSTATE or network error.
func Explain(cfg *pgx.ConnConfig, err error) error {
	switch dbconn.SQLState(err) {
	case dbconn.InvalidCatalogName:
		return fmt.Errorf("database %q does not exist yet (an operator may still be creating it): %w", cfg.Database, err)
	case dbconn.InvalidPassword:
		return fmt.Errorf("authentication failed for user %q: wrong password or no such role; fix the credentials (not retried): %w", cfg.User, err)
	case dbconn.InvalidAuthorization:
		return fmt.Errorf("user %q may not connect (pg_hba.conf rejects it or the role cannot log in; not retried): %w", cfg.User, err)
	case dbconn.CannotConnectNow:
		return fmt.Errorf("the server is starting up, shutting down or in recovery: %w", err)
	case dbconn.TooManyConnections:
		return fmt.Errorf("the server has no free connection slots: %w", err)
	}
	return err
}

// Waiter waits for a database with Ping-like attempts.
type Waiter struct {
	// Attempt is one try; Ping(cfg) in production.
	Attempt func(context.Context) error
	Clock   Clock
	Log     *slog.Logger
}

// Wait retries Attempt until it succeeds, fails permanently, or timeout passes.
func (w *Waiter) Wait(ctx context.Context, timeout time.Duration) (Stats, error) {
	loop := Loop{
		Clock:   w.Clock,
		Backoff: Backoff{Initial: InitialPause, Max: MaxPause},
		Log:     w.Log,
		What:    "the database",
	}
	return loop.Run(ctx, timeout, w.Attempt)
}
