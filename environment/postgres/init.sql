-- Run once by the postgres image on an empty volume. The built-in sink
-- (`shopstream sink`) writes database shopstream; the Kafka Connect JDBC
-- sinks (environment/connect) write the same table names into their own
-- database, so both paths can run side by side and be compared.
CREATE DATABASE shopstream_connect;
