package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/bundle-tool/bundle/internal/safefs"
)

// WriteFile writes data to path (mode perm) through a temp file beside it,
// ".<name>.tmp-<digits>": written, fsynced, renamed over path, and path's
// directory fsynced. Errors say "writing <path>: …".
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = fill(f, data, perm)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// WriteFileIn is WriteFile for name inside root: no link leads the temp
// file or the rename out of root. Errors name root's path joined with
// name.
func WriteFileIn(root *os.Root, name string, data []byte, perm fs.FileMode) error {
	shown := filepath.Join(root.Name(), name)
	dir := path.Dir(name)
	f, tmp, err := safefs.CreateTemp(root, dir, "."+path.Base(name)+".tmp-", "", perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", shown, err)
	}
	err = fill(f, data, perm)
	if err == nil {
		err = safefs.Explain(root, name, root.Rename(tmp, name))
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", shown, err)
	}
	return SyncDirIn(root, dir)
}

// fill writes data to f, sets its mode (a temp file is made 0600) and
// fsyncs and closes it. f is closed on every path.
func fill(f *os.File, data []byte, perm fs.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir fsyncs the directory dir, making a rename or a new name in it
// durable. Errors say "syncing <dir>: …".
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// SyncDirIn fsyncs dir inside root.
func SyncDirIn(root *os.Root, dir string) error {
	shown := filepath.Join(root.Name(), dir)
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", shown, safefs.Explain(root, dir, err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", shown, err)
	}
	return nil
}
