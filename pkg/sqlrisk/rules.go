package sqlrisk

// Level is how serious a rule's finding is. Error-level risks fail a plan run
// with the fail policy; warnings are reported only; info rules describe the
// safe form of a statement and are not risks.
type Level string

const (
	LevelError   Level = "error"
	LevelWarning Level = "warning"
	LevelInfo    Level = "info"
)

// PostgreSQL's table lock modes, as pg_locks names them, weakest first.
const (
	LockNone                 = ""
	AccessShareLock          = "AccessShareLock"
	RowShareLock             = "RowShareLock"
	RowExclusiveLock         = "RowExclusiveLock"
	ShareUpdateExclusiveLock = "ShareUpdateExclusiveLock"
	ShareLock                = "ShareLock"
	ShareRowExclusiveLock    = "ShareRowExclusiveLock"
	ExclusiveLock            = "ExclusiveLock"
	AccessExclusiveLock      = "AccessExclusiveLock"
)

var lockRank = map[string]int{
	LockNone: 0, AccessShareLock: 1, RowShareLock: 2, RowExclusiveLock: 3, ShareUpdateExclusiveLock: 4,
	ShareLock: 5, ShareRowExclusiveLock: 6, ExclusiveLock: 7, AccessExclusiveLock: 8,
}

// Stronger reports whether lock mode a conflicts with more than b.
func Stronger(a, b string) bool { return lockRank[a] > lockRank[b] }

// BlocksWrites reports whether a lock held on a table stops INSERT, UPDATE and
// DELETE on it; BlocksReads whether it stops SELECT too.
func BlocksWrites(lock string) bool { return lockRank[lock] >= lockRank[ShareLock] }
func BlocksReads(lock string) bool  { return lock == AccessExclusiveLock }

// Observe is how a rule's proof reads the lock its statement takes.
type Observe int

const (
	// InTransaction: the statement runs in a transaction that is rolled back;
	// the locks are read from pg_locks before the rollback.
	InTransaction Observe = iota
	// Blocked: the statement cannot run in a transaction block. Another
	// session holds ROW EXCLUSIVE on the table in an open transaction (as a
	// running application does); once the statement waits (for a lock, or for
	// that transaction to end), the strongest lock it holds or waits for on the
	// table is read from pg_locks from a third session, then the blocker
	// commits and the statement must complete.
	Blocked
	// Fails: the statement must fail with SQLState inside a transaction; it
	// takes no lock.
	Fails
)

// Proof is the statement a rule's claim is checked with (TestRuleLocks).
type Proof struct {
	Setup    string // committed first
	SQL      string // the statement; the analyser must find this rule in it
	Table    string // the relation whose lock is read
	Observe  Observe
	SQLState string // Fails: the expected error code
	InTx     bool   // the statement as the analyser sees it runs in a transaction
	// ScanNotRead: pg_stat_get_xact_numscans cannot prove the Scans claim for
	// this statement, which counts a scan without reading rows.
	ScanNotRead bool
}

// Rule is one thing a statement can do to a table.
type Rule struct {
	Name     string
	Level    Level
	Kind     string // the statement kind it applies to
	Lock     string // the strongest lock it takes on the table, held until commit
	Rewrites bool   // writes a new copy of the table (and its indexes)
	Scans    bool   // reads the whole table while holding Lock
	What     string // what happens, one sentence
	Advice   string // what to do instead
	Proof    Proof
}

// TestName is the test that proves the rule's claim.
func (r *Rule) TestName() string { return "TestRuleLocks/" + r.Name }

const proofTable = "CREATE TABLE t (id int PRIMARY KEY, a int, b text); INSERT INTO t SELECT g, g, 'x' FROM generate_series(1, 100) g;"

var rules = []*Rule{
	{
		Name: "create-index", Level: LevelError, Kind: "CREATE INDEX", Lock: ShareLock, Scans: true,
		What:   "CREATE INDEX without CONCURRENTLY blocks every INSERT, UPDATE and DELETE on the table while it reads the whole table",
		Advice: "Use CREATE INDEX CONCURRENTLY in a migration of its own marked -- +goose NO TRANSACTION (IF NOT EXISTS makes it safe to retry)",
		Proof:  Proof{Setup: proofTable, SQL: "CREATE INDEX t_a ON t (a)", Table: "t", InTx: true},
	},
	{
		Name: "create-index-concurrently", Level: LevelInfo, Kind: "CREATE INDEX", Lock: ShareUpdateExclusiveLock, Scans: true,
		What:   "CREATE INDEX CONCURRENTLY lets reads and writes go on; it waits for the transactions already running and reads the table twice",
		Advice: "Nothing to change; if it fails it leaves an INVALID index to drop before retrying",
		Proof:  Proof{Setup: proofTable, SQL: "CREATE INDEX CONCURRENTLY t_a ON t (a)", Table: "t", Observe: Blocked},
	},
	{
		Name: "concurrently-in-transaction", Level: LevelError, Kind: "CREATE INDEX / DROP INDEX / REINDEX / ALTER TABLE ... DETACH PARTITION", Lock: LockNone,
		What:   "a CONCURRENTLY statement cannot run inside a transaction block, nor in one query with other statements (goose sends the statements that share a line as one): the migration fails when it reaches it",
		Advice: "Put the statement on a line of its own, in a migration of its own marked -- +goose NO TRANSACTION",
		Proof:  Proof{Setup: proofTable, SQL: "CREATE INDEX CONCURRENTLY t_a ON t (a)", Table: "t", Observe: Fails, SQLState: "25001", InTx: true},
	},
	{
		Name: "drop-index", Level: LevelWarning, Kind: "DROP INDEX", Lock: AccessExclusiveLock,
		What:   "DROP INDEX without CONCURRENTLY blocks reads and writes of the index's table, and waits behind every query using it",
		Advice: "Use DROP INDEX CONCURRENTLY in a migration marked -- +goose NO TRANSACTION",
		Proof:  Proof{Setup: proofTable + " CREATE INDEX t_a ON t (a);", SQL: "DROP INDEX t_a", Table: "t", InTx: true},
	},
	{
		Name: "add-column-rewrite", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Rewrites: true, Scans: true,
		What:   "adding a column with a volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval: serial, identity; its own or its domain's), a stored generated column, or a column of a domain with a constraint (checked on every row) rewrites the whole table under ACCESS EXCLUSIVE",
		Advice: "Add the column without a default (or with a constant one), set the default with ALTER COLUMN SET DEFAULT, and fill existing rows in batches",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ADD COLUMN c double precision DEFAULT random()", Table: "t", InTx: true},
	},
	{
		Name: "add-column", Level: LevelInfo, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "adding a column without a default or with a constant or stable one changes only the catalog: ACCESS EXCLUSIVE, but for an instant once granted",
		Advice: "Nothing to change; a lock_timeout keeps it from queueing behind a long transaction",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()", Table: "t", InTx: true},
	},
	{
		Name: "alter-column-type", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Rewrites: true, Scans: true,
		What:   "changing a column's type rewrites the table and its indexes under ACCESS EXCLUSIVE (only varchar lengthening and a few binary-compatible changes are exempt)",
		Advice: "Add a new column, fill it in batches, switch the application to it, then drop the old one",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ALTER COLUMN a TYPE bigint", Table: "t", InTx: true},
	},
	{
		Name: "set-not-null", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Scans: true,
		What:   "SET NOT NULL reads the whole table under ACCESS EXCLUSIVE unless a validated CHECK (column IS NOT NULL) already proves it",
		Advice: "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later migration, then SET NOT NULL (no scan) and drop the check",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ALTER COLUMN a SET NOT NULL", Table: "t", InTx: true},
	},
	{
		Name: "set-not-null-checked", Level: LevelInfo, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "SET NOT NULL on a column a validated CHECK (column IS NOT NULL) already covers changes only the catalog",
		Advice: "Nothing to change; drop the check afterwards",
		Proof:  Proof{Setup: proofTable + " ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL);", SQL: "ALTER TABLE t ALTER COLUMN a SET NOT NULL", Table: "t", InTx: true},
	},
	{
		Name: "add-foreign-key", Level: LevelError, Kind: "ALTER TABLE", Lock: ShareRowExclusiveLock, Scans: true,
		What:   "adding a FOREIGN KEY without NOT VALID blocks writes to both tables while every row is checked",
		Advice: "Add it with NOT VALID (no scan), then VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: writes go on)",
		Proof:  Proof{Setup: proofTable + " CREATE TABLE r (id int PRIMARY KEY, t_id int); INSERT INTO r SELECT g, g FROM generate_series(1, 100) g;", SQL: "ALTER TABLE r ADD CONSTRAINT r_t FOREIGN KEY (t_id) REFERENCES t (id)", Table: "r", InTx: true},
	},
	{
		Name: "add-foreign-key-not-valid", Level: LevelInfo, Kind: "ALTER TABLE", Lock: ShareRowExclusiveLock,
		What:   "a FOREIGN KEY added NOT VALID checks only new rows: a brief SHARE ROW EXCLUSIVE on both tables",
		Advice: "Validate it later with ALTER TABLE ... VALIDATE CONSTRAINT",
		Proof:  Proof{Setup: proofTable + " CREATE TABLE r (id int PRIMARY KEY, t_id int); INSERT INTO r SELECT g, g FROM generate_series(1, 100) g;", SQL: "ALTER TABLE r ADD CONSTRAINT r_t FOREIGN KEY (t_id) REFERENCES t (id) NOT VALID", Table: "r", InTx: true},
	},
	{
		Name: "add-check", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Scans: true,
		What:   "adding a CHECK constraint without NOT VALID reads the whole table under ACCESS EXCLUSIVE",
		Advice: "Add it with NOT VALID, then VALIDATE CONSTRAINT in a later migration",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0)", Table: "t", InTx: true},
	},
	{
		Name: "add-check-not-valid", Level: LevelInfo, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "a CHECK added NOT VALID checks only new rows: ACCESS EXCLUSIVE for an instant",
		Advice: "Validate it later with ALTER TABLE ... VALIDATE CONSTRAINT",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID", Table: "t", InTx: true},
	},
	{
		Name: "validate-constraint", Level: LevelInfo, Kind: "ALTER TABLE", Lock: ShareUpdateExclusiveLock, Scans: true,
		What:   "VALIDATE CONSTRAINT reads the table but lets reads and writes go on",
		Advice: "Nothing to change",
		Proof:  Proof{Setup: proofTable + " ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID;", SQL: "ALTER TABLE t VALIDATE CONSTRAINT t_a_pos", Table: "t", InTx: true},
	},
	{
		Name: "add-unique-constraint", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Scans: true,
		What:   "adding a PRIMARY KEY or UNIQUE constraint without USING INDEX builds its index under ACCESS EXCLUSIVE",
		Advice: "CREATE UNIQUE INDEX CONCURRENTLY first (NO TRANSACTION migration), then ADD CONSTRAINT ... PRIMARY KEY / UNIQUE USING INDEX",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a)", Table: "t", InTx: true},
	},
	{
		Name: "rename-column", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "renaming a column breaks the running version of the application, which still uses the old name",
		Advice: "Add the new column, write both, move reads over, then drop the old one in a later release (or stop the application for the run: stop-workloads)",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t RENAME COLUMN b TO c", Table: "t", InTx: true},
	},
	{
		Name: "rename-table", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "renaming a table breaks the running version of the application, which still uses the old name",
		Advice: "Create the new table (or a view under the old name), move the application over, then drop the old one in a later release",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t RENAME TO t2", Table: "t", InTx: true},
	},
	{
		Name: "drop-column", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "dropping a column breaks the running version of the application if it still reads or writes it",
		Advice: "Release the application without any use of the column first, then drop it in a later migration",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t DROP COLUMN b", Table: "t", InTx: true},
	},
	{
		Name: "drop-table", Level: LevelError, Kind: "DROP TABLE", Lock: AccessExclusiveLock,
		What:   "dropping a table breaks the running version of the application if it still uses it, and its data is gone",
		Advice: "Release the application without any use of the table first, then drop it in a later migration",
		Proof:  Proof{Setup: proofTable, SQL: "DROP TABLE t", Table: "t", InTx: true},
	},
	{
		Name: "set-logged", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Rewrites: true, Scans: true,
		What:   "SET LOGGED or SET UNLOGGED copies the whole table (and its indexes) to new files under ACCESS EXCLUSIVE: no reads or writes until it ends",
		Advice: "Create the table logged or unlogged from the start; on a table in use, copy it in batches to a new table instead",
		Proof:  Proof{Setup: proofTable, SQL: "ALTER TABLE t SET UNLOGGED", Table: "t", InTx: true},
	},
	{
		Name: "attach-partition", Level: LevelWarning, Kind: "ALTER TABLE", Lock: AccessExclusiveLock, Scans: true,
		What:   "ATTACH PARTITION reads the whole table being attached, under ACCESS EXCLUSIVE on it, to check that its rows fit the partition bound (SHARE UPDATE EXCLUSIVE on the partitioned table)",
		Advice: "Add a CHECK constraint matching the bound NOT VALID, VALIDATE it in an earlier migration, then ATTACH (no scan) and drop the check",
		Proof: Proof{Setup: "CREATE TABLE p (id int, a int) PARTITION BY RANGE (id); CREATE TABLE p2 (id int, a int); INSERT INTO p2 SELECT g, g FROM generate_series(1, 100) g;",
			SQL: "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (1) TO (1000)", Table: "p2", InTx: true},
	},
	{
		Name: "detach-partition", Level: LevelError, Kind: "ALTER TABLE", Lock: AccessExclusiveLock,
		What:   "DETACH PARTITION without CONCURRENTLY blocks reads and writes of the whole partitioned table while it waits for and holds ACCESS EXCLUSIVE",
		Advice: "Use DETACH PARTITION ... CONCURRENTLY in a migration marked -- +goose NO TRANSACTION",
		Proof: Proof{Setup: "CREATE TABLE p (id int, a int) PARTITION BY RANGE (id); CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (1000); INSERT INTO p SELECT g, g FROM generate_series(1, 100) g;",
			SQL: "ALTER TABLE p DETACH PARTITION p1", Table: "p", InTx: true},
	},
	{
		Name: "vacuum-full", Level: LevelError, Kind: "VACUUM", Lock: AccessExclusiveLock, Rewrites: true, Scans: true,
		What:   "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE: no reads or writes until it ends",
		Advice: "Leave space reclaiming to autovacuum, or use pg_repack outside the migration",
		Proof:  Proof{Setup: proofTable, SQL: "VACUUM FULL t", Table: "t", Observe: Blocked},
	},
	{
		Name: "cluster", Level: LevelError, Kind: "CLUSTER", Lock: AccessExclusiveLock, Rewrites: true, Scans: true,
		What:   "CLUSTER rewrites the table in index order under ACCESS EXCLUSIVE",
		Advice: "Do not CLUSTER in a migration; use pg_repack outside it",
		Proof:  Proof{Setup: proofTable, SQL: "CLUSTER t USING t_pkey", Table: "t", InTx: true},
	},
	{
		Name: "reindex", Level: LevelWarning, Kind: "REINDEX", Lock: ShareLock, Scans: true,
		What:   "REINDEX without CONCURRENTLY blocks writes to the table, and every query using the index, while it rebuilds",
		Advice: "Use REINDEX ... CONCURRENTLY in a migration marked -- +goose NO TRANSACTION",
		Proof:  Proof{Setup: proofTable, SQL: "REINDEX TABLE t", Table: "t", InTx: true},
	},
	{
		Name: "lock-table", Level: LevelWarning, Kind: "LOCK", Lock: AccessExclusiveLock,
		What:   "an explicit LOCK TABLE holds its mode (ACCESS EXCLUSIVE unless one is named) until the migration commits",
		Advice: "Make sure the rest of the migration is short, and that the lock is needed at all",
		Proof:  Proof{Setup: proofTable, SQL: "LOCK TABLE t", Table: "t", InTx: true},
	},
	{
		Name: "truncate", Level: LevelWarning, Kind: "TRUNCATE", Lock: AccessExclusiveLock, Rewrites: true,
		What:   "TRUNCATE empties the table under ACCESS EXCLUSIVE (it swaps in a new, empty file: no rows are read); the running version loses its data",
		Advice: "Make sure nothing still needs the rows; delete in batches if the application keeps running",
		Proof:  Proof{Setup: proofTable, SQL: "TRUNCATE t", Table: "t", InTx: true, ScanNotRead: true},
	},
	{
		Name: "refresh-materialized-view", Level: LevelWarning, Kind: "REFRESH MATERIALIZED VIEW", Lock: AccessExclusiveLock, Rewrites: true,
		What:   "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view while its query runs and its new contents are written",
		Advice: "Give the view a unique index and use REFRESH MATERIALIZED VIEW CONCURRENTLY",
		Proof:  Proof{Setup: proofTable + " CREATE MATERIALIZED VIEW mv AS SELECT id, a FROM t;", SQL: "REFRESH MATERIALIZED VIEW mv", Table: "mv", InTx: true},
	},
	{
		Name: "update-all-rows", Level: LevelWarning, Kind: "UPDATE / DELETE", Lock: RowExclusiveLock, Scans: true,
		What:   "an UPDATE or DELETE without WHERE touches every row in one transaction: row locks on all of them, and one long transaction",
		Advice: "Change rows in batches (a NO TRANSACTION migration, or outside the migration)",
		Proof:  Proof{Setup: proofTable, SQL: "UPDATE t SET a = a + 1", Table: "t", InTx: true},
	},
}

// Rules returns the rule table, in the order the documentation lists it.
func Rules() []*Rule { return rules }

// RuleByName returns the rule named name, or nil.
func RuleByName(name string) *Rule {
	for _, r := range rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}
