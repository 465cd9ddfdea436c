-- The collector's own state: one row per product it has seen, complete or
-- failed, with the images it stored. The product API reads complete products
-- from here.
--
-- Until this migration joined pgstore's, the collector and the API ran this
-- same SQL at every start under a lock of their own and recorded nothing, so
-- a database they used has these tables but no schema_migrations row for
-- them: every statement stays idempotent so that such a database upgrades by
-- running it once more. Taking the old lock too keeps an old collector that
-- starts at the same moment from creating the same tables concurrently.
SELECT pg_advisory_xact_lock(hashtext('shopstream collector migrations'));

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
