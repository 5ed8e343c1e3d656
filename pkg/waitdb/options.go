package waitdb

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/poll"
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
