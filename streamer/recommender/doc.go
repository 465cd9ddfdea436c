// Package recommender is shopstream's built-in recommendation join: every
// search prompt is joined with the table of filtered products on the
// normalised name, and the user's Recommendation in the recommendations topic
// is updated, exactly once.
//
// Each instance reads every partition of the filtered-products topic into its
// own table (like a Kafka Streams global table), and consumes prompts as a
// member of a consumer group inside transactions, so instances can be added
// and removed and every user still gets the same answers. A user's previous
// Recommendation is restored from the compacted recommendations topic: the
// recommender writes each user's record to the partition number of the
// user's prompts, so the partition of prompts an instance owns is exactly the
// partition of recommendations it must restore, like a Kafka Streams store
// restored from its changelog.
//
// The package never imports Temporal; it runs inside the streamer process or
// as `shopstream recommender`.
package recommender
