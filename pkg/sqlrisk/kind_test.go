package sqlrisk

import (
	"context"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// A goose statement of several (a StatementBegin block, a shared line) names
// each risk by the statement it comes from. Before, every risk took the first
// statement's kind: "CREATE TABLE takes AccessExclusiveLock on t" for a DROP
// TABLE t after a CREATE TABLE.
func TestRiskKindOfItsOwnStatement(t *testing.T) {
	ctx := context.Background()
	srv, db := pgenv.NewDatabase(t)
	c := connect(t, srv.URL(db))
	if _, err := c.Exec(ctx, proofTable+" CREATE TABLE u (id int);"); err != nil {
		t.Fatal(err)
	}
	f, err := Analyze(ctx, catalog(t, srv.URL(db)), Statement{File: "f.sql", Line: 2, InTx: true,
		SQL: "CREATE TABLE n (id int);\nDROP TABLE u;\nCREATE INDEX t_a ON t (a);"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Risks) != 2 || f.Risks[0].Kind != "DROP TABLE" || f.Risks[1].Kind != "CREATE INDEX" || f.Kind != "CREATE TABLE" {
		t.Errorf("finding %s, risks %+v; want DROP TABLE and CREATE INDEX", f.Kind, f.Risks)
	}
}
