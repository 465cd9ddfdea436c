-- The stream-table join: each valid prompt with the products whose
-- normalised name equals its normalised query, as PRODUCTS_BY_NAME stands
-- when the prompt is processed (NULL when none does).
--
-- Valid, as the built-in join has it: a user, a record key equal to it, a
-- query that is not blank and at most 1024 bytes. (The built-in join sends
-- the others to the dead-letter topic; ksqlDB sends records it cannot
-- deserialize to its processing log.) The prompts are repartitioned by the
-- normalised query to meet the table.

SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS VALID_PROMPTS WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    REPLACE(TRIM(REGEXP_REPLACE(LCASE(UCASE(LCASE(`query`))), '(?U)\s+', ' ')), 'ς', 'σ') AS NAME_KEY,
    `user_id` AS USER_ID,
    `search_id` AS SEARCH_ID,
    `query` AS QUERY,
    `searched_at` AS SEARCHED_AT
  FROM SEARCH_PROMPTS
  WHERE `user_id` IS NOT NULL AND `user_id` <> '' AND USER_KEY = `user_id`
    AND `query` IS NOT NULL
    AND REPLACE(TRIM(REGEXP_REPLACE(LCASE(UCASE(LCASE(`query`))), '(?U)\s+', ' ')), 'ς', 'σ') <> ''
    AND LEN(TO_BYTES(`query`, 'utf8')) <= 1024
  PARTITION BY REPLACE(TRIM(REGEXP_REPLACE(LCASE(UCASE(LCASE(`query`))), '(?U)\s+', ' ')), 'ς', 'σ')
  EMIT CHANGES;

CREATE STREAM IF NOT EXISTS PROMPT_MATCHES WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    V.NAME_KEY AS NAME_KEY,
    V.USER_ID AS USER_ID,
    V.SEARCH_ID AS SEARCH_ID,
    V.QUERY AS QUERY,
    V.SEARCHED_AT AS SEARCHED_AT,
    T.PRODUCTS AS PRODUCTS
  FROM VALID_PROMPTS V
  LEFT JOIN PRODUCTS_BY_NAME T ON V.NAME_KEY = T.NAME_KEY
  EMIT CHANGES;
