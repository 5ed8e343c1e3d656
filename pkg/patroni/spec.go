package patroni

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Pauses between checks: the original checked every 2 s; a pause of at most 1 s
// notices a ready cluster within about a second.
const (
	InitialPause = 200 * time.Millisecond
	MaxPause     = time.Second
)

// deps are what the step needs from the outside world; tests replace them.
type deps struct {
	clock poll.Clock
	http  *http.Client
}

// Spec describes the wait-patroni step binary.
func Spec() step.Spec {
	return newSpec(deps{clock: poll.RealClock{}})
}

func newSpec(d deps) step.Spec {
	db := &dbconn.Options{}
	opts := &Options{}
	rid := &dbconn.RunIDOptions{}
	return step.Spec{
		Name:  "wait-patroni",
		Usage: "wait until a Patroni / postgres-operator cluster has a leader, a primary and working roles",
		Description: "Checks about once a second until --timeout: Patroni's REST API shows a running leader (with --patroni-url),\n" +
			"the connection reaches a primary, the owner/writer/reader roles exist, and default privileges work: in a\n" +
			"transaction that is always rolled back, the owner creates a table, the writer inserts, the reader selects.\n" +
			"Connect as the owner's login user (postgres-operator: <database>_owner_user): it must be able to SET ROLE\n" +
			"to all three roles. Timeout: exit 75 naming the missing piece; bad credentials: exit 1.\n" +
			"Results: leader (with --patroni-url), checked, owner-role, attempts, waited.",
		Options: []step.Options{db, opts, rid},
		Run: func(ctx context.Context, env *step.Env) error {
			db.AppName = dbconn.ApplicationName(rid.RunID, "wait-patroni")
			cfg, err := db.Config(env.Redactor)
			if err != nil {
				return err
			}
			c := &Checker{Config: cfg, Connect: dbconn.Connect, Roles: opts.Roles}
			if opts.PatroniURL != "" {
				env.Redactor.AddURLPassword(opts.PatroniURL)
				rest, err := NewREST(opts.PatroniURL, d.http)
				if err != nil {
					return err
				}
				c.Patroni = rest
			}
			log := env.Log.With("target", dbconn.Describe(cfg))
			loop := poll.Loop{
				Clock:   d.clock,
				Backoff: poll.Backoff{Initial: InitialPause, Max: MaxPause},
				Log:     log,
				What:    "the cluster",
			}
			var rep Report
			st, err := loop.Run(ctx, opts.Timeout, func(ctx context.Context) error {
				var err error
				rep, err = c.Check(ctx)
				return err
			})
			env.Results.Set("attempts", strconv.Itoa(st.Attempts))
			env.Results.Set("waited", st.Waited.Round(time.Millisecond).String())
			if err != nil {
				return err
			}
			if rep.Leader != "" {
				env.Results.Set("leader", rep.Leader)
			}
			env.Results.Set("owner-role", rep.Roles.Owner)
			env.Results.Set("checked", rep.Checked())
			log.Info("cluster ready", "checked", rep.Checked(), "attempts", st.Attempts, "waited", st.Waited.Round(time.Millisecond).String())
			return nil
		},
	}
}
