-- The collector's own state: one row per product it has seen, complete or
-- failed, with the images it stored. The product API reads complete products
-- from here. Applied at start by both `collector` and `api`; idempotent.
CREATE TABLE IF NOT EXISTS collected_products (
    mall_id      text        NOT NULL,
    product_id   text        NOT NULL,
    record_key   text        NOT NULL UNIQUE,
    status       text        NOT NULL CHECK (status IN ('complete', 'failed')),
    reason       text        NOT NULL DEFAULT '',
    product      jsonb       NOT NULL,
    images       jsonb       NOT NULL DEFAULT '[]',
    collected_at timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (mall_id, product_id)
);

CREATE INDEX IF NOT EXISTS collected_products_complete_idx
    ON collected_products (mall_id, product_id) WHERE status = 'complete';
CREATE INDEX IF NOT EXISTS collected_products_product_idx
    ON collected_products (product_id);

-- Blobs no longer referenced by their product (an image replaced, a product
-- deleted). They are recorded in the same transaction as the change and
-- deleted after it commits, so a crash in between leaks nothing.
CREATE TABLE IF NOT EXISTS collector_orphan_blobs (
    blob_key   text        PRIMARY KEY,
    record_key text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS collector_orphan_blobs_record_idx
    ON collector_orphan_blobs (record_key);
