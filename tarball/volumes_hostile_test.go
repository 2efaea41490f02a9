package tarball_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
)

// A volume of a split bundle that is a FIFO or a device (planted, or a
// link to /dev/zero) is refused when the volumes are opened, at once: not
// waited on, not read. A volume that is a link to a regular file is read.
func TestVolumesNotRegular(t *testing.T) {
	data := randomBytes(3000)
	for _, tc := range []struct {
		name  string
		plant func(t testing.TB, vol string) // replaces volume 2
		want  string                         // in the error; "" reads the volumes
	}{
		{"FIFO", testenv.NotRegular()["FIFO"], "named pipe"},
		{"link to /dev/zero", testenv.NotRegular()["link to /dev/zero"], "character device"},
		{"link to a regular file", func(t testing.TB, vol string) {
			p := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(p, data[1000:2000], 0o644); err != nil {
				t.Fatal(err)
			}
			testenv.PlantLink(t, p, vol)
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
		testenv.PlantFIFO(t, tarball.VolumeName(base, 1))
		if _, err := openAndRead(t, base); err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Fatalf("opening the volumes: %v; want a named pipe refused", err)
		}
	})
}

// openAndRead finds and reads the bundle name, failing the test when it
// has not returned within 20 s (it waits on a FIFO, or reads a device).
func openAndRead(t *testing.T, name string) (data []byte, err error) {
	t.Helper()
	err = testenv.Within(t, "opening "+name, func() error {
		set, err := tarball.FindVolumes(name)
		if err != nil {
			return err
		}
		r, err := set.Open()
		if err != nil {
			return err
		}
		defer r.Close()
		data, err = io.ReadAll(io.LimitReader(r, 1<<20))
		return err
	})
	return data, err
}
