package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Each plant puts what it says at p, replacing a regular file already
// there.
func TestPlant(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		plant func(p string)
		mode  os.FileMode
	}{
		{func(p string) { PlantFIFO(t, p) }, os.ModeNamedPipe},
		{func(p string) { PlantLink(t, "/dev/zero", p) }, os.ModeSymlink},
		{func(p string) { NotRegular()["FIFO"](t, p) }, os.ModeNamedPipe},
		{func(p string) { NotRegular()["link to /dev/zero"](t, p) }, os.ModeSymlink},
	} {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		tc.plant(p)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().Type() != tc.mode {
			t.Errorf("%s after the plant: %v, %v; want %v", p, fi.Mode(), err, tc.mode)
		}
		if tc.mode == os.ModeSymlink {
			if target, _ := os.Readlink(p); target != "/dev/zero" {
				t.Errorf("link to %q, want /dev/zero", target)
			}
		}
	}
	if n := len(NotRegular()); n != 2 {
		t.Errorf("%d plants in NotRegular, want 2", n)
	}
}
