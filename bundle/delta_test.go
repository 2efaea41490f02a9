package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func hashOf(s string) v1.Hash {
	h, _, _ := v1.SHA256(strings.NewReader(s))
	return h
}

// testIndex is a digest index of two images sharing a base layer.
func testIndex() *tarball.Index {
	base, a, b := hashOf("base"), hashOf("a"), hashOf("b")
	ca, cb, ma, mb := hashOf("config a"), hashOf("config b"), hashOf("manifest a"), hashOf("manifest b")
	idx := &tarball.Index{SchemaVersion: 1, Blobs: map[v1.Hash]tarball.Blob{}}
	for h, n := range map[v1.Hash]int64{base: 1000, a: 100, b: 200, ca: 10, cb: 11, ma: 20, mb: 21} {
		idx.Blobs[h] = tarball.Blob{Size: n}
	}
	idx.Images = []tarball.Image{
		{Ref: "r/a:1", Digest: ma, Manifests: []tarball.PlatformManifest{{Digest: ma, Config: ca, Layers: []v1.Hash{base, a}}}},
		{Ref: "r/b:1", Digest: mb, Manifests: []tarball.PlatformManifest{{Digest: mb, Config: cb, Layers: []v1.Hash{base, b}}}},
	}
	return idx
}

func TestApplyDelta(t *testing.T) {
	idx := testIndex()
	base, a := hashOf("base"), hashOf("a")
	have := &haveSet{blobs: map[v1.Hash]int64{
		base:               1000,
		a:                  999, // another size: not the same blob, carried
		hashOf("config a"): 10,  // configs are always carried
		hashOf("other"):    5,
	}}
	if _, done := have.apply(idx, time.Now()); done {
		t.Fatal("apply says unchanged")
	}
	if _, ok := idx.External[base]; !ok || len(idx.External) != 1 {
		t.Errorf("external %v; want the base layer only", idx.External)
	}
	if _, ok := idx.Blobs[base]; ok {
		t.Error("the base layer is still in blobs")
	}
	for _, h := range []v1.Hash{a, hashOf("config a")} {
		if _, ok := idx.Blobs[h]; !ok {
			t.Errorf("%s left out", h)
		}
	}
	if _, err := tarball.NewPlan(idx, ""); err != nil {
		t.Errorf("NewPlan of the delta: %v", err)
	}
	var res CreateResult
	have.summarize(&res, idx)
	if res.External != 1 || res.ExternalBytes != 1000 {
		t.Errorf("summary %+v", res.DeltaSummary)
	}
	var nilHave *haveSet
	if _, done := nilHave.apply(testIndex(), time.Now()); done {
		t.Error("no --have/--base: apply says unchanged")
	}
}

func TestSkipUnchanged(t *testing.T) {
	prev := testIndex()
	h := &haveSet{blobs: map[v1.Hash]int64{}, base: prev, baseName: "prev.tar", skip: true}
	now := testIndex()
	now.Images[0], now.Images[1] = now.Images[1], now.Images[0] // order does not matter
	res, done := h.apply(now, time.Now())
	if !done || !res.Unchanged || res.UnchangedSince != "prev.tar" || len(res.Images) != 2 {
		t.Fatalf("same images: %v %+v", done, res)
	}
	changed := testIndex()
	changed.Images[1].Manifests[0].Layers = append(changed.Images[1].Manifests[0].Layers, hashOf("new"))
	changed.Images[1].Manifests[0].Digest = hashOf("manifest b2")
	changed.Images[1].Digest = hashOf("manifest b2")
	if _, done := h.apply(changed, time.Now()); done {
		t.Error("a changed image: unchanged")
	}
	fewer := testIndex()
	fewer.Images = fewer.Images[:1]
	if sameImages(prev.Images, fewer.Images) {
		t.Error("fewer images: same")
	}
}

func TestInventoryFile(t *testing.T) {
	dir := t.TempDir()
	inv := &Inventory{SchemaVersion: 1, Kind: InventoryKind, Created: "2026-01-01T00:00:00Z", From: "oci:x",
		Blobs: map[v1.Hash]int64{hashOf("b"): 2, hashOf("a"): 1}}
	data, err := MarshalInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "have.json")
	os.WriteFile(p, data, 0o644)
	got, err := ReadInventory(p)
	if err != nil || len(got.Blobs) != 2 || got.Blobs[hashOf("a")] != 1 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// Keys sorted: the same inventory gives the same bytes.
	again, _ := MarshalInventory(got)
	if string(again) != string(data) {
		t.Error("inventory not deterministic")
	}
	for name, body := range map[string]string{
		"tar.json":   "bundle.json\x00\x00\x00",
		"kind.json":  `{"schemaVersion":1,"kind":"other","blobs":{}}`,
		"ver.json":   `{"schemaVersion":2,"kind":"bundle-inventory","blobs":{}}`,
		"parse.json": `{"schemaVersion":1,"kind":"bundle-inventory","blobs":{"md5:x":1}}`,
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
		if _, err := ReadInventory(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLayoutInventory(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(tarball.OCILayoutContent), 0o644)
	h := hashOf("blob")
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", h.Hex), []byte("blob"), 0o644)
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", ".tmp-abc-1"), []byte("partial"), 0o644)
	inv, st, err := TakeInventory(t.Context(), InventoryOptions{From: "oci:" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Blobs) != 1 || inv.Blobs[h] != 4 || st.Blobs != 1 || inv.Kind != InventoryKind {
		t.Errorf("inventory %+v", inv)
	}
	if _, _, err := TakeInventory(t.Context(), InventoryOptions{From: "oci:" + t.TempDir()}); err == nil {
		t.Error("a directory that is no layout: no error")
	}
	if _, _, err := TakeInventory(t.Context(), InventoryOptions{From: "docker"}); err == nil {
		t.Error("a docker daemon: no error")
	}
}
