package waitdb

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
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
	return poll.ValidateTimeout("--timeout", o.Timeout, "5m")
}

// Ping returns one attempt: connect with cfg, run SELECT 1, close.
func Ping(cfg *pgx.ConnConfig) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := dbconn.Connect(ctx, cfg)
		if err != nil {
			return dbconn.Explain(cfg, err)
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

// Waiter waits for a database with Ping-like attempts.
type Waiter struct {
	// Attempt is one try; Ping(cfg) in production.
	Attempt func(context.Context) error
	Clock   poll.Clock
	Log     *slog.Logger
}

// Wait retries Attempt until it succeeds, fails permanently, or timeout passes.
func (w *Waiter) Wait(ctx context.Context, timeout time.Duration) (poll.Stats, error) {
	loop := poll.Loop{
		Clock:   w.Clock,
		Backoff: poll.Backoff{Initial: InitialPause, Max: MaxPause},
		Log:     w.Log,
		What:    "the database",
	}
	return loop.Run(ctx, timeout, w.Attempt)
}
