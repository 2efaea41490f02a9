package verify_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pinnedLie is a bundle, consistent in every entry, whose reference pinned
// to the digest of one image (ref, e.g. "repo@sha256:X") is another image
// (app, digest got): bundle.json, index.json and manifest.json all map it
// to app's manifest.
func pinnedLie(t *testing.T, ref string) (data []byte, got v1.Hash) {
	t.Helper()
	refs := testRefs(t)
	b := bundletest.Must(t, refs[0], bundletest.Ref{Name: ref, Image: refs[0].Image})
	data, _ = b.Bytes()
	return data, b.Index.Images[0].Digest
}

// pinnedDigest is the digest basePinned names.
func pinnedDigest(t *testing.T) string {
	testRefs(t)
	_, d, _ := strings.Cut(basePinned, "@")
	return d
}

// A reference pinned to a digest must deliver that digest: a bundle that
// maps repo@sha256:X (or repo:tag@sha256:X) to another manifest is
// corrupt, the finding naming the reference, the pinned digest and the one
// delivered, in bundle.json and in index.json.
func TestVerifyPinnedDigest(t *testing.T) {
	pinned := pinnedDigest(t)
	for _, ref := range []string{basePinned, strings.Replace(basePinned, "@", ":1@", 1)} {
		t.Run(ref, func(t *testing.T) {
			data, got := pinnedLie(t, ref)
			rep := run(t, data, verify.Options{Deep: true})
			f := want(t, rep, verify.CodeIndex, tarball.IndexFile, ref)
			if f.Got != got.String() || f.Want != pinned || !strings.Contains(f.Problem, "pins") {
				t.Errorf("finding %q: want got %s, want %s", f, got, pinned)
			}
			f = want(t, rep, verify.CodeMismatch, tarball.OCIIndexFile, ref)
			if f.Got != got.String() || f.Want != pinned || !strings.Contains(f.Problem, "pins") {
				t.Errorf("finding %q: want got %s, want %s", f, got, pinned)
			}
			// list reads bundle.json alone, and refuses it too.
			_, err := verify.List(bytes.NewReader(data))
			if !tarball.IsCorrupt(err) {
				t.Fatalf("List: %v, want a corrupt bundle", err)
			}
			for _, s := range []string{ref, pinned, got.String()} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("List: %q does not name %s", err, s)
				}
			}
			if fs := verify.CheckReferences(mustIndex(t, data)); len(fs) != 1 {
				t.Errorf("CheckReferences: %v, want one finding", fs)
			}
		})
	}
}

// index.json alone naming a pinned reference on another manifest: the
// finding says the descriptor is not what its reference pins.
func TestVerifyPinnedDigestIndexJSON(t *testing.T) {
	b := newBundle(t)
	var ix v1.IndexManifest
	i := b.Find(tarball.OCIIndexFile)
	if err := json.Unmarshal(b.Entries[i].Data, &ix); err != nil {
		t.Fatal(err)
	}
	k := slices.IndexFunc(ix.Manifests, func(d v1.Descriptor) bool { return d.Annotations[tarball.AnnotationRefName] == basePinned })
	ix.Manifests[k].Digest, ix.Manifests[k].Size = ix.Manifests[0].Digest, ix.Manifests[0].Size
	b.Entries[i].Data, _ = json.Marshal(ix)
	data, _ := b.Bytes()
	rep := run(t, data, verify.Options{})
	found := false
	for _, f := range rep.Findings {
		found = found || (f.Entry == tarball.OCIIndexFile && strings.Contains(f.Problem, "pins") && f.Want == pinnedDigest(t) && f.Got == ix.Manifests[0].Digest.String())
	}
	if !found {
		t.Errorf("no index.json finding of the pinned digest:\n%s", findings(rep))
	}
}

// manifest.json giving docker a digest reference as a tag: docker load
// refuses it, so verify does.
func TestVerifyRepoTagsDigest(t *testing.T) {
	b := newBundle(t)
	i := b.Find(tarball.DockerManifest)
	var entries []tarball.DockerManifestEntry
	if err := json.Unmarshal(b.Entries[i].Data, &entries); err != nil {
		t.Fatal(err)
	}
	pm := b.Index.Images[3].Manifests[0]
	k := slices.IndexFunc(entries, func(e tarball.DockerManifestEntry) bool { return e.Config == tarball.BlobPath(pm.Config) })
	entries[k].RepoTags = append(entries[k].RepoTags, "ghcr.io/acme/pinned@"+pinnedDigest(t))
	b.Entries[i].Data, _ = json.Marshal(entries)
	data, _ := b.Bytes()
	f := want(t, run(t, data, verify.Options{}), verify.CodeInvalid, tarball.DockerManifest, basePinned)
	if !strings.Contains(f.Problem, "not a tag") {
		t.Errorf("finding %q does not say the digest is not a tag", f)
	}
}

// A reference that does not parse as load parses it is a corrupt bundle,
// even when it shares its image (and manifest.json entry) with a good one
// and index.json names it the same.
func TestVerifyBadReference(t *testing.T) {
	const bad = "../../etc:1"
	b := newBundle(t)
	b.Index.Images[1].Ref = bad // refLatest: the same image as refApp
	if err := b.SetIndex(); err != nil {
		t.Fatal(err)
	}
	var ix v1.IndexManifest
	i := b.Find(tarball.OCIIndexFile)
	json.Unmarshal(b.Entries[i].Data, &ix)
	ix.Manifests[1].Annotations = map[string]string{tarball.AnnotationRefName: bad, tarball.AnnotationContainerdName: bad}
	data, _ := json.Marshal(ix)
	b.SetEntry(tarball.OCIIndexFile, data)
	var entries []tarball.DockerManifestEntry
	i = b.Find(tarball.DockerManifest)
	json.Unmarshal(b.Entries[i].Data, &entries)
	for k := range entries {
		entries[k].RepoTags = slices.DeleteFunc(entries[k].RepoTags, func(s string) bool { return s == "app:latest" })
	}
	data, _ = json.Marshal(entries)
	b.SetEntry(tarball.DockerManifest, data)
	data, _ = b.Bytes()
	rep := run(t, data, verify.Options{})
	f := want(t, rep, verify.CodeIndex, tarball.IndexFile, bad)
	if !strings.Contains(f.Problem, "does not parse") {
		t.Errorf("finding %q does not say the reference does not parse", f)
	}
	if len(rep.Findings) != 1 {
		t.Errorf("want that finding alone:\n%s", findings(rep))
	}
	if _, err := verify.List(bytes.NewReader(data)); !tarball.IsCorrupt(err) || !strings.Contains(err.Error(), bad) {
		t.Errorf("List: %v, want a corrupt bundle naming %s", err, bad)
	}
}

func mustIndex(t *testing.T, data []byte) *tarball.Index {
	t.Helper()
	tr := tarball.NewReader(bytes.NewReader(data))
	defer tr.Close()
	idx, err := tr.Index()
	if err != nil {
		t.Fatal(err)
	}
	return idx
}
