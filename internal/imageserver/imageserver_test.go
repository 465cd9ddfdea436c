package imageserver

import (
	"bytes"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestServesDeterministicPNGs(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	get := func(path string) (int, string, []byte) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	code, ct, a := get("/images/shoe-1.png")
	if code != 200 || ct != "image/png" {
		t.Fatalf("GET shoe-1: %d %s", code, ct)
	}
	img, err := png.Decode(bytes.NewReader(a))
	if err != nil || img.Bounds().Dx() != DefaultSize {
		t.Fatalf("not a %dpx PNG: %v", DefaultSize, err)
	}
	_, _, again := get("/images/shoe-1.png")
	_, _, other := get("/images/shoe-2.png")
	if !bytes.Equal(a, again) || bytes.Equal(a, other) {
		t.Fatal("same name must give the same bytes and another name other bytes")
	}
	_, _, big := get("/images/shoe-1.png?size=300")
	if img, err := png.Decode(bytes.NewReader(big)); err != nil || img.Bounds().Dx() != 300 {
		t.Fatalf("size=300: %v", err)
	}
	for i, p := range []string{"/images/../x.png", "/images/a.jpg", "/images/a%2Fb.png", "/images/.png"} {
		if code, _, _ := get(p); code != http.StatusNotFound {
			t.Errorf("#%d %s: %d, want 404", i, p, code)
		}
	}
	if code, _, _ := get("/images/a.png?size=99999"); code != http.StatusBadRequest {
		t.Errorf("oversized size: %d, want 400", code)
	}
}
