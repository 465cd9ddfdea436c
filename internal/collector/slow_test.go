package collector_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// statusOf is a product's status in the API: "" while unknown.
func (r *rig) statusOf(mall, id string) string {
	r.t.Helper()
	code, body := r.do("GET", "/api/v1/products/"+id+"?mallId="+mall, nil)
	if code != http.StatusOK {
		return ""
	}
	s, _ := body["status"].(string)
	return s
}

// A product from a source other than the API may name any number of
// images: the first MaxImages are collected, the rest refused with a
// reason, and the product ends failed.
func TestImagesPerProductAreCapped(t *testing.T) {
	r := newRig(t)
	var ims []records.Image
	for i := 0; i < 15; i++ {
		ims = append(ims, records.Image{URL: r.imageURL(fmt.Sprintf("many-%d", i))})
	}
	r.produce(records.Product{MallID: "m1", ProductID: "many", Name: "Many", Images: ims})
	eventually(t, 20*time.Second, "the product with 15 images reported", func() bool { return r.statusOf("m1", "many") != "" })
	_, body := r.do("GET", "/api/v1/products/many?mallId=m1", nil)
	reason, _ := body["reason"].(string)
	if body["status"] != "failed" || !strings.Contains(reason, "15 images, more than the 10 a product may have: images 11 to 15 refused") {
		t.Fatalf("%v, want failed naming the refused images", body)
	}
	fetched := 0
	for i := 0; i < 15; i++ {
		if r.hitsOf(fmt.Sprintf("/images/many-%d.png", i)) > 0 {
			fetched++
		}
	}
	if fetched != 10 {
		t.Fatalf("%d images fetched, want the first 10", fetched)
	}
}

