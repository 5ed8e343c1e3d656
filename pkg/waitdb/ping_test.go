package waitdb

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
	tr := &countingTracer{}
	cfg.Tracer = tr
	if err := Ping(cfg)(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr.queries != 1 || tr.prepares != 0 {
		t.Fatalf("an attempt ran %d queries and %d prepares, want one query and no prepare", tr.queries, tr.prepares)
	}
}

type countingTracer struct{ queries, prepares int }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries++
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countingTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.prepares++
	return ctx
}
func (c *countingTracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
