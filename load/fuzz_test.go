package load_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fuzzSeeds are a small valid bundle (an image and a two-platform index),
// damaged copies of it, its gzip copy, and the hostile fixtures of
// ../testdata/hostile except the decompression bombs (each would cost a
// quarter of a second).
func fuzzSeeds(f *testing.F) {
	b := bundletest.Small(f)
	data, offsets := b.Bytes()
	f.Add(data)
	f.Add(data[:offsets[tarball.DockerManifest]+20])
	flipped := bytes.Clone(data)
	flipped[offsets[tarball.BlobPath(b.Index.Images[0].Manifests[0].Layers[0])]+10] ^= 1
	f.Add(flipped)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	f.Add(gz.Bytes())
	hostile, _ := filepath.Glob("../testdata/hostile/*")
	for _, p := range hostile {
		if strings.Contains(p, "bomb") {
			continue
		}
		if d, err := os.ReadFile(p); err == nil {
			f.Add(d)
		}
	}
}

// FuzzLoadLayout runs the whole of bundle load into an OCI layout on
// arbitrary bytes: nothing panics; a load that fails (every input that does
// not verify) leaves no layout behind and nothing in the temp dir; a load
// that succeeds leaves blobs that hash to their names and an index.json
// whose every entry is there with its size.
func FuzzLoadLayout(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in.tar")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "tmp")
		os.Mkdir(tmp, 0o755)
		out := filepath.Join(dir, "oci")
		res, err := bundle.Load(context.Background(), bundle.LoadOptions{Input: in, To: "oci:" + out, Jobs: 2, TempDir: tmp})
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Fatalf("%d files left in the temp dir (err %v)", len(ents), err)
		}
		if err != nil {
			if bundle.IsLoadCorrupt(err) {
				if _, serr := os.Lstat(out); serr == nil {
					t.Fatalf("a refused bundle (%v) left %s", err, out)
				}
			}
			return
		}
		if res.Loaded+res.Skipped != len(res.Images) {
			t.Fatalf("loaded %d, skipped %d of %d", res.Loaded, res.Skipped, len(res.Images))
		}
		checkLayout(t, out)
	})
}

// checkLayout checks that every blob of the layout hashes to its name and
// every index.json entry is a blob of the layout of its size.
func checkLayout(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, "blobs", "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != d.Name() {
			t.Errorf("blob %s hashes to %x", d.Name(), sum)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return // nothing to load (a bundle of no image)
	}
	if err != nil {
		t.Fatal(err)
	}
	var ix v1.IndexManifest
	if err := json.Unmarshal(raw, &ix); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	for _, d := range ix.Manifests {
		fi, err := os.Stat(filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
		if err != nil || fi.Size() != d.Size {
			t.Errorf("index.json names %s (%d bytes): %v", d.Digest, d.Size, err)
		}
	}
}

// FuzzOpen feeds load.Open, the header scan that runs before the verify
// pass (on bytes nobody has checked yet), arbitrary bytes; then, when it
// opens, Select and every blob read. Nothing may panic, and a blob read
// either gives exactly the blob's bytes or fails.
func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := filepath.Join(t.TempDir(), "in.tar")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := load.Open(in)
		if err != nil {
			return
		}
		defer b.Close()
		_, _, _ = load.Select(b, load.Selection{})
		_, _, _ = load.Select(b, load.Selection{Platforms: []string{"linux/arm64"}})
		for h := range b.Index.Blobs {
			if !b.Has(h) {
				continue
			}
			rc, err := b.OpenBlob(h)
			if err != nil {
				continue
			}
			sum := sha256.New()
			n, err := io.Copy(sum, rc)
			rc.Close()
			if err == nil && (hex.EncodeToString(sum.Sum(nil)) != h.Hex || n != b.Size(h)) {
				t.Fatalf("blob %s read without error, but %d bytes hashing to %x", h, n, sum.Sum(nil))
			}
			_, _ = b.ReadBlob(h, tarball.MaxManifestSize)
		}
	})
}
