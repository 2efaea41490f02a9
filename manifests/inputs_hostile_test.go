package manifests

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// A manifest file (-f) or a lockfile (--locked) that is a FIFO or a link
// to /dev/zero is refused at once, naming the file and what it is.
func TestInputsNotRegular(t *testing.T) {
	reads := map[string]func(p string) error{
		"Load":     func(p string) error { _, err := Load(p); return err },
		"ReadLock": func(p string) error { _, err := ReadLock(p); return err },
	}
	for kind, plant := range testenv.NotRegular() {
		for fn, read := range reads {
			t.Run(kind+"/"+fn, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "images.yaml")
				plant(t, p)
				err := testenv.Within(t, fn, func() error { return read(p) })
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("%s: %v; want %s refused as not a regular file", fn, err, p)
				}
			})
		}
	}
}
