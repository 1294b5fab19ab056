// Package atomicfile replaces files whole, for the test plugins that write what they are
// given (a reader sees the old content or the new, never a part).
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, with the given mode, by renaming a temporary file of the
// same directory over it.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
