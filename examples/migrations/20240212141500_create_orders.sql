-- +goose Up
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');

CREATE TABLE orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint       NOT NULL REFERENCES customers (id),
    status       order_status NOT NULL DEFAULT 'pending',
    total_cents  bigint       NOT NULL CHECK (total_cents >= 0),
    created_at   timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);

-- +goose Down
DROP TABLE orders;
DROP TYPE order_status;
