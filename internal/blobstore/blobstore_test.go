package blobstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gocloud.dev/blob/fileblob"
)

// Every backend must behave the same to the collector: put, stat, overwrite,
// delete (twice), and refuse keys that climb out of the store.
func testContract(t *testing.T, s Store) {
	ctx := context.Background()
	key := "m1/p1/abc.png"
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat before put: err %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, key, []byte("12345"), "image/png"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, key)
	if err != nil || info.Size != 5 || info.ContentType != "image/png" {
		t.Fatalf("stat after put: %+v %v", info, err)
	}
	if err := s.Put(ctx, key, []byte("123"), "image/png"); err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Stat(ctx, key); info.Size != 3 {
		t.Fatalf("overwrite: size %d, want 3", info.Size)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat after delete: err %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	for _, bad := range []string{"", "/abs", "../x", "a/../../x", "a//b", "a/./b"} {
		if err := s.Put(ctx, bad, []byte("x"), "image/png"); err == nil {
			t.Errorf("put %q: accepted a key outside the store", bad)
		}
	}
}

func TestLocal(t *testing.T) {
	dir := t.TempDir()
	s, err := NewLocal(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	testContract(t, s)
	// The file is where Location says, and deleting it leaves no empty
	// directories behind.
	ctx := context.Background()
	if err := s.Put(ctx, "m/p/k.png", []byte("png!"), "image/png"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.Location("m/p/k.png"))
	if err != nil || !bytes.Equal(got, []byte("png!")) {
		t.Fatalf("file at Location: %q %v", got, err)
	}
	if err := s.Delete(ctx, "m/p/k.png"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.Root())
	if len(entries) != 0 {
		t.Fatalf("root not empty after delete: %v", entries)
	}
}

func TestMemBucket(t *testing.T) {
	s, err := Open(context.Background(), "mem://", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testContract(t, s)
	if got := s.Location("a/b.png"); got != "mem:///a/b.png" {
		t.Fatalf("Location %q", got)
	}
}

// S3 itself cannot run here; gocloud.dev's s3blob shares the Bucket code
// path with its file backend, which is exercised here with the same contract.
func TestFileBucket(t *testing.T) {
	b, err := fileblob.OpenBucket(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewBucket(b, "file:///")
	defer s.Close()
	testContract(t, s)
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		url, want string
	}{
		{"", filepath.Join(dir, "images")},
		{filepath.Join(dir, "x"), filepath.Join(dir, "x")},
		{"file://" + filepath.Join(dir, "y"), filepath.Join(dir, "y")},
	} {
		s, err := Open(context.Background(), tc.url, dir)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if l, ok := s.(*Local); !ok || l.Root() != tc.want {
			t.Fatalf("#%d: %T %+v, want local store at %s", i, s, s, tc.want)
		}
	}
	if _, err := Open(context.Background(), "gopher://nope", dir); err == nil {
		t.Fatal("an unknown scheme opened")
	}
}
