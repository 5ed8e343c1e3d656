package waitdb

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// deps are what the step needs from the outside world; tests replace them.
type deps struct {
	clock poll.Clock
	// attempt builds one try for a resolved target (Ping in production).
	attempt func(cfg *pgx.ConnConfig) func(context.Context) error
}

// Spec describes the wait-for-db step binary.
func Spec() step.Spec {
	return newSpec(deps{clock: poll.RealClock{}, attempt: dbconn.Ping})
}

func newSpec(d deps) step.Spec {
	db := &dbconn.Options{}
	opts := &Options{}
	rid := &dbconn.RunIDOptions{}
	return step.Spec{
		Name:  "wait-for-db",
		Usage: "wait until PostgreSQL accepts connections and answers SELECT 1",
		Description: "Retries with backoff (100ms growing to 2s, jittered) until the database answers or --timeout passes.\n" +
			"A database that does not exist yet is waited for; a wrong password, a role that may not log in or a\n" +
			"malformed URL fail at once (exit 1). Timeout: exit 75, naming the last error.\n" +
			"Results: attempts, waited.",
		Options: []step.Options{db, opts, rid},
		Run: func(ctx context.Context, env *step.Env) error {
			db.AppName = dbconn.ApplicationName(rid.RunID, "wait-for-db")
			cfg, err := db.Config(env.Redactor)
			if err != nil {
				return err
			}
			env.Results.Set("attempts", "0")
			w := &dbconn.Waiter{Attempt: d.attempt(cfg), Clock: d.clock, Log: env.Log.With("target", dbconn.Describe(cfg))}
			st, err := w.Wait(ctx, opts.Timeout)
			env.Results.Set("attempts", strconv.Itoa(st.Attempts))
			env.Results.Set("waited", st.Waited.Round(time.Millisecond).String())
			return err
		},
	}
}
