package patroni

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/poll"
)

// Options are wait-patroni's own flags.
type Options struct {
	Timeout    time.Duration
	PatroniURL string
	Roles      Roles
}

// Roles are the operator's roles; empty names default from the database name.
type Roles struct {
	Owner, Writer, Reader string
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up (exit 75) when the cluster is not ready after this long", Destination: &o.Timeout},
		&cli.StringFlag{Name: "patroni-url", Usage: "base URL of Patroni's REST API (e.g. http://db-0.db:8008); when set, wait until GET /cluster shows a running leader", Destination: &o.PatroniURL},
		&cli.StringFlag{Name: "owner-role", Usage: "role that owns the schema (default: <database>_owner, postgres-operator's convention)", Destination: &o.Roles.Owner},
		&cli.StringFlag{Name: "writer-role", Usage: "role that writes data (default: <database>_writer)", Destination: &o.Roles.Writer},
		&cli.StringFlag{Name: "reader-role", Usage: "role that reads data (default: <database>_reader)", Destination: &o.Roles.Reader},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	if err := poll.ValidateTimeout("--timeout", o.Timeout, "60s"); err != nil {
		return err
	}
	if o.PatroniURL != "" {
		u, err := url.Parse(o.PatroniURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("--patroni-url is not valid: use the REST API's base URL, e.g. http://db-0.db:8008")
		}
		// Patroni's API reads no query; a token there would be sent and printed
		// with the URL.
		if strings.ContainsAny(o.PatroniURL, "?#") {
			return errors.New("--patroni-url has a query or fragment: Patroni's REST API takes none (and a token there would be printed); give its base URL, e.g. http://db-0.db:8008")
		}
	}
	for _, r := range []struct{ flag, name string }{
		{"--owner-role", o.Roles.Owner}, {"--writer-role", o.Roles.Writer}, {"--reader-role", o.Roles.Reader},
	} {
		if r.name != "" && strings.TrimSpace(r.name) == "" {
			return fmt.Errorf("%s is blank: give a role name or leave it unset for the default", r.flag)
		}
		// The server rejects the bytes (SQLSTATE 22021) only after connecting.
		if !utf8.ValidString(r.name) {
			return fmt.Errorf("%s %q is not valid UTF-8: give the role's name as text", r.flag, r.name)
		}
		if len(r.name) > maxIdentifier {
			return fmt.Errorf("%s %q is longer than %d bytes: PostgreSQL would truncate it; give the role's real name", r.flag, r.name, maxIdentifier)
		}
	}
	return nil
}

// maxIdentifier is PostgreSQL's NAMEDATALEN-1.
const maxIdentifier = 63

// withDefaults fills empty names from the database name as postgres-operator
// does. PostgreSQL truncates long identifiers at creation, so the defaults are
// truncated the same way to find those roles.
func (r Roles) withDefaults(database string) Roles {
	def := func(name, suffix string) string {
		if name != "" {
			return name
		}
		return truncateIdentifier(database + suffix)
	}
	return Roles{Owner: def(r.Owner, "_owner"), Writer: def(r.Writer, "_writer"), Reader: def(r.Reader, "_reader")}
}

func truncateIdentifier(s string) string {
	if len(s) <= maxIdentifier {
		return s
	}
	s = s[:maxIdentifier]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
