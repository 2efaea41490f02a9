package tarball_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/tarball"
)

// A volume of a split bundle that is a FIFO or a device (planted, or a
// link to /dev/zero) is refused when the volumes are opened, at once: not
// waited on, not read. A volume that is a link to a regular file is read.
func TestVolumesNotRegular(t *testing.T) {
	data := randomBytes(3000)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, vol string) // replaces volume 2
		want  string                         // in the error; "" reads the volumes
	}{
		{"FIFO", func(t *testing.T, vol string) {
			if err := syscall.Mkfifo(vol, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "named pipe"},
		{"link to /dev/zero", func(t *testing.T, vol string) {
			if err := os.Symlink("/dev/zero", vol); err != nil {
				t.Fatal(err)
			}
		}, "character device"},
		{"link to a regular file", func(t *testing.T, vol string) {
			p := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(p, data[1000:2000], 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p, vol); err != nil {
				t.Fatal(err)
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "images.tar")
			splitFile(t, dir, "images.tar", data, 1000)
			vol := tarball.VolumeName(base, 2)
			if err := os.Remove(vol); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, vol)
			got, err := openAndRead(t, base)
			if tc.want == "" {
				if err != nil || string(got) != string(data) {
					t.Fatalf("reading the volumes: %d bytes, %v; want the %d bytes", len(got), err, len(data))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), vol) {
				t.Fatalf("opening the volumes: %v; want an error naming %s as %s", err, vol, tc.want)
			}
		})
	}

	// The only volume, a FIFO, found by the base name: a split bundle's
	// volume, so not read as a pipe.
	t.Run("FIFO as the only volume", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "images.tar")
		if err := syscall.Mkfifo(tarball.VolumeName(base, 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openAndRead(t, base); err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Fatalf("opening the volumes: %v; want a named pipe refused", err)
		}
	})
}

// openAndRead finds and reads the bundle name, failing the test when it
// has not returned within 20 s (it waits on a FIFO, or reads a device).
func openAndRead(t *testing.T, name string) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		set, err := tarball.FindVolumes(name)
		if err != nil {
			done <- result{nil, err}
			return
		}
		r, err := set.Open()
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer r.Close()
		data, err := io.ReadAll(io.LimitReader(r, 1<<20))
		done <- result{data, err}
	}()
	select {
	case res := <-done:
		return res.data, res.err
	case <-time.After(20 * time.Second):
		t.Fatalf("opening %s has not returned after 20 s: it waits on or reads a planted volume", name)
		return nil, nil
	}
}
