package bundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/verify"
)

// SidecarSuffix ends the name of the signature file that create writes
// beside a signed bundle (images.tar.sigstore.json; for a split bundle
// beside its volumes, under their base name).
const SidecarSuffix = ".sigstore.json"

// readKeys reads the public keys verify and load check a signature
// against (--key); any one of them suffices.
func readKeys(paths []string) ([]*sign.PublicKey, error) {
	var keys []*sign.PublicKey
	for _, p := range paths {
		k, err := sign.ReadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// sidecar sets vo from the signature file beside the bundle whose path (or
// split bundle's base name) is path, when there is one: a regular file,
// read through safefs, at most sign.MaxSignatureSize bytes (a larger one
// is a finding). A file there that cannot be opened is an error, as for
// the checksum file.
func sidecar(path string, vo *verify.Options) error {
	if path == "" {
		return nil // stdin
	}
	name := path + SidecarSuffix
	vo.SidecarFile = filepath.Base(name)
	data, err := safefs.ReadFile(name, sign.MaxSignatureSize)
	var tl *safefs.TooLargeError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case errors.As(err, &tl):
		vo.SidecarErr = fmt.Errorf("larger than %d bytes", sign.MaxSignatureSize)
	case err != nil:
		return fmt.Errorf("reading the signature file: %w", err)
	default:
		vo.Sidecar = data
	}
	return nil
}

// writeSidecar puts a signed bundle's signature beside it (atomically,
// before the bundle is renamed into place), or removes the one an earlier
// signed bundle of that name left, which would belong to another bundle.
func writeSidecar(base string, sig []byte) error {
	name := base + SidecarSuffix
	if sig != nil {
		return atomicfile.WriteFile(name, sig, 0o644)
	}
	if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() {
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("removing the signature of the earlier bundle: %w", err)
		}
	}
	return nil
}
