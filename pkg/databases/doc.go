// Package databases reads the list of databases one run migrates (the workflows'
// databases parameter, issue 15) and refuses a bad one before anything else runs:
// the check-databases step.
//
// The list is JSON: an array of objects, one per database, whose keys are those of
// Entry (secret, key, name, dir, git-url, git-revision, migrations-image, role,
// table, to). A key an entry leaves out takes the run's single-database parameter
// (Defaults). The migrations source is one piece: an entry that sets git-url or
// migrations-image takes none of the run's source parameters, one that sets
// neither takes them all.
//
// Parse refuses, as a usage error (exit 2) naming every bad entry at once: input
// that is not a JSON array of objects, an empty array, an unknown or repeated key, a
// value that is not a string, an invalid Secret name or key, a git-url migrate
// would refuse (credentials in it), a to that is not a version, an entry without
// a Secret, two entries for one database (the same Secret and key) and two
// entries with the same name. CheckSecrets then reads each Secret through the API and
// refuses (exit 1) a Secret that does not exist, or lacks the entry's key, or holds
// an empty value there; a Secret's values are never kept, printed or returned, only
// whether the key holds something. An API server that does not answer is transient
// (exit 75).
//
// See docs/design/multi-database.md for how the workflows use the result.
package databases
