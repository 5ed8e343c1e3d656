package migrate

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
)

// DefaultDir is where the step image keeps its migrations.
const DefaultDir = "/migrations"

// DefaultTable is goose's version table.
const DefaultTable = "goose_db_version"

// Mode is what a run does.
type Mode int

const (
	// ModeUp applies pending migrations up to the target (all by default).
	ModeUp Mode = iota
	// ModePlan reports what ModeUp would apply and changes nothing.
	ModePlan
	// ModeDown rolls back applied migrations above the target.
	ModeDown
	// ModeResolve settles a migration that stopped partway (the dirty record).
	ModeResolve
)

func (m Mode) String() string {
	switch m {
	case ModePlan:
		return "plan"
	case ModeDown:
		return "down"
	case ModeResolve:
		return "resolve"
	}
	return "up"
}

// Version is an optional migration version flag value. An empty string leaves it
// unset, so workflow templates can pass an optional parameter as --to="", but
// is remembered (Empty): for --down-to and --resolve it is a usage error.
type Version struct {
	IsSet bool
	Value int64
	Empty bool // given as ""
}

// Set implements cli.Generic.
func (v *Version) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		*v = Version{Empty: true}
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a migration version: use a whole number ≥ 0 (the number a migration file name starts with)", s)
	}
	*v = Version{IsSet: true, Value: n}
	return nil
}

// String implements cli.Generic.
func (v *Version) String() string {
	if v == nil || !v.IsSet {
		return ""
	}
	return strconv.FormatInt(v.Value, 10)
}

// Versions is a comma-separated list of migration versions (--accept-changed); an
// empty string is none, so a workflow can always pass the parameter.
type Versions []int64

// Set implements cli.Generic.
func (vs *Versions) Set(s string) error {
	*vs = nil
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a migration version: use whole numbers ≥ 1 separated by commas, e.g. 20240101120000,20240301090000", part)
		}
		if !slices.Contains(*vs, n) {
			*vs = append(*vs, n)
		}
	}
	return nil
}

// String implements cli.Generic.
func (vs *Versions) String() string {
	if vs == nil {
		return ""
	}
	return joinVersions(*vs, ",")
}

// Options are the migrate step's own flags.
type Options struct {
	Dir                string
	To                 Version
	DownTo             Version
	Plan               bool
	AllowOutOfOrder    bool
	AllowEmptyDatabase bool
	Role               string
	Table              string
	LockWait           time.Duration
	LockTimeout        time.Duration
	StatementTimeout   time.Duration
	Resolve            Version
	ResolveAs          string
	AcceptChanged      Versions
	RunID              string
	OnlyThisRun        bool
	RiskPolicy         string // RiskWarn or RiskFail (plan.go)
	// WaitTimeout > 0: wait up to this long for the database to answer
	// before anything else, as wait-for-db does, so that a workflow's plan
	// needs no wait-for-db pod of its own before it.
	WaitTimeout time.Duration
	Git         GitOptions
	Image       ImageOptions
	// PlannedTarget and PlannedDigest are plan's target-version and
	// files-digest: migrate applies no file beyond that target, and none
	// other than the ones plan judged (Sources.Digest).
	PlannedTarget Version
	PlannedDigest string
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Value: DefaultDir, Usage: "directory holding the goose SQL migrations (<version>_<name>.sql)", Destination: &o.Dir},
		&cli.GenericFlag{Name: "to", Value: &o.To, Usage: "apply pending migrations up to and including this version (default: all); empty means unset"},
		&cli.GenericFlag{Name: "down-to", Value: &o.DownTo, Usage: "roll back applied migrations above this version (0 rolls back all); empty means unset"},
		&cli.BoolFlag{Name: "plan", Usage: "only report what is pending (results pending, pending-versions, ...): no change, not even the version table; exits 75 at once, without waiting, while another session holds the migration lock", Destination: &o.Plan},
		&cli.BoolFlag{Name: "allow-out-of-order", Usage: "apply pending migrations whose version is lower than the current one", Destination: &o.AllowOutOfOrder},
		&cli.BoolFlag{Name: "allow-empty-database", Value: true, Usage: "migrate a database that has no tables and no version table; false refuses (safety switch against a wrong database)", Destination: &o.AllowEmptyDatabase},
		&cli.StringFlag{Name: "role", Usage: "SET ROLE to this role on every connection before migrating, so new objects (and the version table) belong to it", Destination: &o.Role},
		&cli.StringFlag{Name: "table", Value: DefaultTable, Usage: "goose version table, optionally schema-qualified (schema.table)", Destination: &o.Table},
		&cli.DurationFlag{Name: "wait-timeout", Usage: "first wait up to this long for the database to accept connections and answer SELECT 1, as wait-for-db does (exit 75 when it does not); 0 connects once", Destination: &o.WaitTimeout},
		&cli.DurationFlag{Name: "lock-wait", Value: 5 * time.Minute, Usage: "how long to wait for another migrator to release the migration lock before giving up (exit 75); probed once a second", Destination: &o.LockWait},
		&cli.DurationFlag{Name: "lock-timeout", Value: 10 * time.Second, Usage: "PostgreSQL lock_timeout while migrating: a statement waiting longer for a table lock fails; a transactional migration is rolled back (exit 75), one without a transaction is recorded as stopped partway (exit 1); 0 waits forever", Destination: &o.LockTimeout},
		&cli.DurationFlag{Name: "statement-timeout", Usage: "PostgreSQL statement_timeout while migrating, at least 1s (the step's own queries run under it too); 0 means none", Destination: &o.StatementTimeout},
		&cli.GenericFlag{Name: "resolve", Value: &o.Resolve, Usage: "settle a migration without a transaction that stopped partway (its dirty record) after checking by hand what it did; with --as; takes the migration lock and applies nothing"},
		&cli.StringFlag{Name: "git-url", Usage: "take the migrations from this git repository (https://, http://, ssh://, git:// or user@host:path) instead of the image; --dir is then the directory inside it", Destination: &o.Git.URL},
		&cli.StringFlag{Name: "git-revision", Usage: "with --git-url: the tag, branch or full commit SHA to take the migrations from; resolved to one commit (result git-commit)", Destination: &o.Git.Revision},
		&cli.StringFlag{Name: "git-commit", Usage: "with --git-url: the commit plan resolved (its git-commit result), so every step of a run reads the same files even if the tag moves; empty resolves --git-revision now", Destination: &o.Git.Commit},
		&cli.StringFlag{Name: "git-credentials", Value: DefaultGitCredentials, Usage: "directory of the mounted git credentials Secret: token (and username) for HTTPS, ssh-privatekey and known_hosts for SSH; absent or empty means anonymous", Destination: &o.Git.Credentials},
		&cli.StringFlag{Name: "migrations-image", Usage: "take the migrations from --dir of this image or OCI artifact (host/repository:tag or @sha256:...) instead of the tools image, pulled by the step itself; resolved to one digest (result migrations-digest)", Destination: &o.Image.Ref},
		&cli.StringFlag{Name: "migrations-digest", Usage: "with --migrations-image: the digest plan resolved (its migrations-digest result), so every step of a run reads the same files even if the tag moves; empty resolves the reference now", Destination: &o.Image.Digest},
		&cli.StringFlag{Name: "registry-credentials", Value: DefaultRegistryCredentials, Usage: "directory of the mounted kubernetes.io/dockerconfigjson Secret for --migrations-image (.dockerconfigjson or config.json); absent or empty means anonymous", Destination: &o.Image.Credentials},
		&cli.BoolFlag{Name: "insecure-registry", Usage: "with --migrations-image: the registry speaks plain http (one inside the cluster without TLS); loopback registries need no flag", Destination: &o.Image.Insecure},
		&cli.GenericFlag{Name: "accept-changed", Value: &o.AcceptChanged, Usage: "VERSION[,VERSION...]: applied migrations whose file was edited on purpose: record the file's new sha256 in place of the one recorded when it was applied (under the migration lock, logged with both); only these versions, and only when the database needs nothing more from the edit; empty accepts none"},
		&cli.StringFlag{Name: "run-id", Usage: "who is migrating, recorded with the checksum of each migration applied, e.g. the workflow name (default: the host name, i.e. the pod name)", Destination: &o.RunID},
		&cli.BoolFlag{Name: "only-this-run", Usage: "with --down-to: roll back only what this run applied: refuse (exit 1, nothing rolled back) when a version to roll back was not applied by --run-id (its checksum record says who applied it), as a workflow's failure path must not undo what another migrator applied meanwhile", Destination: &o.OnlyThisRun},
		&cli.StringFlag{Name: "risk-policy", Value: RiskWarn, Usage: "with --plan: what error-level risks found in the pending statements do (result risks): warn only logs and records them; fail also exits 1, except for a statement whose file waives the rule with a -- chartreuse:allow <rule> comment on it; off analyses nothing and writes no risks result (for a second plan, such as the exit handler's recheck)", Destination: &o.RiskPolicy},
		&cli.GenericFlag{Name: "planned-target", Value: &o.PlannedTarget, Usage: "with --planned-files-digest: plan's target-version result; migrate applies nothing above it, even when newer files have appeared since (--to lower still wins); empty means unset"},
		&cli.StringFlag{Name: "planned-files-digest", Usage: "with --planned-target: plan's files-digest result; migrate refuses (exit 1, nothing applied) when its files up to that version are not the ones plan judged (an image tag pushed again between the two steps); empty means unset", Destination: &o.PlannedDigest},
		&cli.StringFlag{Name: "as", Usage: "with --resolve: applied (all its changes are in place: its version row is kept or written) or not-applied (none are: its version row is removed, so the next run applies it again)", Destination: &o.ResolveAs},
	}
}

// Mode derives the run mode from the flags.
func (o *Options) Mode() Mode {
	switch {
	case o.Resolve.IsSet:
		return ModeResolve
	case o.Plan:
		return ModePlan
	case o.DownTo.IsSet:
		return ModeDown
	}
	return ModeUp
}

// planLockTimeout bounds a plan's own waits for a lock (the table sizes it
// reads wait behind a migration's or the application's ACCESS EXCLUSIVE lock).
const planLockTimeout = 10 * time.Second

// Sessions returns the settings of the run's sessions. A plan changes nothing,
// so it never waits long for a lock nor ends on the migrations' statement
// timeout: it checks --lock-timeout and --statement-timeout, and judges
// needs-downtime by the former, but its sessions wait at most planLockTimeout.
// (The workflows pass the run's values to plan so that a bad one fails there,
// before anything is stopped; with --lock-timeout 0 a plan once waited forever.)
func (o *Options) Sessions() SessionSettings {
	s := SessionSettings{Role: o.Role, LockTimeout: o.LockTimeout, StatementTimeout: o.StatementTimeout}
	if o.Plan {
		if s.LockTimeout <= 0 || s.LockTimeout > planLockTimeout {
			s.LockTimeout = planLockTimeout
		}
		s.StatementTimeout = 0
	}
	return s
}

// hexSHA256 is a sha256 as hex, the form of --planned-files-digest.
var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// minStatementTimeout is the shortest --statement-timeout other than 0.
const minStatementTimeout = time.Second

// maxPGDuration is the largest lock_timeout/statement_timeout PostgreSQL accepts.
const maxPGDuration = time.Duration(math.MaxInt32) * time.Millisecond

// Validate implements step.Options. Flag misuse is a usage error (exit 2); a missing
// migration directory is bad input (exit 1).
func (o *Options) Validate() error {
	switch {
	case o.DownTo.Empty:
		return errors.New("--down-to is empty: give the version to roll back to (0 rolls back everything); a workflow must not start a rollback without a known version")
	case o.Resolve.Empty:
		return errors.New("--resolve is empty: give the version of the migration that stopped partway (see the refusal message or the dirty table)")
	case o.Resolve.IsSet && (o.Plan || o.To.IsSet || o.DownTo.IsSet):
		return errors.New("--resolve cannot be combined with --plan, --to or --down-to: resolve first, then run again")
	case o.Resolve.IsSet && o.ResolveAs != string(ResolvedApplied) && o.ResolveAs != string(ResolvedNotApplied):
		return fmt.Errorf("--as %q is not valid with --resolve: use --as applied (all the migration's changes are in place) or --as not-applied (none are)", o.ResolveAs)
	case o.Resolve.IsSet && len(o.AcceptChanged) > 0:
		return errors.New("--accept-changed cannot be combined with --resolve: resolve first, then run again")
	case !o.Resolve.IsSet && o.ResolveAs != "":
		return errors.New("--as is only meaningful with --resolve VERSION")
	case o.RiskPolicy != "" && o.RiskPolicy != RiskWarn && o.RiskPolicy != RiskFail && o.RiskPolicy != RiskOff:
		return fmt.Errorf("--risk-policy %q is not valid: use warn (report the pending statements' risks), fail (exit 1 on an error-level risk no -- chartreuse:allow <rule> waives) or off (no analysis)", o.RiskPolicy)
	case o.To.IsSet && o.DownTo.IsSet:
		return errors.New("--to and --down-to are both set: use --to to migrate up, --down-to to roll back")
	case o.OnlyThisRun && !o.DownTo.IsSet:
		return errors.New("--only-this-run only applies to a rollback: give --down-to too, or drop it")
	case o.OnlyThisRun && strings.TrimSpace(o.RunID) == "":
		return errors.New("--only-this-run needs --run-id: the run id migrate recorded on the migrations this run applied (the workflows pass theirs)")
	case o.Plan && o.DownTo.IsSet:
		return errors.New("--plan cannot be combined with --down-to: --plan reports pending up-migrations only")
	case o.PlannedTarget.IsSet != (o.PlannedDigest != ""):
		return errors.New("--planned-target and --planned-files-digest go together: give both (plan's target-version and files-digest results) or neither")
	case o.PlannedDigest != "" && (o.Plan || o.DownTo.IsSet || o.Resolve.IsSet):
		return errors.New("--planned-target and --planned-files-digest only apply to migrating up: drop them with --plan, --down-to or --resolve")
	case o.PlannedDigest != "" && !hexSHA256.MatchString(o.PlannedDigest):
		return fmt.Errorf("--planned-files-digest %q is not a sha256: give plan's files-digest result (64 lowercase hex digits)", o.PlannedDigest)
	case o.To.IsSet && o.To.Value == 0:
		return errors.New("--to 0 applies nothing: to roll back everything use --down-to 0")
	case o.Dir == "":
		return errors.New("--dir is empty: give the directory holding the migrations (the image has them in " + DefaultDir + ")")
	case !dbconn.ValidVersionTable(o.Table):
		return fmt.Errorf("--table %q is not valid: use a lowercase name or schema.name (letters, digits, _; the name at most %d characters), e.g. %s", o.Table, dbconn.MaxTableName, DefaultTable)
	case o.LockWait < 0 || o.LockWait > 24*time.Hour:
		return fmt.Errorf("--lock-wait %s is out of range: use a duration between 0 and 24h, e.g. 5m", o.LockWait)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--lock-timeout", o.LockTimeout}, {"--statement-timeout", o.StatementTimeout}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Millisecond) || d.v > maxPGDuration {
			return fmt.Errorf("%s %s is out of range: use 0 (none) or a duration between 1ms and %s", d.flag, d.v, maxPGDuration.Truncate(time.Hour))
		}
	}
	if o.StatementTimeout > 0 && o.StatementTimeout < minStatementTimeout {
		// A shorter one fails the step's own catalog reads and bookkeeping before
		// any migration runs, and again on every retry.
		return fmt.Errorf("--statement-timeout %s is too short: migrate's own queries (reading the catalog, recording versions) run under it too; use 0 (none) or at least %s", o.StatementTimeout, minStatementTimeout)
	}
	if o.WaitTimeout != 0 {
		if err := poll.ValidateTimeout("--wait-timeout", o.WaitTimeout, "5m"); err != nil {
			return err
		}
	}
	if strings.ContainsRune(o.Role, 0) {
		return errors.New("--role contains a NUL character")
	}
	if strings.EqualFold(strings.TrimSpace(o.Role), "none") {
		// SET ROLE none is "no role": the step would migrate as the login user.
		// No role can be named none (PostgreSQL reserves the name).
		return fmt.Errorf("--role %q is not a role: SET ROLE NONE means the login user itself; leave --role empty for that, or give the name of the role that owns the schema", o.Role)
	}
	if o.RunID = strings.TrimSpace(o.RunID); o.RunID == "" {
		o.RunID = defaultRunID()
	}
	if len(o.RunID) > 253 || strings.ContainsFunc(o.RunID, unicode.IsControl) || !utf8.ValidString(o.RunID) {
		return errors.New("--run-id must be one line of at most 253 characters, e.g. the workflow name")
	}
	if err := o.validateImage(); err != nil {
		return err
	}
	dir, err := o.validateGit()
	if err != nil {
		return err
	}
	o.Dir = dir
	if o.Git.URL != "" || o.Image.Ref != "" {
		return nil // the directory is checked in the fetched commit or image
	}
	st, err := os.Stat(o.Dir)
	if err != nil {
		return failure.Permanentf("migration directory %s: %w: mount or bake the migrations into the image at %s, or point --dir at them", o.Dir, unwrapPathError(err), DefaultDir)
	}
	if !st.IsDir() {
		return failure.Permanentf("migration directory %s is not a directory: point --dir at the directory holding the *.sql files (the image has them in %s)", o.Dir, DefaultDir)
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
