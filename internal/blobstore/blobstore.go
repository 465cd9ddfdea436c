// Package blobstore keeps collected images: in a local directory by default,
// or in any bucket gocloud.dev opens (S3 and S3-compatible servers, memory).
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// ErrNotFound is returned by Stat for a key that holds nothing.
var ErrNotFound = errors.New("blob not found")

// Info describes a stored blob.
type Info struct {
	Size        int64
	ContentType string
}

// Store is where images live. Keys are slash-separated relative paths; Put
// of an existing key overwrites it, Delete of a missing key succeeds, so the
// collector can repeat any step after a crash.
type Store interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	Stat(ctx context.Context, key string) (Info, error)
	Delete(ctx context.Context, key string) error
	// Location is where a key is stored, as a user finds it: a file path
	// for the local store, a bucket URL (s3://bucket/key) otherwise.
	Location(key string) string
	Close() error
}

// Open opens the store a BLOB_URL names:
//
//	""                         the directory images under dataDir
//	/some/dir, ./dir, file:///some/dir   a local directory
//	s3://bucket?endpoint=http://host:9000&region=us-east-1&use_path_style=true
//	mem://                     an in-memory bucket (tests, throwaway runs)
func Open(ctx context.Context, blobURL, dataDir string) (Store, error) {
	switch {
	case blobURL == "":
		return NewLocal(filepath.Join(dataDir, "images"))
	case strings.HasPrefix(blobURL, "file://"):
		u, err := url.Parse(blobURL)
		if err != nil || u.Path == "" {
			return nil, fmt.Errorf("BLOB_URL %q: want file:///absolute/dir", blobURL)
		}
		return NewLocal(u.Path)
	case !strings.Contains(blobURL, "://"):
		return NewLocal(blobURL)
	}
	return OpenBucket(ctx, blobURL)
}

// ValidKey reports whether key is a relative slash path with no empty, "."
// or ".." element, so no key can reach outside the store.
func ValidKey(key string) bool {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return false
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}
