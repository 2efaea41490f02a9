package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A manifest file (-f) or a lockfile (--locked) that is a FIFO or a link
// to /dev/zero is refused at once, naming the file and what it is.
func TestInputsNotRegular(t *testing.T) {
	plants := map[string]func(t *testing.T, p string){
		"FIFO": func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"link to /dev/zero": func(t *testing.T, p string) {
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		},
	}
	reads := map[string]func(p string) error{
		"Load":     func(p string) error { _, err := Load(p); return err },
		"ReadLock": func(p string) error { _, err := ReadLock(p); return err },
	}
	for kind, plant := range plants {
		for fn, read := range reads {
			t.Run(kind+"/"+fn, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "images.yaml")
				plant(t, p)
				done := make(chan error, 1)
				go func() { done <- read(p) }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
						t.Errorf("%s: %v; want %s refused as not a regular file", fn, err, p)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%s has not returned after 20 s: it waits on or reads %s", fn, p)
				}
			})
		}
	}
}
