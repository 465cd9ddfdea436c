package blobstore

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/memblob" // mem:// for tests and throwaway runs
	_ "gocloud.dev/blob/s3blob"  // s3:// for S3 and S3-compatible servers
	"gocloud.dev/gcerrors"
)

// Bucket keeps blobs in a gocloud.dev bucket. gocloud.dev is used rather than
// a hand-written S3 client because it speaks to AWS and every S3-compatible
// server (MinIO, Ceph, R2) through one URL, and ships in-memory and file
// backends that behave like S3 for tests.
type Bucket struct {
	b   *blob.Bucket
	loc string // scheme://bucket/ prefix for Location
}

// OpenBucket opens a bucket URL such as s3://bucket?endpoint=…&region=….
func OpenBucket(ctx context.Context, bucketURL string) (*Bucket, error) {
	u, err := url.Parse(bucketURL)
	if err != nil {
		return nil, fmt.Errorf("BLOB_URL %q: %w", bucketURL, err)
	}
	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s://%s: %w (BLOB_URL takes a directory, file:///dir, s3://bucket?endpoint=…&region=…, or mem://)", u.Scheme, u.Host, err)
	}
	return NewBucket(b, u.Scheme+"://"+u.Host+"/"), nil
}

// NewBucket wraps an open bucket; locPrefix is prepended to keys in Location.
func NewBucket(b *blob.Bucket, locPrefix string) *Bucket {
	return &Bucket{b: b, loc: locPrefix}
}

// Put writes data under key.
func (s *Bucket) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if !ValidKey(key) {
		return fmt.Errorf("invalid blob key %q", key)
	}
	if err := s.b.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	return nil
}

// Stat reports a blob's size and content type.
func (s *Bucket) Stat(ctx context.Context, key string) (Info, error) {
	a, err := s.b.Attributes(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return Info{}, fmt.Errorf("stat blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", key, err)
	}
	return Info{Size: a.Size, ContentType: a.ContentType}, nil
}

// Delete removes a blob; a missing one is not an error.
func (s *Bucket) Delete(ctx context.Context, key string) error {
	if err := s.b.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

// Location is the bucket URL of the key.
func (s *Bucket) Location(key string) string { return s.loc + strings.TrimPrefix(key, "/") }

// Close closes the bucket.
func (s *Bucket) Close() error { return s.b.Close() }
