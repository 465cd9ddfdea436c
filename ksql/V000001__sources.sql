-- The two inputs of the recommendation join, as shopstream writes them
-- (Avro values in the Confluent wire format, plain string keys).
--
-- FILTERED_PRODUCTS is a table keyed by mall_id/product_id: an update
-- replaces a product, a tombstone deletes it. SEARCH_PROMPTS is a stream
-- keyed by user. Columns carry the Avro field names; backticks keep them
-- lower case. ${filtered_topic} and ${find_topic} are filled in by
-- `shopstream bootstrap` from PRODUCT_FILTERED_TOPIC and PRODUCT_FIND_TOPIC.

CREATE TABLE IF NOT EXISTS FILTERED_PRODUCTS (
  PRODUCT_KEY STRING PRIMARY KEY,
  `product_id` STRING,
  `mall_id` STRING,
  `name` STRING,
  `price` STRUCT<`amount` STRING, `currency` STRING>
) WITH (
  KAFKA_TOPIC = '${filtered_topic}',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO'
);

CREATE STREAM IF NOT EXISTS SEARCH_PROMPTS (
  USER_KEY STRING KEY,
  `search_id` STRING,
  `user_id` STRING,
  `query` STRING,
  `searched_at` TIMESTAMP
) WITH (
  KAFKA_TOPIC = '${find_topic}',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO'
);
