// Package patroni is the wait-patroni step: for clusters run by Patroni or
// postgres-operator, it waits until Patroni reports a running leader, the
// connection reaches a primary, and the operator's owner/writer/reader roles exist
// with default privileges that work — proven by creating a table as the owner,
// inserting as the writer and selecting as the reader in a transaction that is
// always rolled back.
//
// The step connects as the owner's login user (postgres-operator:
// <database>_owner_user), which must be able to SET ROLE to all three roles.
package patroni
