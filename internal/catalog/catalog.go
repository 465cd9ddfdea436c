// Package catalog names what the product API reads about collected products
// and what the collector records: each product's collection status, its
// stored images, and the read interface over them.
package catalog

import (
	"context"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// Status is where a product's image collection stands.
type Status string

// Statuses. A product the collector has not seen yet has no state at all
// (the API calls it pending).
const (
	StatusComplete Status = "complete"
	StatusFailed   Status = "failed"
)

// Image is one stored image; Key is its blob key, Path where a user finds it.
type Image struct {
	URL         string `json:"url"`
	Key         string `json:"key"`
	Path        string `json:"path"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

// Stored is the image as the CompleteProduct record carries it.
func (im Image) Stored() records.StoredImage {
	return records.StoredImage{URL: im.URL, Path: im.Path, SHA256: im.SHA256, Size: im.Size, ContentType: im.ContentType}
}

// Product is the collector's latest word on one product.
type Product struct {
	Product     records.Product
	Status      Status
	Reason      string // why collection failed; empty when complete
	Images      []Image
	CollectedAt time.Time // when the full set was stored; zero unless complete
	UpdatedAt   time.Time
}

// Complete is the product as the complete-products topic carries it.
func (p *Product) Complete() records.CompleteProduct {
	imgs := make([]records.StoredImage, len(p.Images))
	for i, im := range p.Images {
		imgs[i] = im.Stored()
	}
	return records.CompleteProduct{Product: p.Product, Images: imgs, CollectedAt: p.CollectedAt}
}

// Identity names a product: productId is unique within a mall.
type Identity struct {
	MallID    string `json:"m"`
	ProductID string `json:"p"`
}

// ListQuery asks for one page of complete products in (mallId, productId)
// order, after a given identity, optionally within one mall.
type ListQuery struct {
	MallID string
	After  *Identity
	Limit  int
}

// Reader is what the read API needs.
type Reader interface {
	// ListComplete returns up to q.Limit complete products after q.After.
	ListComplete(ctx context.Context, q ListQuery) ([]Product, error)
	// Lookup returns every known state (complete or failed) of productID,
	// one per mall, or only mallID's when it is not empty.
	Lookup(ctx context.Context, productID, mallID string) ([]Product, error)
}
