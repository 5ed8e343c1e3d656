package pgenv

import (
	"context"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Endpoint is where a test PostgreSQL listens and its superuser's password:
// what URLs and superuser SQL need. Server and patronienv.Cluster embed it.
type Endpoint struct {
	Host     string
	Port     int
	Password string // of the superuser "postgres"
}

// URL is a superuser URL for database db.
func (e *Endpoint) URL(db string) string {
	return e.UserURL("postgres", e.Password, db)
}

// UserURL is a URL for user with password on database db; any character works.
func (e *Endpoint) UserURL(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Exec runs SQL as the superuser on database db.
func (e *Endpoint) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, e.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}
