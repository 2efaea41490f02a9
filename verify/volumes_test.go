package verify_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// splitBundle writes data as volumes of size bytes in a temp directory,
// with b.tar.sha256, and returns the base name.
func splitBundle(t *testing.T, data []byte, size int) string {
	t.Helper()
	base := filepath.Join(t.TempDir(), "b.tar")
	var sums strings.Builder
	for i := 0; i*size < len(data); i++ {
		part := data[i*size : min((i+1)*size, len(data))]
		name := tarball.VolumeName(base, i+1)
		if err := os.WriteFile(name, part, 0o644); err != nil {
			t.Fatal(err)
		}
		sums.WriteString(bundletest.ChecksumLine(part, filepath.Base(name)))
	}
	if err := os.WriteFile(base+".sha256", []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return base
}

// verifySplit verifies the split bundle at base as the CLI does.
func verifySplit(t *testing.T, base string, withSums bool) *verify.Report {
	t.Helper()
	set, err := tarball.FindVolumes(base)
	if err != nil {
		t.Fatal(err)
	}
	var opts verify.Options
	var sums map[string]v1.Hash
	if withSums {
		f, err := os.Open(base + ".sha256")
		if err != nil {
			t.Fatal(err)
		}
		sums, err = verify.ParseChecksums(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	opts.SplitOptions(set, sums, filepath.Base(base)+".sha256")
	var r interface {
		Read([]byte) (int, error)
	} = strings.NewReader("")
	if len(set.Readable()) > 0 {
		vr, err := set.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer vr.Close()
		r = vr
	}
	rep, err := verify.Verify(context.Background(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestSplitVolumes(t *testing.T) {
	b := newBundle(t)
	data, offsets := b.Bytes()
	const size = 4096
	if len(data) < 4*size {
		t.Fatalf("the test bundle is %d bytes: too small for 4 volumes", len(data))
	}
	layer := b.Index.Images[0].Manifests[0].Layers[1]
	layerName := tarball.BlobPath(layer)
	layerVol := int(offsets[layerName]/size) + 1

	t.Run("intact", func(t *testing.T) {
		rep := verifySplit(t, splitBundle(t, data, size), true)
		if !rep.Intact {
			t.Fatalf("not intact:\n%s", findings(rep))
		}
		if len(rep.Volumes) != (len(data)+size-1)/size {
			t.Errorf("%d volumes reported", len(rep.Volumes))
		}
		for _, v := range rep.Volumes {
			if !v.Checked || v.SHA256 == "" {
				t.Errorf("volume %d not checked: %+v", v.Number, v)
			}
		}
	})

	t.Run("a missing volume", func(t *testing.T) {
		base := splitBundle(t, data, size)
		os.Remove(tarball.VolumeName(base, 3))
		rep := verifySplit(t, base, true)
		f := want(t, rep, verify.CodeVolume, "b.tar.003", "")
		if !strings.HasPrefix(f.Problem, "volume 3 is missing") {
			t.Errorf("finding %q", f.String())
		}
		tr := want(t, rep, verify.CodeTruncated, "", "")
		if tr.Volume == nil || tr.Volume.Number != 2 || tr.Volume.Offset != size {
			t.Errorf("truncation at %+v; want the end of volume 2", tr.Volume)
		}
	})

	t.Run("the last volume missing, listed in the checksum file", func(t *testing.T) {
		base := splitBundle(t, data, size)
		last := (len(data) + size - 1) / size
		os.Remove(tarball.VolumeName(base, last))
		rep := verifySplit(t, base, true)
		want(t, rep, verify.CodeVolume, filepath.Base(tarball.VolumeName(base, last)), "")
	})

	t.Run("the last volume missing, no checksum file", func(t *testing.T) {
		base := splitBundle(t, data, size)
		last := (len(data) + size - 1) / size
		os.Remove(tarball.VolumeName(base, last))
		rep := verifySplit(t, base, false)
		f := want(t, rep, verify.CodeVolume, "", "")
		if !strings.Contains(f.Problem, "volume "+strconv.Itoa(last)+" is missing") {
			t.Errorf("finding %q", f.String())
		}
	})

	t.Run("a damaged volume", func(t *testing.T) {
		base := splitBundle(t, data, size)
		name := tarball.VolumeName(base, layerVol)
		at := offsets[layerName] - int64(layerVol-1)*size
		testenv.FlipByte(t, name, at)
		rep := verifySplit(t, base, true)
		sum := want(t, rep, verify.CodeChecksum, filepath.Base(name), "")
		if !strings.Contains(sum.Problem, "volume "+strconv.Itoa(layerVol)) {
			t.Errorf("checksum finding %q", sum.String())
		}
		d := want(t, rep, verify.CodeDigest, layerName, refApp)
		if d.Volume == nil || d.Volume.Number != layerVol || d.Volume.Offset != at || *d.Offset != offsets[layerName] {
			t.Errorf("digest finding located at %+v (offset %v); want volume %d at %d", d.Volume, d.Offset, layerVol, at)
		}
		if !strings.Contains(d.String(), "in volume "+strconv.Itoa(layerVol)+" (b.tar.") {
			t.Errorf("String() = %q", d.String())
		}
	})

	t.Run("a volume cut short", func(t *testing.T) {
		base := splitBundle(t, data, size)
		name := tarball.VolumeName(base, 2)
		os.Truncate(name, size-100)
		rep := verifySplit(t, base, false)
		f := want(t, rep, verify.CodeVolume, "b.tar.002", "")
		if !strings.Contains(f.Problem, "smaller than volume 1") {
			t.Errorf("finding %q", f.String())
		}
	})

	t.Run("volume 1 missing", func(t *testing.T) {
		base := splitBundle(t, data, size)
		os.Remove(tarball.VolumeName(base, 1))
		rep := verifySplit(t, base, true)
		want(t, rep, verify.CodeVolume, "b.tar.001", "")
	})
}

// A single file: findings carry the offset of the entry, no volume.
func TestFindingOffset(t *testing.T) {
	b := newBundle(t)
	layer := tarball.BlobPath(b.Index.Images[0].Manifests[0].Layers[0])
	data, offsets := b.Bytes()
	data[offsets[layer]+10] ^= 0xff
	rep := run(t, data, verify.Options{})
	f := want(t, rep, verify.CodeDigest, layer, refApp)
	if f.Offset == nil || *f.Offset != offsets[layer] || f.Volume != nil {
		t.Errorf("offset %v volume %v; want %d and none", f.Offset, f.Volume, offsets[layer])
	}
	if strings.Contains(f.String(), "volume") {
		t.Errorf("String() names a volume: %q", f.String())
	}
}

// A delta bundle verifies, and lists the blobs it expects at the target.
func TestDeltaExternal(t *testing.T) {
	b := newBundle(t)
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	b.Index.External = map[v1.Hash]tarball.Blob{layer: b.Index.Blobs[layer]}
	delete(b.Index.Blobs, layer)
	b.Remove(tarball.BlobPath(layer))
	if err := b.SetIndex(); err != nil {
		t.Fatal(err)
	}
	data, _ := b.Bytes()
	rep := run(t, data, verify.Options{})
	if !rep.Intact {
		t.Fatalf("a delta bundle is not intact:\n%s", findings(rep))
	}
	if len(rep.External) != 1 || rep.External[0].Digest != layer || !contains(rep.External[0].Images, refApp) {
		t.Errorf("external %+v; want %s used by %s", rep.External, layer, refApp)
	}
}

// ParseChecksums never panics, and reads back the lines it accepts.
func FuzzParseChecksums(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  images.tar.001\n")
	f.Add("# comment\n\nABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789 *dir/x.tar\r\n")
	f.Add("nonsense")
	f.Fuzz(func(t *testing.T, s string) {
		sums, err := verify.ParseChecksums(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, h := range sums {
			if h.Algorithm != "sha256" || len(h.Hex) != 64 || strings.Contains(name, "/") {
				t.Fatalf("%q → %q %v", s, name, h)
			}
		}
	})
}
