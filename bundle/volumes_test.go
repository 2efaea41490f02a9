package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/klauspost/pgzip"
)

func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/253)
	}
	return b
}

// writeAll writes data in pieces of odd sizes.
func writeAll(t *testing.T, w io.Writer, data []byte) {
	t.Helper()
	for len(data) > 0 {
		n := min(len(data), 777)
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
}

func TestSplitOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	// A volume of an earlier, longer bundle of the same name, and an
	// earlier unsplit one.
	os.WriteFile(tarball.VolumeName(out, 5), []byte("stale"), 0o644)
	os.WriteFile(out, []byte("stale"), 0o644)
	data := testData(10_000)
	o, err := openBundleOutput(CreateOptions{Output: out, OutputOptions: OutputOptions{VolumeSize: 3000}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.abort()
	writeAll(t, o, data)
	// Nothing under a final name before commit.
	if m, _ := filepath.Glob(out + ".00[1-4]"); len(m) > 0 {
		t.Fatalf("volumes before commit: %v", m)
	}
	sum, n, err := o.commit()
	if err != nil || sum != "" || n != int64(len(data)) {
		t.Fatalf("commit = %q, %d, %v", sum, n, err)
	}
	vols := outputVolumes(o)
	if len(vols) != 4 {
		t.Fatalf("%d volumes, want 4: %+v", len(vols), vols)
	}
	var joined []byte
	var lines strings.Builder
	for i, v := range vols {
		b, err := os.ReadFile(tarball.VolumeName(out, i+1))
		if err != nil {
			t.Fatal(err)
		}
		want := int64(3000)
		if i == 3 {
			want = 1000
		}
		s := sha256.Sum256(b)
		if int64(len(b)) != want || v.Size != want || v.SHA256 != hex.EncodeToString(s[:]) {
			t.Errorf("volume %d: %d bytes, summary %+v", i+1, len(b), v)
		}
		joined = append(joined, b...)
		lines.WriteString(hex.EncodeToString(s[:]) + "  images.tar.00" + string(rune('1'+i)) + "\n")
	}
	if !bytes.Equal(joined, data) {
		t.Error("the volumes joined are not the data")
	}
	got, _ := os.ReadFile(out + ".sha256")
	if string(got) != lines.String() {
		t.Errorf("images.tar.sha256:\n%s\nwant:\n%s", got, lines.String())
	}
	for _, stale := range []string{tarball.VolumeName(out, 5), out} {
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the stale %s is still there", stale)
		}
	}
	// Unsplit again: the volumes go.
	o, err = openBundleOutput(CreateOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, data)
	if _, _, err := o.commit(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(out + ".0*"); len(m) > 0 {
		t.Errorf("volumes left beside the unsplit bundle: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(m) > 0 {
		t.Errorf("temp files left: %v", m)
	}
}

// A run that fails leaves no volume, no checksum file and no temp file.
func TestSplitOutputAbort(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	o, err := openBundleOutput(CreateOptions{Output: out, OutputOptions: OutputOptions{VolumeSize: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, testData(4500))
	o.abort()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
	// Too many volumes is an error, not a thousandth volume.
	o, err = openBundleOutput(CreateOptions{Output: out, OutputOptions: OutputOptions{VolumeSize: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.abort()
	if _, err := o.Write(testData(tarball.MaxVolumes + 1)); err == nil || !strings.Contains(err.Error(), "more than 999 volumes") {
		t.Errorf("writing 1000 volumes: %v", err)
	}
	select {
	case <-o.writeFailed():
	default:
		t.Error("writeFailed not closed after a failed write")
	}
}

// --gzip: one gzip stream, split or not; its sha256 is the file's.
func TestGzipOutput(t *testing.T) {
	data := testData(200_000)
	for _, split := range []int64{0, 50_000} {
		dir := t.TempDir()
		out := filepath.Join(dir, "images.tar.gz")
		o, err := openBundleOutput(CreateOptions{Output: out, OutputOptions: OutputOptions{Gzip: true, VolumeSize: split}})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, o, data)
		sum, _, err := o.commit()
		if err != nil {
			t.Fatal(err)
		}
		var file []byte
		if split == 0 {
			file, _ = os.ReadFile(out)
			s := sha256.Sum256(file)
			if sum != hex.EncodeToString(s[:]) {
				t.Errorf("sum %s is not the file's", sum)
			}
		} else {
			for i := range outputVolumes(o) {
				b, _ := os.ReadFile(tarball.VolumeName(out, i+1))
				file = append(file, b...)
			}
		}
		zr, err := pgzip.NewReader(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("split %d: decompressed %d bytes (%v)", split, len(got), err)
		}
	}
	// The same bytes give the same gzip stream (reproducible bundles).
	gz := func() []byte {
		var b bytes.Buffer
		o, err := openBundleOutput(CreateOptions{Output: "-", Stdout: &b, OutputOptions: OutputOptions{Gzip: true}})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, o, data)
		if _, _, err := o.commit(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	if !bytes.Equal(gz(), gz()) {
		t.Error("two gzip streams of the same data differ")
	}
	// To stdout.
	var buf bytes.Buffer
	o, err := openBundleOutput(CreateOptions{Output: "-", Stdout: &buf, OutputOptions: OutputOptions{Gzip: true}})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, data)
	if _, _, err := o.commit(); err != nil {
		t.Fatal(err)
	}
	zr, _ := pgzip.NewReader(&buf)
	if got, _ := io.ReadAll(zr); !bytes.Equal(got, data) {
		t.Error("gzip to stdout does not decompress to the data")
	}
	if _, err := openBundleOutput(CreateOptions{Output: "-", OutputOptions: OutputOptions{VolumeSize: 10}}); err == nil {
		t.Error("split to stdout: no error")
	}
}
