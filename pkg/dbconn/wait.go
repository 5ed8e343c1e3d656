package dbconn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/poll"
)

// Pauses between connection attempts: quick at first (the server is often just
// starting), then capped so a long wait does not hammer the server.
const (
	InitialPause = 100 * time.Millisecond
	MaxPause     = 2 * time.Second
)

// Ping returns one attempt: connect with cfg, run SELECT 1, close.
func Ping(cfg *pgx.ConnConfig) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := Connect(ctx, cfg)
		if err != nil {
			return Explain(cfg, err)
		}
		defer CloseQuietly(conn)
		var one int
		// The simple protocol answers in one round trip; pgx's default would first
		// prepare the statement, a second one.
		if err := conn.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
			return Classify(fmt.Errorf("SELECT 1 on %s: %w", Describe(cfg), err))
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

// Wait retries Attempt until it succeeds, fails permanently, or timeout passes,
// and logs "database ready" when it succeeds.
func (w *Waiter) Wait(ctx context.Context, timeout time.Duration) (poll.Stats, error) {
	loop := poll.Loop{
		Clock:   w.Clock,
		Backoff: poll.Backoff{Initial: InitialPause, Max: MaxPause},
		Log:     w.Log,
		What:    "the database",
	}
	st, err := loop.Run(ctx, timeout, w.Attempt)
	if err == nil && w.Log != nil {
		w.Log.Info("database ready", "attempts", st.Attempts, "waited", st.Waited.Round(time.Millisecond).String())
	}
	return st, err
}
