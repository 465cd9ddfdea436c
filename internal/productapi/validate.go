package productapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/records"
)

// Limits of a product as the API accepts it.
const (
	MaxIDLen      = 64
	MaxTitleLen   = 200
	MaxContentLen = 10000
	MaxImages     = records.MaxImages
	MaxURLLen     = 2048
)

var (
	idRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	priceRE    = regexp.MustCompile(`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// productInput is a validated POST body.
type productInput struct {
	MallID, ProductID, Title, Content, Price, Currency string
	ImageURLs                                          []string
}

// fieldErrors maps each bad field to what is wrong with it.
type fieldErrors map[string]string

// objectFields reads a JSON object's members, naming the keys given more
// than once: encoding/json keeps the last of them, and a proxy or a
// validator in front of the API may read the first.
func objectFields(body []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	notObject := func(err error) error { return fmt.Errorf("body is not a JSON object: %v", err) }
	t, err := dec.Token()
	if err != nil {
		return nil, nil, notObject(err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, nil, notObject(fmt.Errorf("got %v", t))
	}
	raw := map[string]json.RawMessage{}
	var dupes []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, notObject(err)
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, notObject(err)
		}
		if _, seen := raw[k]; seen {
			dupes = append(dupes, k)
		}
		raw[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, notObject(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("body has more than one JSON value")
	}
	return raw, dupes, nil
}

// decodeProduct checks every field of a POST body and names each bad one;
// allow are the image hosts that may be internal addresses.
func decodeProduct(body []byte, allow []string) (*productInput, fieldErrors, error) {
	// encoding/json would turn bytes that are not UTF-8 into U+FFFD
	// silently; a client sending them has a bug worth hearing about.
	if !utf8.Valid(body) {
		return nil, nil, fmt.Errorf("body is not valid UTF-8: send JSON in UTF-8")
	}
	raw, dupes, err := objectFields(body)
	if err != nil {
		return nil, nil, err
	}
	in := &productInput{Currency: "USD"}
	errs := fieldErrors{}
	for _, k := range dupes {
		errs[k] = "given more than once: give each field once"
	}
	checkURL := func(s string) string { return checkImageURL(s, allow) }
	known := map[string]bool{"mallId": true, "productId": true, "title": true, "content": true, "price": true, "currency": true, "imageUrl": true, "imageUrls": true}
	for k := range raw {
		if !known[k] {
			errs[k] = "unknown field: the body takes mallId, productId, title, content, price, currency, imageUrl and imageUrls"
		}
	}
	str := func(name string, required bool) (string, bool) {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			if required {
				errs[name] = "required"
			}
			return "", false
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			errs[name] = "must be a string"
			return "", false
		}
		return s, true
	}
	id := func(name string) string {
		s, ok := str(name, true)
		switch {
		case !ok:
		case s == "":
			errs[name] = "required"
		case len(s) > MaxIDLen:
			errs[name] = fmt.Sprintf("at most %d characters", MaxIDLen)
		case !idRE.MatchString(s):
			errs[name] = "use letters, digits, '.', '_' and '-', starting with a letter or digit"
		}
		return s
	}
	in.MallID, in.ProductID = id("mallId"), id("productId")
	if s, ok := str("title", true); ok {
		if msg := checkText(s, MaxTitleLen, true); msg != "" {
			errs["title"] = msg
		}
		in.Title = strings.TrimSpace(s)
	}
	if s, ok := str("content", false); ok {
		if msg := checkText(s, MaxContentLen, false); msg != "" {
			errs["content"] = msg
		}
		in.Content = s
	}
	if v, ok := raw["price"]; !ok || string(v) == "null" {
		errs["price"] = "required"
	} else {
		var s string
		var n json.Number
		if json.Unmarshal(v, &s) != nil {
			d := json.NewDecoder(bytes.NewReader(v))
			d.UseNumber()
			if d.Decode(&n) == nil {
				s = n.String()
			} else {
				s = "\x00" // neither a string nor a number
			}
		}
		if !priceRE.MatchString(s) {
			errs["price"] = `must be a non-negative decimal with at most 12 digits before the point and 4 after, such as "19.99"`
		}
		in.Price = s
	}
	if s, ok := str("currency", false); ok {
		if !currencyRE.MatchString(s) {
			errs["currency"] = "must be an ISO 4217 code such as USD"
		}
		in.Currency = s
	}
	var urls []string
	if s, ok := str("imageUrl", false); ok {
		if msg := checkURL(s); msg != "" {
			errs["imageUrl"] = msg
		}
		urls = append(urls, s)
	}
	if v, ok := raw["imageUrls"]; ok && string(v) != "null" {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			errs["imageUrls"] = "must be an array of URLs"
		}
		for i, item := range list {
			field := fmt.Sprintf("imageUrls[%d]", i)
			var s string
			if err := json.Unmarshal(item, &s); err != nil {
				errs[field] = "must be a string"
				continue
			}
			if msg := checkURL(s); msg != "" {
				errs[field] = msg
			}
			urls = append(urls, s)
		}
	}
	seen := map[string]bool{}
	for _, u := range urls {
		if !seen[u] {
			seen[u] = true
			in.ImageURLs = append(in.ImageURLs, u)
		}
	}
	_, hasOne := raw["imageUrl"]
	_, hasMany := raw["imageUrls"]
	switch {
	case len(in.ImageURLs) == 0 && !hasOne && !hasMany:
		errs["imageUrl"] = "required: give imageUrl, imageUrls or both"
	case len(in.ImageURLs) == 0 && errs["imageUrl"] == "" && errs["imageUrls"] == "":
		errs["imageUrls"] = "give at least one image URL"
	case len(in.ImageURLs) > MaxImages:
		errs["imageUrls"] = fmt.Sprintf("at most %d distinct images per product", MaxImages)
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	return in, nil, nil
}

func checkText(s string, max int, required bool) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case required && strings.TrimSpace(s) == "":
		return "required"
	case utf8.RuneCountInString(s) > max:
		return fmt.Sprintf("at most %d characters", max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return "must not contain control characters"
		}
	}
	return ""
}

// checkImageURL checks an image URL as the collector will fetch it: a
// host that the fetcher would refuse whatever DNS says (an internal IP
// literal, a zone, a numeric host) is refused here already, unless
// allow-listed.
func checkImageURL(s string, allow []string) string {
	if msg := checkURL(s); msg != "" {
		return msg
	}
	u, _ := url.Parse(s)
	var refused *imagefetch.RefusedError
	if err := imagefetch.CheckURL(u, allow); errors.As(err, &refused) {
		return "must not name " + refused.Why + ": image URLs must point at a public host"
	}
	return ""
}

func checkURL(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > MaxURLLen {
		return fmt.Sprintf("at most %d characters", MaxURLLen)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry a user name or password"
	}
	return ""
}

// validID checks a productId or mallId given in a path or query.
func validID(s string) bool { return s != "" && len(s) <= MaxIDLen && idRE.MatchString(s) }

// ValidID says whether s may be a mallId or productId.
func ValidID(s string) bool { return validID(s) }
