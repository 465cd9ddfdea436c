-- The product tables keep half of every page free, so that an update's new
-- row version fits on the page of the old one: PostgreSQL then writes it as
-- a heap-only tuple, with no new index entry and no uniqueness check, and
-- prunes the old version from the page when it next reads it. A product is
-- updated far more often than it is inserted (the malls re-send their
-- catalogues), and the sink's updates cost about half as much on the server
-- this way (README, "sink"). The price is the space: a table loaded once and
-- never updated takes twice the pages, which one that is updated takes
-- anyway (old and new versions side by side until VACUUM).
--
-- The setting applies to pages written from now on; an existing table
-- reaches it as its rows are updated, or at once with VACUUM FULL.
ALTER TABLE products SET (fillfactor = 50);
ALTER TABLE filtered_products SET (fillfactor = 50);
ALTER TABLE complete_products SET (fillfactor = 50);
