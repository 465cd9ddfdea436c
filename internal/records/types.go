// Package records holds shopstream's record types, their Avro schemas and the
// Confluent wire-format serde that every component shares.
package records

import "time"

// Price is an exact decimal amount with its currency.
type Price struct {
	Amount   string `avro:"amount" json:"amount"`
	Currency string `avro:"currency" json:"currency"`
}

// Image is an image URL as a shop published it.
type Image struct {
	URL string `avro:"url" json:"url"`
	Alt string `avro:"alt" json:"alt"`
}

// MaxImages is how many distinct images a product may have: the API
// refuses more, and the collector collects no more from any source.
const MaxImages = 10

// Product is what shops publish to the product topic.
type Product struct {
	ProductID      string            `avro:"product_id" json:"product_id"`
	MallID         string            `avro:"mall_id" json:"mall_id"`
	Name           string            `avro:"name" json:"name"`
	Description    string            `avro:"description" json:"description"`
	Price          Price             `avro:"price" json:"price"`
	Category       string            `avro:"category" json:"category"`
	Brand          string            `avro:"brand" json:"brand"`
	SKU            string            `avro:"sku" json:"sku"`
	Tags           []string          `avro:"tags" json:"tags"`
	Images         []Image           `avro:"images" json:"images"`
	Stock          int32             `avro:"stock" json:"stock"`
	Specifications map[string]string `avro:"specifications" json:"specifications"`
	CreatedAt      time.Time         `avro:"created_at" json:"created_at"`
	UpdatedAt      time.Time         `avro:"updated_at" json:"updated_at"`
}

// Key is the product's record key, "mall_id/product_id".
func (p *Product) Key() string { return ProductKey(p.MallID, p.ProductID) }

// ProductKey builds the record key shared by every product topic.
func ProductKey(mallID, productID string) string { return mallID + "/" + productID }

// StoredImage is an image that the collector stored in blob storage.
type StoredImage struct {
	URL         string `avro:"url" json:"url"`
	Path        string `avro:"path" json:"path"`
	SHA256      string `avro:"sha256" json:"sha256"`
	Size        int64  `avro:"size" json:"size"`
	ContentType string `avro:"content_type" json:"content_type"`
}

// CompleteProduct is a product whose images have all been collected.
type CompleteProduct struct {
	Product     Product       `avro:"product" json:"product"`
	Images      []StoredImage `avro:"images" json:"images"`
	CollectedAt time.Time     `avro:"collected_at" json:"collected_at"`
}

// SearchPrompt is one search by one user.
type SearchPrompt struct {
	SearchID   string    `avro:"search_id" json:"search_id"`
	UserID     string    `avro:"user_id" json:"user_id"`
	Query      string    `avro:"query" json:"query"`
	SearchedAt time.Time `avro:"searched_at" json:"searched_at"`
}

// RecommendedProduct is one product recommended to a user.
type RecommendedProduct struct {
	ProductID     string    `avro:"product_id" json:"product_id"`
	MallID        string    `avro:"mall_id" json:"mall_id"`
	Name          string    `avro:"name" json:"name"`
	Price         Price     `avro:"price" json:"price"`
	SearchID      string    `avro:"search_id" json:"search_id"`
	RecommendedAt time.Time `avro:"recommended_at" json:"recommended_at"`
}

// Recommendation is a user's current recommendations, newest first.
type Recommendation struct {
	UserID         string               `avro:"user_id" json:"user_id"`
	Products       []RecommendedProduct `avro:"products" json:"products"`
	LastQuery      string               `avro:"last_query" json:"last_query"`
	LastSearchedAt time.Time            `avro:"last_searched_at" json:"last_searched_at"`
}

// FilterState is the streamer's filter as the StreamFilter workflow owns it.
type FilterState struct {
	Version       int64     `avro:"version" json:"version"`
	Substring     string    `avro:"substring" json:"substring"`
	CaseSensitive bool      `avro:"case_sensitive" json:"case_sensitive"`
	SetAt         time.Time `avro:"set_at" json:"set_at"`
	SetBy         string    `avro:"set_by" json:"set_by"`
}
