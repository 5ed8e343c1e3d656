package sqlrisk

import (
	"context"
	"testing"
)

// A goose statement of several (a StatementBegin block, a shared line) names
// each risk by the statement it comes from. Before, every risk took the first
// statement's kind: "CREATE TABLE takes AccessExclusiveLock on t" for a DROP
// TABLE t after a CREATE TABLE.
func TestRiskKindOfItsOwnStatement(t *testing.T) {
	ctx := context.Background()
	_, cat := setUp(t, proofTable+" CREATE TABLE u (id int);")
	f, err := Analyze(ctx, cat, Statement{File: "f.sql", Line: 2, InTx: true,
		SQL: "CREATE TABLE n (id int);\nDROP TABLE u;\nCREATE INDEX t_a ON t (a);"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Risks) != 2 || f.Risks[0].Kind != "DROP TABLE" || f.Risks[1].Kind != "CREATE INDEX" || f.Kind != "CREATE TABLE" {
		t.Errorf("finding %s, risks %+v; want DROP TABLE and CREATE INDEX", f.Kind, f.Risks)
	}
}
