// Package streamer is shopstream's hot path: a consumer group reads the
// product topic, reads only each product's name from the raw Avro bytes,
// forwards the products whose name contains the current substring to the
// filtered topic, and sends what it cannot read to the dead-letter topic; all
// of it exactly once, in Kafka transactions.
//
// The filter is not configured here: the StreamFilter workflow publishes
// each state to a compacted control topic, every instance follows that topic
// and switches between two records, and each instance reports the version it
// applied to another compacted topic. The package never imports Temporal (a
// test checks), so the hot path never waits on it.
package streamer
