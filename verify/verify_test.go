package verify_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/klauspost/pgzip"
)

const (
	refApp    = "docker.io/library/app:1"
	refLatest = "docker.io/library/app:latest"
	refMulti  = "registry.example.com:5000/team/multi:2"
)

var (
	baseOnce   sync.Once
	baseRefs   []bundletest.Ref
	basePinned string
	baseErr    error
)

// testRefs are the images of the test bundle: one image under two tags
// (sharing every blob), a two-platform index, and an image pinned by
// digest only.
func testRefs(t testing.TB) []bundletest.Ref {
	t.Helper()
	baseOnce.Do(func() {
		var app, pinned v1.Image
		var multi v1.ImageIndex
		if app, baseErr = bundletest.RandomImage(2048, 3, "linux/amd64", 1); baseErr != nil {
			return
		}
		if multi, baseErr = bundletest.RandomIndex(1024, 2, 10, "linux/amd64", "linux/arm64/v8"); baseErr != nil {
			return
		}
		if pinned, baseErr = bundletest.RandomImage(512, 1, "linux/amd64", 20); baseErr != nil {
			return
		}
		d, err := pinned.Digest()
		if err != nil {
			baseErr = err
			return
		}
		basePinned = "ghcr.io/acme/pinned@" + d.String()
		baseRefs = []bundletest.Ref{
			{Name: refApp, Image: app},
			{Name: refLatest, Image: app},
			{Name: refMulti, Index: multi},
			{Name: basePinned, Image: pinned},
		}
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseRefs
}

func newBundle(t testing.TB) *bundletest.Bundle {
	t.Helper()
	return bundletest.Must(t, testRefs(t)...)
}

// run verifies data as a stream, and again with Options.ReaderAt (blobs
// read at their offsets, several at once): both reports must be the same.
func run(t testing.TB, data []byte, opts verify.Options) *verify.Report {
	t.Helper()
	rep := runOne(t, data, opts)
	if opts.ReaderAt == nil {
		opts.ReaderAt = bytes.NewReader(data)
		at := runOne(t, data, opts)
		if a, b := findings(rep), findings(at); a != b || rep.Intact != at.Intact || rep.Complete != at.Complete || rep.Blobs != at.Blobs {
			t.Errorf("with ReaderAt: intact %v complete %v, %d blobs, findings:\n%s\nas a stream: intact %v complete %v, %d blobs, findings:\n%s",
				at.Intact, at.Complete, at.Blobs, b, rep.Intact, rep.Complete, rep.Blobs, a)
		}
	}
	return rep
}

// runOne verifies data once.
func runOne(t testing.TB, data []byte, opts verify.Options) *verify.Report {
	t.Helper()
	rep, err := verify.Verify(context.Background(), bytes.NewReader(data), opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Intact != (len(rep.Findings) == 0 && rep.Complete) {
		t.Errorf("Intact = %v with %d findings, complete %v", rep.Intact, len(rep.Findings), rep.Complete)
	}
	return rep
}

// want asserts the report has a finding of code about entry (when not
// empty) naming image (when not empty), and returns it.
func want(t testing.TB, rep *verify.Report, code verify.Code, entry, image string) verify.Finding {
	t.Helper()
	if rep.Intact {
		t.Errorf("report says intact")
	}
	for _, f := range rep.Findings {
		if f.Code != code || (entry != "" && f.Entry != entry) {
			continue
		}
		if image == "" || contains(f.Images, image) {
			return f
		}
	}
	t.Errorf("no %s finding for entry %q image %q; findings:\n%s", code, entry, image, findings(rep))
	return verify.Finding{}
}

func findings(rep *verify.Report) string {
	var b strings.Builder
	for _, f := range rep.Findings {
		b.WriteString("  " + string(f.Code) + ": " + f.String() + "\n")
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mustDeep(t testing.TB, rep *verify.Report) {
	t.Helper()
	if !rep.Intact {
		t.Fatalf("not intact:\n%s", findings(rep))
	}
}

func TestVerifyValid(t *testing.T) {
	b := newBundle(t)
	data, _ := b.Bytes()
	for _, deep := range []bool{false, true} {
		rep := run(t, data, verify.Options{Deep: deep})
		mustDeep(t, rep)
		if rep.Images != 4 || rep.Blobs != len(b.Index.Blobs) || rep.BytesRead != int64(len(data)) || rep.Deep != deep {
			t.Errorf("deep=%v: report counts: %+v", deep, rep)
		}
	}
}

func TestVerifyGzipBundle(t *testing.T) {
	data, _ := newBundle(t).Bytes()
	var gz bytes.Buffer
	zw := pgzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	rep := run(t, gz.Bytes(), verify.Options{Deep: true, FileSHA256: sum(gz.Bytes())})
	mustDeep(t, rep)
	if !rep.Compressed {
		t.Error("Compressed = false for a gzip bundle")
	}

	// A damaged gzip stream is corrupt, not an I/O error.
	bad := bytes.Clone(gz.Bytes())
	bad[len(bad)/2] ^= 0xff
	rep = run(t, bad, verify.Options{})
	if rep.Intact || rep.Complete {
		t.Errorf("damaged gzip bundle: intact %v complete %v", rep.Intact, rep.Complete)
	}
}

func sum(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func TestVerifyChecksumFile(t *testing.T) {
	data, offsets := newBundle(t).Bytes()
	rep := run(t, data, verify.Options{FileSHA256: sum(data), ChecksumFile: "images.tar.sha256"})
	mustDeep(t, rep)
	if rep.SHA256 != sum(data).Hex {
		t.Errorf("SHA256 = %s, want %s", rep.SHA256, sum(data).Hex)
	}

	// A byte flipped where no check but the checksum looks (the creator
	// field of bundle.json).
	bad := bytes.Clone(data)
	i := offsets[tarball.IndexFile] + int64(bytes.Index(data[offsets[tarball.IndexFile]:], []byte("bundletest")))
	bad[i] = 'B'
	rep = run(t, bad, verify.Options{FileSHA256: sum(data), ChecksumFile: "images.tar.sha256"})
	f := want(t, rep, verify.CodeChecksum, "", "")
	if f.Want != sum(data).String() || f.Got != sum(bad).String() || !strings.Contains(f.Problem, "images.tar.sha256") {
		t.Errorf("finding: %s", f)
	}
	// Truncated: the checksum is still compared, over what there is.
	rep = run(t, data[:len(data)/2], verify.Options{FileSHA256: sum(data)})
	want(t, rep, verify.CodeChecksum, "", "")
	want(t, rep, verify.CodeTruncated, "", "")
}

func TestParseChecksumFile(t *testing.T) {
	const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	file := hexA + "  images.tar.001\n" + hexB + " *out/images.tar\n"
	h, err := verify.ParseChecksumFile(strings.NewReader(file), "/mnt/usb/images.tar")
	if err != nil || h.Hex != hexB {
		t.Errorf("got %v, %v", h, err)
	}
	if _, err := verify.ParseChecksumFile(strings.NewReader(file), "other.tar"); !errors.Is(err, verify.ErrNoChecksum) {
		t.Errorf("other.tar: err = %v", err)
	}
	if _, err := verify.ParseChecksumFile(strings.NewReader("zz  images.tar\n"), "images.tar"); err == nil {
		t.Error("bad line: no error")
	}
}

// blobs names entries of the test bundle by what they are.
type blobs struct {
	layer, config, manifest, index string
}

func names(b *bundletest.Bundle) blobs {
	var n blobs
	for _, im := range b.Index.Images {
		switch im.Ref {
		case refApp:
			pm := im.Manifests[0]
			n.layer, n.config, n.manifest = tarball.BlobPath(pm.Layers[1]), tarball.BlobPath(pm.Config), tarball.BlobPath(pm.Digest)
		case refMulti:
			n.index = tarball.BlobPath(im.Digest)
		}
	}
	return n
}

func TestVerifyFlippedByte(t *testing.T) {
	b := newBundle(t)
	data, offsets := b.Bytes()
	n := names(b)
	for _, tc := range []struct {
		name, entry string
		at          func() int64
		code        verify.Code
		image       string
	}{
		{"layer", n.layer, func() int64 { return offsets[n.layer] + 700 }, verify.CodeDigest, refApp},
		{"config", n.config, func() int64 { return offsets[n.config] + 20 }, verify.CodeDigest, refLatest},
		{"manifest", n.manifest, func() int64 { return offsets[n.manifest] + 30 }, verify.CodeDigest, refApp},
		{"index", n.index, func() int64 { return offsets[n.index] + 60 }, verify.CodeDigest, refMulti},
		{"bundle.json digest", tarball.IndexFile, func() int64 {
			// a hex digit of the app's first layer in images[]
			hex := strings.TrimPrefix(n.layer, tarball.BlobsSHA256Dir)
			return offsets[tarball.IndexFile] + int64(bytes.Index(data[offsets[tarball.IndexFile]:], []byte(hex))) + 10
		}, verify.CodeIndex, refApp},
		{"bundle.json syntax", tarball.IndexFile, func() int64 { return offsets[tarball.IndexFile] }, verify.CodeIndex, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(data)
			at := tc.at()
			if bad[at] == '0' {
				bad[at] = '1'
			} else if bad[at] >= 'a' && bad[at] <= 'f' || bad[at] >= '1' && bad[at] <= '9' {
				bad[at] = '0'
			} else {
				bad[at] ^= 0x01
			}
			for _, deep := range []bool{false, true} {
				rep := run(t, bad, verify.Options{Deep: deep})
				f := want(t, rep, tc.code, tc.entry, tc.image)
				if tc.code == verify.CodeDigest && (f.Want != "sha256:"+strings.TrimPrefix(tc.entry, tarball.BlobsSHA256Dir) || !strings.HasPrefix(f.Got, "sha256:")) {
					t.Errorf("got/want: %s", f)
				}
			}
		})
	}
}

func TestVerifyTruncated(t *testing.T) {
	b := newBundle(t)
	data, offsets := b.Bytes()
	n := names(b)
	for _, tc := range []struct {
		name  string
		at    int64
		entry string
		image string
	}{
		{"in bundle.json", offsets[tarball.IndexFile] + 100, tarball.IndexFile, ""},
		{"in a layer", offsets[n.layer] + 1000, n.layer, refApp},
		{"in a header", offsets[n.config] - 200, "", ""},
		{"at an entry boundary", offsets[n.config] - 512, "", ""},
		{"in the end marker", int64(len(data)) - 700, "", ""},
		{"before the end marker", int64(len(data)) - 1024, "", ""},
		{"empty", 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, deep := range []bool{false, true} {
				rep := run(t, data[:tc.at], verify.Options{Deep: deep})
				if rep.Complete {
					t.Errorf("complete")
				}
				code := verify.CodeTruncated
				if tc.at == 0 {
					code = verify.CodeNotBundle
				}
				f := want(t, rep, code, tc.entry, tc.image)
				t.Logf("%s", f)
			}
		})
	}
}

func TestVerifyDroppedBlob(t *testing.T) {
	b := newBundle(t)
	n := names(b)
	for _, entry := range []string{n.layer, n.config, n.manifest, n.index} {
		c := *b
		c.Entries = append([]bundletest.Entry(nil), b.Entries...)
		c.Remove(entry)
		data, _ := c.Bytes()
		rep := run(t, data, verify.Options{})
		img := refApp
		if entry == n.index {
			img = refMulti
		}
		want(t, rep, verify.CodeMissing, entry, img)
		if !rep.Complete {
			t.Errorf("%s: complete = false", entry)
		}
	}
	// A fixed entry.
	c := *b
	c.Entries = append([]bundletest.Entry(nil), b.Entries...)
	c.Remove(tarball.DockerManifest)
	data, _ := c.Bytes()
	want(t, run(t, data, verify.Options{}), verify.CodeMissing, tarball.DockerManifest, "")
}

func TestVerifyExtraEntry(t *testing.T) {
	b := newBundle(t)
	extra := []byte("not listed anywhere")
	name := tarball.BlobPath(sum(extra))
	c := *b
	c.Entries = append(append([]bundletest.Entry(nil), b.Entries...), bundletest.Entry{Name: name, Data: extra})
	data, _ := c.Bytes()
	rep := run(t, data, verify.Options{})
	want(t, rep, verify.CodeUnlisted, name, "")
	if len(rep.Findings) != 1 {
		t.Errorf("findings:\n%s", findings(rep))
	}

	// A second archive appended after the end marker (cat a.tar b.tar).
	valid, _ := b.Bytes()
	data = append(bytes.Clone(valid), bundletest.Tar(bundletest.Entry{Name: name, Data: extra})...)
	want(t, run(t, data, verify.Options{}), verify.CodeArchive, "", "")
	// Zero padding after the end marker is fine (tar pads to records).
	data = append(bytes.Clone(valid), make([]byte, 10240)...)
	mustDeep(t, run(t, data, verify.Options{}))
}

func TestVerifyMismatches(t *testing.T) {
	b := newBundle(t)
	n := names(b)
	edit := func(f func(c *bundletest.Bundle)) []byte {
		c := &bundletest.Bundle{Entries: append([]bundletest.Entry(nil), b.Entries...)}
		raw, _ := json.Marshal(b.Index)
		c.Index = new(tarball.Index)
		json.Unmarshal(raw, c.Index)
		f(c)
		data, _ := c.Bytes()
		return data
	}
	setJSON := func(c *bundletest.Bundle, name string, v any) {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		c.Entries[c.Find(name)].Data = raw
	}
	t.Run("index.json digest", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			var ix v1.IndexManifest
			json.Unmarshal(c.Entries[c.Find(tarball.OCIIndexFile)].Data, &ix)
			ix.Manifests[0].Digest = ix.Manifests[2].Digest
			setJSON(c, tarball.OCIIndexFile, ix)
		})
		want(t, run(t, data, verify.Options{}), verify.CodeMismatch, tarball.OCIIndexFile, refApp)
	})
	t.Run("index.json lacks a reference", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			var ix v1.IndexManifest
			json.Unmarshal(c.Entries[c.Find(tarball.OCIIndexFile)].Data, &ix)
			ix.Manifests = ix.Manifests[1:]
			setJSON(c, tarball.OCIIndexFile, ix)
		})
		want(t, run(t, data, verify.Options{}), verify.CodeMismatch, tarball.OCIIndexFile, refApp)
	})
	t.Run("manifest.json lacks a tag", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			var dm []tarball.DockerManifestEntry
			json.Unmarshal(c.Entries[c.Find(tarball.DockerManifest)].Data, &dm)
			dm[0].RepoTags = []string{"app:1"}
			setJSON(c, tarball.DockerManifest, dm)
		})
		want(t, run(t, data, verify.Options{}), verify.CodeMismatch, tarball.DockerManifest, refLatest)
	})
	t.Run("manifest.json wrong layers", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			var dm []tarball.DockerManifestEntry
			json.Unmarshal(c.Entries[c.Find(tarball.DockerManifest)].Data, &dm)
			dm[0].Layers = dm[0].Layers[1:]
			setJSON(c, tarball.DockerManifest, dm)
		})
		want(t, run(t, data, verify.Options{}), verify.CodeMismatch, tarball.DockerManifest, refApp)
	})
	t.Run("bundle.json diffID", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			h := c.Index.Images[0].Manifests[0].Layers[1]
			bl := c.Index.Blobs[h]
			wrong := sum([]byte("wrong"))
			bl.DiffID = &wrong
			c.Index.Blobs[h] = bl
			c.SetIndex()
		})
		want(t, run(t, data, verify.Options{}), verify.CodeDiffID, n.layer, refApp)
		want(t, run(t, data, verify.Options{Deep: true}), verify.CodeDiffID, n.layer, refApp)
	})
	t.Run("bundle.json size", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			h := c.Index.Images[0].Manifests[0].Layers[1]
			bl := c.Index.Blobs[h]
			bl.Size++
			c.Index.Blobs[h] = bl
			c.SetIndex()
		})
		f := want(t, run(t, data, verify.Options{}), verify.CodeSize, n.layer, refApp)
		if f.Got == "" || f.Want == "" {
			t.Errorf("no got/want: %s", f)
		}
	})
	t.Run("children first", func(t *testing.T) {
		data := edit(func(c *bundletest.Bundle) {
			i, j := c.Find(n.layer), c.Find(n.manifest)
			e := c.Entries[j]
			c.Entries = append(c.Entries[:j], c.Entries[j+1:]...)
			c.Entries = append(c.Entries[:i], append([]bundletest.Entry{e}, c.Entries[i:]...)...)
		})
		want(t, run(t, data, verify.Options{}), verify.CodeOrder, n.layer, refApp)
	})
}

// TestVerifyConfigs covers checks that need images made for them.
func TestVerifyConfigs(t *testing.T) {
	base := bundletest.MustImage(t, 1024, 2, "linux/amd64", 30)
	cf, _ := base.ConfigFile()
	t.Run("diff_ids count", func(t *testing.T) {
		c := cf.DeepCopy()
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, sum([]byte("extra")))
		img, err := mutate.ConfigFile(base, c)
		if err != nil {
			t.Fatal(err)
		}
		b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/x/y:1", Image: img})
		data, _ := b.Bytes()
		f := want(t, run(t, data, verify.Options{}), verify.CodeDiffID, tarball.BlobPath(b.Index.Images[0].Manifests[0].Config), "docker.io/x/y:1")
		if !strings.Contains(f.Problem, "3 diff_ids for the 2 layers") {
			t.Errorf("finding: %s", f)
		}
	})
	t.Run("config over the limit", func(t *testing.T) {
		c := cf.DeepCopy()
		c.Config.Env = []string{"BIG=" + strings.Repeat("x", tarball.MaxConfigSize)}
		img, err := mutate.ConfigFile(base, c)
		if err != nil {
			t.Fatal(err)
		}
		b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/x/y:1", Image: img})
		data, _ := b.Bytes()
		f := want(t, run(t, data, verify.Options{}), verify.CodeInvalid, tarball.BlobPath(b.Index.Images[0].Manifests[0].Config), "docker.io/x/y:1")
		if !strings.Contains(f.Problem, "over the limit") {
			t.Errorf("finding: %s", f)
		}
	})
}

// TestVerifyDeepDiffID: a layer whose bytes are intact (digest matches) but
// whose uncompressed content is not what config and bundle.json say; only
// --deep can see it.
func TestVerifyDeepDiffID(t *testing.T) {
	var gz bytes.Buffer
	zw := pgzip.NewWriter(&gz)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	zw.Close()
	claimed := sum([]byte("not the uncompressed layer"))
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: bundletest.GzipLayer(gz.Bytes(), claimed)})
	if err != nil {
		t.Fatal(err)
	}
	b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/x/deep:1", Image: img})
	data, _ := b.Bytes()
	mustDeep(t, run(t, data, verify.Options{}))
	rep := run(t, data, verify.Options{Deep: true})
	name := tarball.BlobPath(sum(gz.Bytes()))
	f := want(t, rep, verify.CodeDiffID, name, "docker.io/x/deep:1")
	if f.Want != claimed.String() || f.Got == "" {
		t.Errorf("finding: %s", f)
	}
	t.Log(findings(rep))
}

func TestVerifyGzipBomb(t *testing.T) {
	// 256 MiB of zeros compress about 1029:1 with deflate at its best.
	gz, diffID := bundletest.ZeroTarGz(t, 256<<20)
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: bundletest.GzipLayer(gz, diffID)})
	if err != nil {
		t.Fatal(err)
	}
	b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/x/bomb:1", Image: img})
	data, _ := b.Bytes()
	mustDeep(t, run(t, data, verify.Options{}))
	rep := run(t, data, verify.Options{Deep: true})
	f := want(t, rep, verify.CodeLayer, tarball.BlobPath(sum(gz)), "docker.io/x/bomb:1")
	// Each of these decompresses 256 MiB: once, as a stream, is enough.
	if !strings.Contains(f.Problem, "decompression bomb") {
		t.Errorf("finding: %s", f)
	}
	t.Logf("%d bytes compressed: %s", len(gz), f)
	// A higher limit lets it through; a lower absolute cap stops it too.
	mustDeep(t, runOne(t, data, verify.Options{Deep: true, MaxRatio: 2000}))
	rep = runOne(t, data, verify.Options{Deep: true, MaxRatio: 2000, MaxLayerSize: 100 << 20})
	if f := want(t, rep, verify.CodeLayer, "", ""); !strings.Contains(f.Problem, "over the limit for one layer") {
		t.Errorf("finding: %s", f)
	}
}

func TestVerifyHostile(t *testing.T) {
	b := newBundle(t)
	valid, _ := b.Bytes()
	dir := t.TempDir()
	t.Chdir(dir)
	abs := filepath.Join(os.TempDir(), "bundle-verify-hostile-abs")
	n := names(b)
	oversized := func(name string, size int64) []byte {
		// Only the header: the reader must refuse it on its size, before
		// reading any of it.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		tw.Flush()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name  string
		entry bundletest.Entry
		why   string
	}{
		{"dotdot", bundletest.Entry{Name: "blobs/../../evil", Data: []byte("x")}, `".."`},
		{"dotdot only", bundletest.Entry{Name: "../evil", Data: []byte("x")}, `".."`},
		{"absolute", bundletest.Entry{Name: abs, Data: []byte("x")}, "absolute"},
		{"symlink", bundletest.Entry{Name: "blobs/sha256/" + strings.Repeat("ab", 32), Type: tar.TypeSymlink, Linkname: "/etc/passwd"}, "symlink"},
		{"hardlink", bundletest.Entry{Name: "blobs/sha256/" + strings.Repeat("cd", 32), Type: tar.TypeLink, Linkname: n.layer}, "hardlink"},
		{"device", bundletest.Entry{Name: "blobs/sha256/" + strings.Repeat("ef", 32), Type: tar.TypeChar}, "device"},
		{"fifo", bundletest.Entry{Name: "fifo", Type: tar.TypeFifo}, "pipe"},
		{"duplicate", bundletest.Entry{Name: n.layer, Data: b.Entries[b.Find(n.layer)].Data}, "duplicate"},
		{"duplicate fixed", bundletest.Entry{Name: tarball.OCIIndexFile, Data: []byte("{}")}, "duplicate"},
		{"outside layout", bundletest.Entry{Name: "etc/cron.d/evil", Data: []byte("x")}, "outside the layout"},
		{"upper-case blob", bundletest.Entry{Name: "blobs/sha256/" + strings.Repeat("AB", 32), Data: []byte("x")}, "outside the layout"},
		{"directory", bundletest.Entry{Name: "blobs/sha256/sub/", Type: tar.TypeDir}, "outside the layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *b
			// Insert the hostile entry after index.json, before the blobs.
			i := b.Find(tarball.DockerManifest)
			c.Entries = append(append(append([]bundletest.Entry(nil), b.Entries[:i]...), tc.entry), b.Entries[i:]...)
			data, _ := c.Bytes()
			rep := run(t, data, verify.Options{Deep: true})
			f := want(t, rep, verify.CodeEntry, tc.entry.Name, "")
			if !strings.Contains(f.Problem, tc.why) {
				t.Errorf("finding %q does not say %q", f, tc.why)
			}
			if !rep.Complete {
				t.Errorf("the pass stopped at the hostile entry:\n%s", findings(rep))
			}
		})
	}
	t.Run("oversized manifest.json", func(t *testing.T) {
		i := bytes.Index(valid, []byte(tarball.DockerManifest+"\x00")) // its tar header, not bundle.json's metadata
		for i%512 != 0 {
			i += 1 + bytes.Index(valid[i+1:], []byte(tarball.DockerManifest+"\x00"))
		}
		data := append(bytes.Clone(valid[:i]), oversized(tarball.DockerManifest, tarball.MaxDockerManifestSize+1)...)
		rep := run(t, data, verify.Options{})
		f := want(t, rep, verify.CodeEntry, tarball.DockerManifest, "")
		if !strings.Contains(f.Problem, "over the limit") {
			t.Errorf("finding: %s", f)
		}
	})
	t.Run("oversized bundle.json", func(t *testing.T) {
		data := oversized(tarball.IndexFile, tarball.MaxIndexSize+1)
		rep := run(t, data, verify.Options{})
		f := want(t, rep, verify.CodeIndex, tarball.IndexFile, "")
		if !strings.Contains(f.Problem, "over the limit") {
			t.Errorf("finding: %s", f)
		}
	})
	t.Run("symlink first", func(t *testing.T) {
		data := bundletest.Tar(bundletest.Entry{Name: tarball.IndexFile, Type: tar.TypeSymlink, Linkname: "/etc/passwd"})
		want(t, run(t, data, verify.Options{}), verify.CodeEntry, tarball.IndexFile, "")
	})

	// Nothing was written: not in the working directory, not next to it,
	// not at the absolute path.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("verify wrote into the working directory: %v", ents)
	}
	for _, p := range []string{filepath.Join(dir, "..", "evil"), abs, filepath.Join(dir, "fifo")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

func TestVerifyNotBundle(t *testing.T) {
	hexID := strings.Repeat("3f", 32)
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"docker save (legacy)", bundletest.Tar(
			bundletest.Entry{Name: hexID + "/", Type: tar.TypeDir},
			bundletest.Entry{Name: hexID + "/VERSION", Data: []byte("1.0")},
			bundletest.Entry{Name: hexID + "/layer.tar", Data: make([]byte, 1024)},
			bundletest.Entry{Name: hexID + ".json", Data: []byte("{}")},
			bundletest.Entry{Name: "manifest.json", Data: []byte("[]")},
			bundletest.Entry{Name: "repositories", Data: []byte("{}")},
		), "not a bundle file (looks like a docker save archive)"},
		{"docker save (docker 25+)", bundletest.Tar(
			bundletest.Entry{Name: "blobs/", Type: tar.TypeDir},
			bundletest.Entry{Name: "blobs/sha256/", Type: tar.TypeDir},
			bundletest.Entry{Name: "blobs/sha256/" + hexID, Data: []byte("{}")},
			bundletest.Entry{Name: "index.json", Data: []byte("{}")},
			bundletest.Entry{Name: "manifest.json", Data: []byte("[]")},
			bundletest.Entry{Name: "oci-layout", Data: []byte(tarball.OCILayoutContent)},
		), "not a bundle file (looks like a docker save archive)"},
		{"oci archive", bundletest.Tar(
			bundletest.Entry{Name: "blobs/", Type: tar.TypeDir},
			bundletest.Entry{Name: "blobs/sha256/" + hexID, Data: []byte("{}")},
			bundletest.Entry{Name: "index.json", Data: []byte("{}")},
			bundletest.Entry{Name: "oci-layout", Data: []byte(tarball.OCILayoutContent)},
		), "not a bundle file (looks like an OCI image layout archive)"},
		{"other tar", bundletest.Tar(bundletest.Entry{Name: "README", Data: []byte("hi")}), `the first entry is "README"`},
		{"bundle.json second", bundletest.Tar(bundletest.Entry{Name: "oci-layout", Data: []byte("{}")}, bundletest.Entry{Name: "bundle.json", Data: []byte("{}")}), "bundle.json is not the first entry"},
		{"not a tar", bytes.Repeat([]byte("hello world\n"), 100), "not a tar archive"},
		{"empty", nil, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := run(t, tc.data, verify.Options{})
			f := want(t, rep, verify.CodeNotBundle, "", "")
			if !strings.Contains(f.Problem, tc.msg) {
				t.Errorf("problem %q does not say %q", f.Problem, tc.msg)
			}
			_, err := verify.List(bytes.NewReader(tc.data))
			var nb *tarball.NotBundleError
			if !errors.As(err, &nb) || !strings.Contains(err.Error(), tc.msg) || !tarball.IsCorrupt(err) {
				t.Errorf("List: %v", err)
			}
		})
	}
}

// noLeak fails the test if goroutines started during it are still running.
func noLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		for range 100 {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	})
}

func TestVerifyReadError(t *testing.T) {
	noLeak(t)
	data, offsets := newBundle(t).Bytes()
	for _, at := range []int64{0, 100, offsets[names(newBundle(t)).layer] + 10, int64(len(data)) - 10} {
		for _, deep := range []bool{false, true} {
			rep, err := verify.Verify(context.Background(), testenv.FailAfter(bytes.NewReader(data), int64(at)), verify.Options{Deep: deep, FileSHA256: sum(data)})
			if !errors.Is(err, testenv.ErrDevice) || tarball.IsCorrupt(err) {
				t.Errorf("at %d: err = %v", at, err)
			}
			if rep == nil || rep.Intact {
				t.Errorf("at %d: report %+v", at, rep)
			}
		}
	}
}

func TestVerifyCancel(t *testing.T) {
	noLeak(t)
	data, _ := newBundle(t).Bytes()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := verify.Verify(ctx, bytes.NewReader(data), verify.Options{Deep: true})
	if !errors.Is(err, context.Canceled) || rep.Intact {
		t.Errorf("err = %v, intact %v", err, rep.Intact)
	}
}

func TestVerifyProgress(t *testing.T) {
	data, _ := newBundle(t).Bytes()
	var p progress
	run(t, data, verify.Options{Progress: &p})
	if p.last != int64(len(data)) || p.calls == 0 {
		t.Errorf("progress: last %d of %d after %d calls", p.last, len(data), p.calls)
	}
}

type progress struct {
	last  int64
	calls int
}

func (p *progress) Update(n int64) {
	if n < p.last {
		panic("progress went backwards")
	}
	p.last = n
	p.calls++
}

func TestReportJSON(t *testing.T) {
	b := newBundle(t)
	b.Remove(names(b).layer)
	data, _ := b.Bytes()
	rep := run(t, data, verify.Options{})
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	json.Unmarshal(out, &back)
	if back["intact"] != false || len(back["findings"].([]any)) == 0 {
		t.Errorf("json: %s", out)
	}
	if got := rep.ImagesAffected(); !contains(got, refApp) || !contains(got, refLatest) {
		t.Errorf("ImagesAffected = %v", got)
	}
}

// TestNoNetwork: verify (and list) open no network connection; the package
// does not even link an HTTP or TLS client.
func TestNoNetwork(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH (the tests run under go test): %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/bundle-tool/bundle/verify").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net/http", dep == "crypto/tls", strings.Contains(dep, "go-containerregistry/pkg/v1/remote"):
			t.Errorf("verify depends on %s", dep)
		}
	}
}

// Shallow: a Deep pass does not decompress the layers it names, and still
// checks their digests; the others are decompressed.
func TestVerifyShallow(t *testing.T) {
	b := newBundle(t)
	data, offsets := b.Bytes()
	n := names(b)
	layer, _ := v1.NewHash("sha256:" + strings.TrimPrefix(n.layer, tarball.BlobsSHA256Dir))
	shallow := func(h v1.Hash) bool { return h == layer }

	rep := run(t, data, verify.Options{Deep: true, Shallow: shallow})
	if !rep.Intact || rep.Shallow != 1 || rep.ShallowBytes != b.Index.Blobs[layer].Size {
		t.Errorf("intact %v, shallow %d (%d bytes), want true, 1 (%d bytes); findings:\n%s",
			rep.Intact, rep.Shallow, rep.ShallowBytes, b.Index.Blobs[layer].Size, findings(rep))
	}
	bad := bytes.Clone(data)
	bad[offsets[n.layer]+700] ^= 0x01
	f := want(t, run(t, bad, verify.Options{Deep: true, Shallow: shallow}), verify.CodeDigest, n.layer, refApp)
	if f.Want != layer.String() {
		t.Errorf("finding %s, want the layer's digest", f)
	}
	// Without Deep, Shallow changes nothing.
	if rep := run(t, data, verify.Options{Shallow: shallow}); rep.Shallow != 0 {
		t.Errorf("without Deep: %d shallow layers, want 0", rep.Shallow)
	}
}
