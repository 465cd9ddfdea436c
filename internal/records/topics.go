package records

// Topics names every topic of the pipeline. The names are configuration (the
// seed's env vars rename them), but they live beside the records so that a
// component that reads or writes them needs nothing of the command line.
type Topics struct {
	Products         string
	CompleteProducts string
	Filtered         string
	Find             string
	Recommendations  string
	Filter           string
	FilterApplied    string
	DLQ              string
	// DLQReplayed is the ledger of dead-lettered records sent back to their
	// source topic: compacted, keyed by the record's source topic, partition
	// and offset, so that each goes back once however often `dlq replay`
	// runs and however many components dead-lettered it.
	DLQReplayed string
}

// DefaultTopics are the names the pipeline uses unless configured otherwise:
// the seed's, plus shopstream's own control and dead-letter topics.
func DefaultTopics() Topics {
	return Topics{
		Products:         "shop_products",
		CompleteProducts: "products_with_full_img_set",
		Filtered:         "analytic_products_filtered",
		Find:             "analytic_products_find",
		Recommendations:  "personal_recom",
		Filter:           "shopstream_filter",
		FilterApplied:    "shopstream_filter_applied",
		DLQ:              "shop_products_dlq",
		DLQReplayed:      "shop_products_dlq_replayed",
	}
}
