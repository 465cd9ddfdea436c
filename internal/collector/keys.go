package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

var plainID = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// pathElem makes an id safe as one element of a blob key: plain ids stay as
// they are, anything else (slashes, dots only, unicode) becomes "~" and a
// digest, which no plain id can start with.
func pathElem(id string) string {
	if plainID.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "~" + hex.EncodeToString(sum[:16])
}

// BlobKey is where an image of a product is stored. The key is addressed by
// the image's content (its SHA-256) within the product's own prefix: an
// unchanged image maps to the same key, and deleting a product removes only
// its own blobs, with no reference counting across products.
func BlobKey(mallID, productID, sha256hex, ext string) string {
	return strings.Join([]string{pathElem(mallID), pathElem(productID), sha256hex + ext}, "/")
}

// splitKey returns the (mall, product) of a record key "mall/product".
func splitKey(key string) (mall, product string, ok bool) {
	mall, product, ok = strings.Cut(key, "/")
	return mall, product, ok && mall != "" && product != ""
}
