-- One table per materialised topic. The primary key is the record key
-- (mall_id/product_id for products, user_id for recommendations); searches
-- are keyed by search_id because the search topic is keyed by user.
-- Nested fields that a column would not fit are JSONB. source_partition and
-- source_offset name the Kafka record a row came from.

CREATE TABLE products (
    key              text PRIMARY KEY,
    product_id       text NOT NULL,
    mall_id          text NOT NULL,
    name             text NOT NULL,
    description      text NOT NULL,
    price_amount     numeric NOT NULL,
    price_currency   text NOT NULL,
    category         text NOT NULL,
    brand            text NOT NULL,
    sku              text NOT NULL,
    tags             text[] NOT NULL,
    images           jsonb NOT NULL,
    stock            integer NOT NULL,
    specifications   jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

-- Products that passed the streamer's filter: the same shape.
CREATE TABLE filtered_products (LIKE products INCLUDING ALL);

-- Products whose images were all collected: the product plus where each
-- image is stored.
CREATE TABLE complete_products (LIKE products INCLUDING ALL);
ALTER TABLE complete_products
    ADD COLUMN stored_images jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN collected_at timestamptz NOT NULL DEFAULT 'epoch';

CREATE TABLE searches (
    search_id        text PRIMARY KEY,
    user_id          text NOT NULL,
    query            text NOT NULL,
    searched_at      timestamptz NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now()
);
-- A tombstone on the search topic (keyed by user) deletes the user's searches.
CREATE INDEX searches_user_id ON searches (user_id);

CREATE TABLE recommendations (
    user_id          text PRIMARY KEY,
    products         jsonb NOT NULL,
    last_query       text NOT NULL,
    last_searched_at timestamptz NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

-- The sink's consumed offsets, written in the same transaction as the rows
-- they produced: the next offset to read per group, topic and partition.
CREATE TABLE sink_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
