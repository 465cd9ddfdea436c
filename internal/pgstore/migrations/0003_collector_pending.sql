-- Records whose products the collector is still collecting past their
-- batch (slow image hosts): their offsets are committed with the batch, so
-- the record itself is kept here until the product's state and output are,
-- and whoever owns the partition after a restart or a rebalance resumes
-- them from here.
CREATE TABLE collector_pending (
    topic            text        NOT NULL,
    record_key       text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    value            bytea,
    record_time      timestamptz NOT NULL,
    parked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, record_key)
);
CREATE INDEX collector_pending_partition_idx ON collector_pending (topic, source_partition);
