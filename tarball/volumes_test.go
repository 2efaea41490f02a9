package tarball_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
)

func TestParseVolumeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		base string
		n    int
		ok   bool
	}{
		{"images.tar.001", "images.tar", 1, true},
		{"dir/images.tar.gz.042", "dir/images.tar.gz", 42, true},
		{"images.tar.999", "images.tar", 999, true},
		{"images.tar.000", "", 0, false},
		{"images.tar.01", "", 0, false},
		{"images.tar.0001", "", 0, false},
		{"images.tar", "", 0, false},
		{".001", "", 0, false},
		{"images.tar.sha256", "", 0, false},
		{"images.tar.1a1", "", 0, false},
	} {
		base, n, ok := tarball.ParseVolumeName(tc.name)
		if base != tc.base || n != tc.n || ok != tc.ok {
			t.Errorf("ParseVolumeName(%q) = %q, %d, %v; want %q, %d, %v", tc.name, base, n, ok, tc.base, tc.n, tc.ok)
		}
	}
	if got := tarball.VolumeName("a/images.tar", 7); got != "a/images.tar.007" {
		t.Errorf("VolumeName = %q", got)
	}
}

// splitFile writes data as volumes of size bytes under dir/base and
// returns data.
func splitFile(t *testing.T, dir, base string, data []byte, size int) {
	t.Helper()
	for i := 0; i*size < len(data); i++ {
		end := min((i+1)*size, len(data))
		if err := os.WriteFile(tarball.VolumeName(filepath.Join(dir, base), i+1), data[i*size:end], 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1, 2}).Read(b)
	return b
}

func TestFindVolumes(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(10_000)
	splitFile(t, dir, "images.tar", data, 3000) // 4 volumes
	os.WriteFile(filepath.Join(dir, "images.tar.sha256"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "plain.tar"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "other.tar.001"), data, 0o644)
	vol := func(n int) string { return tarball.VolumeName(filepath.Join(dir, "images.tar"), n) }

	for _, tc := range []struct {
		what  string
		name  string
		more  []string
		split bool
		vols  int
	}{
		{"a plain file", filepath.Join(dir, "plain.tar"), nil, false, 1},
		{"the first volume", vol(1), nil, true, 4},
		{"another volume", vol(3), nil, true, 4},
		{"the base name", filepath.Join(dir, "images.tar"), nil, true, 4},
		{"a quoted glob", filepath.Join(dir, "images.tar.0*"), nil, true, 4},
		{"a glob that matches the checksum file too", filepath.Join(dir, "images.tar.*"), nil, true, 4},
		{"a glob the shell expanded", vol(1), []string{vol(2), vol(3), vol(4), filepath.Join(dir, "images.tar.sha256")}, true, 4},
	} {
		t.Run(tc.what, func(t *testing.T) {
			set, err := tarball.FindVolumes(tc.name, tc.more...)
			if err != nil {
				t.Fatal(err)
			}
			if set.Split != tc.split || len(set.Volumes) != tc.vols || len(set.Missing) != 0 {
				t.Fatalf("got %+v; want split %v, %d volumes", set, tc.split, tc.vols)
			}
			r, err := set.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes (%v); want the %d of the file", len(got), err, len(data))
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		if _, err := tarball.FindVolumes(filepath.Join(dir, "nothing.tar")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a missing file: %v", err)
		}
		if _, err := tarball.FindVolumes(vol(1), filepath.Join(dir, "other.tar.001")); err == nil {
			t.Error("volumes of two bundles: no error")
		}
		if _, err := tarball.FindVolumes(filepath.Join(dir, "nothing.*")); !errors.Is(err, tarball.ErrNoVolumes) {
			t.Errorf("a glob that matches nothing: %v", err)
		}
		if _, err := tarball.FindVolumes(dir); err == nil {
			t.Error("a directory: no error")
		}
	})

	t.Run("missing volumes", func(t *testing.T) {
		d := t.TempDir()
		splitFile(t, d, "b.tar", data, 2000) // 5 volumes
		os.Remove(tarball.VolumeName(filepath.Join(d, "b.tar"), 2))
		os.Remove(tarball.VolumeName(filepath.Join(d, "b.tar"), 4))
		set, err := tarball.FindVolumes(filepath.Join(d, "b.tar.003"))
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Missing) != 2 || set.Missing[0] != 2 || set.Missing[1] != 4 {
			t.Errorf("missing %v, want [2 4]", set.Missing)
		}
		if r := set.Readable(); len(r) != 1 || r[0].Number != 1 {
			t.Errorf("readable %+v, want volume 1 only", r)
		}
		if got := set.Name(); got != filepath.Join(d, "b.tar.001")+"…005" {
			t.Errorf("Name() = %q", got)
		}
		// Volume 1 itself missing, named: found, and reported missing.
		os.Remove(tarball.VolumeName(filepath.Join(d, "b.tar"), 1))
		set, err = tarball.FindVolumes(filepath.Join(d, "b.tar.001"))
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Readable()) != 0 || set.Missing[0] != 1 {
			t.Errorf("volume 1 missing: %+v", set)
		}
		if _, err := set.Open(); err == nil {
			t.Error("Open with volume 1 missing: no error")
		}
	})
}

// The reader is one file over the volumes: ReadAt and Seek anywhere, and
// Locate names the volume of an offset.
func TestVolumeReader(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(10_000)
	splitFile(t, dir, "v.tar", data, 3000)
	set, err := tarball.FindVolumes(filepath.Join(dir, "v.tar"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := set.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(data)) {
		t.Fatalf("Size %d", r.Size())
	}
	for _, tc := range []struct{ off, n int }{{0, 10}, {2990, 20}, {2999, 6002}, {9990, 10}, {0, 10_000}} {
		buf := make([]byte, tc.n)
		n, err := r.ReadAt(buf, int64(tc.off))
		if err != nil || n != tc.n || !bytes.Equal(buf, data[tc.off:tc.off+tc.n]) {
			t.Errorf("ReadAt(%d, %d) = %d, %v", tc.off, tc.n, n, err)
		}
	}
	if n, err := r.ReadAt(make([]byte, 20), 9990); n != 10 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v; want 10, EOF", n, err)
	}
	if _, err := r.Seek(5999, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[5999:]) {
		t.Errorf("read after Seek: %d bytes, %v", len(rest), err)
	}
	for _, tc := range []struct {
		off int64
		vol int
		at  int64
	}{{0, 1, 0}, {2999, 1, 2999}, {3000, 2, 0}, {9999, 4, 999}} {
		v, at, ok := r.Locate(tc.off)
		if !ok || v.Number != tc.vol || at != tc.at {
			t.Errorf("Locate(%d) = volume %d at %d (%v); want %d at %d", tc.off, v.Number, at, ok, tc.vol, tc.at)
		}
	}
	if _, _, ok := r.Locate(10_000); ok {
		t.Error("Locate past the end: ok")
	}

	// Stat is of the open files: a volume replaced by a rename keeps its
	// FileInfo, one written in place shows the change.
	before, err := r.Stat()
	if err != nil || len(before) != 4 {
		t.Fatalf("Stat: %d, %v", len(before), err)
	}
	v2 := tarball.VolumeName(filepath.Join(dir, "v.tar"), 2)
	tmp := v2 + ".new"
	if err := os.WriteFile(tmp, []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, v2); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(tarball.VolumeName(filepath.Join(dir, "v.tar"), 3), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after, err := r.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if after[1].Size() != before[1].Size() || !os.SameFile(after[1], before[1]) {
		t.Errorf("volume 2 replaced by a rename: Stat says size %d, want the open file's %d", after[1].Size(), before[1].Size())
	}
	if after[2].Size() != before[2].Size()+1 {
		t.Errorf("volume 3 written in place: Stat says size %d, want %d", after[2].Size(), before[2].Size()+1)
	}
}

// A volume name parses back to its base and number; anything that parses
// is a volume name of what it parses to.
func FuzzParseVolumeName(f *testing.F) {
	for _, s := range []string{"images.tar.001", "a.999", ".001", "x.000", "x.1000", "images.tar", "é.012"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, n, ok := tarball.ParseVolumeName(s)
		if !ok {
			return
		}
		if n < 1 || n > tarball.MaxVolumes || base == "" {
			t.Fatalf("ParseVolumeName(%q) = %q, %d", s, base, n)
		}
		if got := tarball.VolumeName(base, n); got != s {
			t.Fatalf("VolumeName(ParseVolumeName(%q)) = %q", s, got)
		}
	})
}
