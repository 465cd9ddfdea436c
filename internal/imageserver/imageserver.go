// Package imageserver serves deterministic PNG images generated with the
// standard library, so the embedded stack has images to collect without the
// internet: the same name always gives the same bytes.
package imageserver

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// PathPrefix is where the handler is mounted.
const PathPrefix = "/images/"

// DefaultSize is the side of a generated image in pixels; ?size= changes it.
const DefaultSize = 64

// MaxSize bounds ?size= so one request cannot make the server draw for long
// (measured here: 18 ms for 512 px, 256 ms for the 2048 px allowed before).
const MaxSize = 512

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// URL is the address of the image called name on a server at base
// (for example http://127.0.0.1:8080).
func URL(base, name string) string {
	return strings.TrimRight(base, "/") + PathPrefix + name + ".png"
}

// PNG draws the image called name at size×size pixels: two colours and a
// stripe pattern derived from the name's SHA-256.
func PNG(name string, size int) ([]byte, error) {
	h := sha256.Sum256([]byte(name))
	a := color.NRGBA{h[0], h[1], h[2], 255}
	b := color.NRGBA{h[3], h[4], h[5], 255}
	period := int(h[6]%7) + 3
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			c := a
			if ((x+y*int(h[7]%3+1))/period)%2 == 0 {
				c = b
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode image %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Handler serves GET /images/{name}.png[?size=N].
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		file := strings.TrimPrefix(r.URL.Path, PathPrefix)
		name, ok := strings.CutSuffix(file, ".png")
		if !ok || !nameRE.MatchString(name) {
			http.Error(w, "no such image: want /images/{name}.png with a name of letters, digits, - and _", http.StatusNotFound)
			return
		}
		size := DefaultSize
		if s := r.URL.Query().Get("size"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxSize {
				http.Error(w, fmt.Sprintf("size %q: want 1 to %d", s, MaxSize), http.StatusBadRequest)
				return
			}
			size = n
		}
		data, err := PNG(name, size)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		_, _ = w.Write(data)
	})
}
