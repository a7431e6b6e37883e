// Package atomicfile replaces small state files atomically, for the
// embedded default's JSON snapshots (obol dev). It sees no card data itself;
// callers write only PAN-free state.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with b (mode 0600): a temporary file in the same
// directory, synced, then renamed over path, and the directory synced. A
// crash leaves the old file or the new one, never part of one.
func Write(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
