package patroni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Checker runs one readiness check of the cluster.
type Checker struct {
	// Patroni finds the leader; nil skips that check (no --patroni-url).
	Patroni LeaderFinder
	Config  *pgx.ConnConfig
	// Connect opens a connection; dbconn.Connect in production.
	Connect func(context.Context, *pgx.ConnConfig) (*pgx.Conn, error)
	// Roles to check; empty names default from the connection's database.
	Roles Roles
}

// Report is what a successful check found.
type Report struct {
	Leader   string // empty without a Patroni check
	Database string
	User     string
	Roles    Roles
	Schema   string // where the owner creates tables
}

// Checked summarises the report in one line, for the results and the log.
func (r Report) Checked() string {
	var parts []string
	if r.Leader != "" {
		parts = append(parts, "patroni leader "+r.Leader+" running")
	}
	parts = append(parts,
		"primary",
		fmt.Sprintf("roles %s, %s, %s exist", r.Roles.Owner, r.Roles.Writer, r.Roles.Reader),
		fmt.Sprintf("in schema %s %s creates tables, %s inserts, %s selects", r.Schema, r.Roles.Owner, r.Roles.Writer, r.Roles.Reader))
	return strings.Join(parts, "; ")
}

// notYet is a missing piece the operator may still be configuring: keep waiting.
func notYet(format string, args ...any) error { return failure.Transientf(format, args...) }

// Check checks, in order, the leader, the primary, the roles and the default
// privileges, and returns the first missing piece. Missing pieces are transient
// (the operator may be configuring them); bad credentials are permanent.
func (c *Checker) Check(ctx context.Context) (Report, error) {
	var rep Report
	if c.Patroni != nil {
		leader, err := c.Patroni.Leader(ctx)
		if err != nil {
			return rep, err
		}
		rep.Leader = leader
	}
	conn, err := c.Connect(ctx, c.Config)
	if err != nil {
		return rep, dbconn.Explain(c.Config, err)
	}
	defer dbconn.CloseQuietly(conn)

	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_database(), current_user").
		Scan(&inRecovery, &rep.Database, &rep.User); err != nil {
		return rep, dbconn.Classify(fmt.Errorf("asking %s whether it is a primary: %w", dbconn.Describe(c.Config), err))
	}
	if inRecovery {
		// Waited for: during a failover the service may briefly reach a replica.
		return rep, notYet("connected to a replica (pg_is_in_recovery() is true) at %s: point the URL at the primary (postgres-operator: the <cluster> service, not <cluster>-repl)",
			dbconn.Describe(c.Config))
	}
	rep.Roles = c.Roles.withDefaults(rep.Database)
	if err := checkRolesExist(ctx, conn, rep.Roles); err != nil {
		return rep, err
	}
	schema, err := probe(ctx, conn, rep.User, rep.Roles)
	rep.Schema = schema
	return rep, err
}

func checkRolesExist(ctx context.Context, conn *pgx.Conn, r Roles) error {
	want := []string{r.Owner, r.Writer, r.Reader}
	// Also the roles that differ only in case: a flag is a role's exact name, not
	// an SQL identifier folded to lower case, and the message says so.
	rows, err := conn.Query(ctx, "SELECT rolname FROM pg_roles WHERE lower(rolname) IN (SELECT lower(w) FROM unnest($1::text[]) AS w) ORDER BY rolname", want)
	if err != nil {
		return dbconn.Classify(fmt.Errorf("reading pg_roles: %w", err))
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return dbconn.Classify(fmt.Errorf("reading pg_roles: %w", err))
	}
	var missing, near []string
	for _, w := range want {
		if slices.Contains(found, w) || slices.Contains(missing, w) {
			continue
		}
		missing = append(missing, w)
		for _, f := range found {
			if strings.EqualFold(f, w) && !slices.Contains(want, f) && !slices.Contains(near, f) {
				near = append(near, f)
			}
		}
	}
	hint := ""
	switch len(near) {
	case 0:
	case 1:
		hint = fmt.Sprintf(" (but %s exists: role names are case-sensitive, give the exact name)", near[0])
	default:
		hint = fmt.Sprintf(" (but %s exist: role names are case-sensitive, give the exact names)", strings.Join(near, ", "))
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return notYet("role %s does not exist%s", missing[0], hint)
	}
	return notYet("roles %s and %s do not exist%s", strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1], hint)
}

// probe proves the default privileges the migration relies on: the owner creates
// a table where the migration would, the writer inserts (table and sequence
// privileges), the reader selects. It runs in one transaction that is always
// rolled back, so it leaves nothing behind. It returns the owner's schema.
func probe(ctx context.Context, conn *pgx.Conn, user string, r Roles) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", dbconn.Classify(fmt.Errorf("starting the probe transaction: %w", err))
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	// A probe stuck behind a lock would only hide the answer.
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '15s'"); err != nil {
		return "", dbconn.Classify(fmt.Errorf("probe: setting timeouts: %w", err))
	}
	setRole := func(role string) error {
		_, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize())
		switch dbconn.SQLState(err) {
		case "":
			if err != nil {
				return dbconn.Classify(fmt.Errorf("probe: SET ROLE %s: %w", role, err))
			}
			return nil
		case dbconn.InsufficientPrivilege:
			return notYet("user %s is not a member of role %s: grant it (GRANT %s TO %s) or connect as the owner's login user (postgres-operator: %s_user)",
				user, role, dbconn.QuoteIdent(role), dbconn.QuoteIdent(user), r.Owner)
		case dbconn.UndefinedObject:
			return notYet("role %s does not exist", role)
		}
		return probeErr("SET ROLE "+role, err)
	}

	if err := setRole(r.Owner); err != nil {
		return "", err
	}
	var schema *string
	if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return "", probeErr("current_schema()", err)
	}
	if schema == nil {
		return "", notYet("role %s has no schema to create tables in: no schema on its search_path exists", r.Owner)
	}
	table := "chartreuse_probe_" + randomHex(6)
	// Unqualified, so the table lands where the migration's tables would.
	if _, err := tx.Exec(ctx, "CREATE TABLE "+pgx.Identifier{table}.Sanitize()+" (id serial)"); err != nil {
		switch dbconn.SQLState(err) {
		case dbconn.InsufficientPrivilege:
			return *schema, notYet("role %s cannot create tables in schema %s: make it the database owner or GRANT CREATE ON SCHEMA %s TO %s",
				r.Owner, *schema, dbconn.QuoteIdent(*schema), dbconn.QuoteIdent(r.Owner))
		case invalidSchemaName:
			return *schema, notYet("role %s has no schema to create tables in: %v", r.Owner, err)
		}
		return *schema, probeErr("CREATE TABLE as "+r.Owner, err)
	}
	qualified := pgx.Identifier{*schema, table}.Sanitize()

	if err := setRole(r.Writer); err != nil {
		return *schema, err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+qualified+" DEFAULT VALUES"); err != nil {
		if dbconn.SQLState(err) == dbconn.InsufficientPrivilege {
			return *schema, notYet("%s cannot INSERT into tables created by %s: default privileges not set (ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT INSERT, UPDATE, DELETE ON TABLES TO %s, and GRANT USAGE ON SEQUENCES; the writer also needs USAGE on schema %s): %w",
				r.Writer, r.Owner, dbconn.QuoteIdent(r.Owner), dbconn.QuoteIdent(r.Writer), *schema, err)
		}
		return *schema, probeErr("INSERT as "+r.Writer, err)
	}

	if err := setRole(r.Reader); err != nil {
		return *schema, err
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+qualified).Scan(&n); err != nil {
		if dbconn.SQLState(err) == dbconn.InsufficientPrivilege {
			return *schema, notYet("%s cannot SELECT from tables created by %s: default privileges not set (ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO %s; the reader also needs USAGE on schema %s): %w",
				r.Reader, r.Owner, dbconn.QuoteIdent(r.Owner), dbconn.QuoteIdent(r.Reader), *schema, err)
		}
		return *schema, probeErr("SELECT as "+r.Reader, err)
	}
	return *schema, nil
}

const invalidSchemaName = "3F000" // no schema has been selected to create in

// probeErr classifies an unexpected probe failure. A server refusing writes
// (read-only transaction) is waited for like a replica; the rest keep dbconn's
// kind: lost connections are transient, SQL errors permanent.
func probeErr(what string, err error) error {
	if dbconn.SQLState(err) == dbconn.ReadOnlySQLTransaction {
		return notYet("probe: %s: the server accepts no writes (read-only): %w", what, err)
	}
	return dbconn.Classify(fmt.Errorf("probe: %s: %w", what, err))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
