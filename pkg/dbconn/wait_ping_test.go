package dbconn

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestPingIsOneQuery: an attempt runs SELECT 1 without preparing it first, which
// would cost a second round trip.
func TestPingIsOneQuery(t *testing.T) {
	srv, db := pgenv.NewDatabase(t)
	cfg, err := pgx.ParseConfig(srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	tr := &pgenv.QueryCounter{}
	cfg.Tracer = tr
	if err := Ping(cfg)(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr.Queries != 1 || tr.Prepares != 0 {
		t.Fatalf("an attempt ran %d queries and %d prepares, want one query and no prepare", tr.Queries, tr.Prepares)
	}
}
