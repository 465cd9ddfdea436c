-- Parking exactly once. owner is the job that may finish a parked record:
-- whoever parks or resumes it writes its own token here, and a product's
-- output is committed to Kafka only after its job marked the record
-- (out_topic, out_partition, out_offset: the offset of its first output
-- record, inside the still open transaction) while it was the owner. So an
-- instance that lost the record to another one (a rebalance, a restart)
-- aborts instead of emitting, and whoever resumes a marked record first
-- reads that offset back (read_committed) to learn whether the output is
-- already there.
ALTER TABLE collector_pending
    ADD COLUMN owner         text NOT NULL DEFAULT '',
    ADD COLUMN out_topic     text,
    ADD COLUMN out_partition integer,
    ADD COLUMN out_offset    bigint;
