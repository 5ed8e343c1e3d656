-- +goose NO TRANSACTION
-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block.

-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_open_status_idx
    ON orders (status) WHERE status IN ('pending', 'paid');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS orders_open_status_idx;
