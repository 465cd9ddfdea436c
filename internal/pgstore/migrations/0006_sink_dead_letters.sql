-- Dead letters the sink is about to send, committed before it sends them.
-- The sink sends a batch's dead letters just before the batch's transaction
-- commits; one killed between the two reads the records again when it
-- restarts, finds their rows here, and looks in the dead-letter topic from
-- sent_after for the letters instead of sending them twice. A batch that
-- commits deletes its rows.
CREATE TABLE sink_dead_letters (
    grp        text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    sent_after timestamptz NOT NULL,
    PRIMARY KEY (grp, topic, partition, "offset")
);
