-- The per-user aggregation into personal_recom, in the Recommendation
-- schema shopstream registered (${recom_schema_id}, looked up by
-- `shopstream bootstrap`), so readers see one record type whichever path
-- built it. The rules are streamer/recommender's (testdata/scenario.json):
-- a product listed once per user with its newest recommendation, newest
-- first (recommended_at descending, then mall_id/product_id), at most 50;
-- last_query is the newest prompt's, matched or not.
--
-- The join repartitioned prompts by name, so a user's prompts arrive here
-- in no particular order: everything is decided by searched_at, never by
-- arrival. SORT_KEY makes that order a string order: 13 digits of
-- 9999999999999 - searched_at (milliseconds), a space, then
-- mall_id/product_id; ARRAY_SORT then puts the newest first.
--
-- Every prompt also yields one marker row (empty product ids) carrying its
-- query in `name`, so that a prompt that matched nothing still moves the
-- last search; markers' sort keys start with '~' and are left out of the
-- products.

SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS RECOMMENDATION_EVENTS WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    NAME_KEY,
    USER_ID,
    SEARCH_ID,
    SEARCHED_AT,
    EXPLODE(ARRAY_CONCAT(
      ARRAY[STRUCT(
        `product_id` := '',
        `mall_id` := '',
        `name` := QUERY,
        `price` := STRUCT(`amount` := '', `currency` := '')
      )],
      PRODUCTS
    )) AS P
  FROM PROMPT_MATCHES
  EMIT CHANGES;

-- Every recommendation of a product (or marker) to a user. The key spells
-- the user's length first, so no user and product can run together.
CREATE TABLE IF NOT EXISTS USER_PRODUCT_HISTORY WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    CONCAT(CAST(LEN(USER_ID) AS STRING), ':', USER_ID, '|', P->`mall_id`, '/', P->`product_id`) AS USER_PRODUCT,
    LATEST_BY_OFFSET(USER_ID) AS USER_ID,
    COLLECT_LIST(CONCAT(
      CASE WHEN P->`mall_id` = '' AND P->`product_id` = '' THEN '~' ELSE '' END,
      LPAD(CAST(9999999999999 - UNIX_TIMESTAMP(SEARCHED_AT) AS STRING), 13, '0'),
      ' ', P->`mall_id`, '/', P->`product_id`
    )) AS SORT_KEYS,
    COLLECT_LIST(STRUCT(
      `product_id` := P->`product_id`,
      `mall_id` := P->`mall_id`,
      `name` := P->`name`,
      `price` := P->`price`,
      `search_id` := SEARCH_ID,
      `recommended_at` := SEARCHED_AT
    )) AS RECS
  FROM RECOMMENDATION_EVENTS
  GROUP BY CONCAT(CAST(LEN(USER_ID) AS STRING), ':', USER_ID, '|', P->`mall_id`, '/', P->`product_id`)
  EMIT CHANGES;

-- The newest recommendation of each product (and the newest marker) per user.
CREATE TABLE IF NOT EXISTS USER_PRODUCTS WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    USER_PRODUCT,
    USER_ID,
    ARRAY_MIN(SORT_KEYS) AS SORT_KEY,
    AS_MAP(SORT_KEYS, RECS)[ARRAY_MIN(SORT_KEYS)] AS REC
  FROM USER_PRODUCT_HISTORY
  EMIT CHANGES;

-- Each user's rows, collected; a table aggregation, so a row that changes
-- is taken out before its new value goes in.
CREATE TABLE IF NOT EXISTS USER_RECOMMENDATIONS WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    USER_ID,
    COLLECT_LIST(SORT_KEY) AS SORT_KEYS,
    COLLECT_LIST(REC) AS RECS
  FROM USER_PRODUCTS
  GROUP BY USER_ID
  EMIT CHANGES;

CREATE TABLE IF NOT EXISTS PERSONAL_RECOM WITH (
  KAFKA_TOPIC = '${recom_topic}',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  VALUE_SCHEMA_ID = ${recom_schema_id}
) AS
  SELECT
    USER_ID,
    AS_VALUE(USER_ID) AS `user_id`,
    TRANSFORM(
      SLICE(ARRAY_SORT(FILTER(SORT_KEYS, k => NOT (k LIKE '~%'))), 1, 50),
      k => AS_MAP(SORT_KEYS, RECS)[k]
    ) AS `products`,
    AS_MAP(SORT_KEYS, RECS)[ARRAY_MIN(FILTER(SORT_KEYS, k => k LIKE '~%'))]->`name` AS `last_query`,
    AS_MAP(SORT_KEYS, RECS)[ARRAY_MIN(FILTER(SORT_KEYS, k => k LIKE '~%'))]->`recommended_at` AS `last_searched_at`
  FROM USER_RECOMMENDATIONS
  EMIT CHANGES;
