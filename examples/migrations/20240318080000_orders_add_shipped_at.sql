-- +goose Up
ALTER TABLE orders ADD COLUMN shipped_at timestamptz;

-- Backfill: orders already marked shipped get their last update time.
UPDATE orders SET shipped_at = created_at WHERE status = 'shipped' AND shipped_at IS NULL;

-- +goose Down
ALTER TABLE orders DROP COLUMN shipped_at;
