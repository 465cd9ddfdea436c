package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strings"
)

// Local keeps blobs as files under a root directory. A blob is written to a
// temporary file and renamed into place, so a reader never sees half a file.
type Local struct {
	root string
}

// NewLocal returns a store rooted at dir, creating it.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve image directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create image directory %s: %w", abs, err)
	}
	return &Local{root: abs}, nil
}

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

func (l *Local) path(key string) (string, error) {
	if !ValidKey(key) {
		return "", fmt.Errorf("invalid blob key %q", key)
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Put writes data under key.
func (l *Local) Put(_ context.Context, key string, data []byte, _ string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store blob %s: %w", key, err)
	}
	return nil
}

// Stat reports a blob's size; the content type comes from the key's
// extension, which the collector derives from the sniffed type.
func (l *Local) Stat(_ context.Context, key string) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("stat blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", key, err)
	}
	return Info{Size: fi.Size(), ContentType: mime.TypeByExtension(filepath.Ext(p))}, nil
}

// Delete removes a blob and then every directory it leaves empty, up to the
// root, so a deleted product leaves nothing behind.
func (l *Local) Delete(_ context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	for dir := filepath.Dir(p); dir != l.root && strings.HasPrefix(dir, l.root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		// Remove fails on a directory that is not empty, which ends the climb.
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// Location is the blob's absolute file path.
func (l *Local) Location(key string) string {
	return filepath.Join(l.root, filepath.FromSlash(key))
}

// Close does nothing; it is there for the interface.
func (l *Local) Close() error { return nil }
