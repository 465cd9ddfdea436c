-- The table of filtered products keyed by the normalised name: white space
-- trimmed and collapsed, case folded. Java has no case folding, but
-- LCASE(UCASE(LCASE(x))) agrees with Unicode's full folding (Go's
-- cases.Fold in the built-in join) for all but a few scripts: 'ß', 'ẞ' and
-- 'SS' all become 'ss'; the final sigma is folded to sigma by hand.
-- (?U) makes \s match Unicode white space, as Go's unicode.IsSpace does.
--
-- Several products may share a name, so each name holds the list of its
-- products. A table aggregation takes a product's old row out of its old
-- name's list before adding the new row, so updates, renames and deletes
-- of FILTERED_PRODUCTS all show here.

SET 'auto.offset.reset' = 'earliest';

CREATE TABLE IF NOT EXISTS PRODUCTS_BY_NAME WITH (VALUE_FORMAT = 'JSON') AS
  SELECT
    REPLACE(TRIM(REGEXP_REPLACE(LCASE(UCASE(LCASE(`name`))), '(?U)\s+', ' ')), 'ς', 'σ') AS NAME_KEY,
    COLLECT_LIST(STRUCT(
      `product_id` := `product_id`,
      `mall_id` := `mall_id`,
      `name` := `name`,
      `price` := `price`
    )) AS PRODUCTS
  FROM FILTERED_PRODUCTS
  GROUP BY REPLACE(TRIM(REGEXP_REPLACE(LCASE(UCASE(LCASE(`name`))), '(?U)\s+', ' ')), 'ς', 'σ')
  EMIT CHANGES;
