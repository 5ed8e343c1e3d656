package pgenv

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// QueryCounter is a pgx tracer that counts the queries and the prepares a
// connection makes: tests use it to check how many round trips a path costs.
type QueryCounter struct{ Queries, Prepares int }

// TraceQueryStart implements pgx.QueryTracer.
func (c *QueryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.Queries++
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *QueryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TracePrepareStart implements pgx.PrepareTracer.
func (c *QueryCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.Prepares++
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (c *QueryCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
