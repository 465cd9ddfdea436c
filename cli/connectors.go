package main

import "github.com/shopstream/shopstream/internal/config"

// connectorVars fill the ${NAME} placeholders of environment/connect/*.json:
// the topic names as configured, under the seed's env var names.
func connectorVars(cfg *config.Config) map[string]string {
	t := cfg.Topics
	return map[string]string{
		"PRODUCT_TOPIC":                   t.Products,
		"PRODUCT_WITH_FULL_IMG_SET_TOPIC": t.CompleteProducts,
		"PRODUCT_FILTERED_TOPIC":          t.Filtered,
		"PRODUCT_FIND_TOPIC":              t.Find,
		"PERSONAL_RECOM_TOPIC":            t.Recommendations,
		"DLQ_TOPIC":                       t.DLQ,
	}
}
