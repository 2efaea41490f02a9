package verify_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// bundle.json's metadata covers oci-layout, index.json and manifest.json:
// changed bytes that still agree with bundle.json's images (which the other
// checks cannot see), an entry it does not list, one it lists that is not
// there, and a name that no bundle holds are each one finding naming the
// entry. A bundle.json without metadata is read as before, with
// NoMetadata set.
func TestVerifyMetadata(t *testing.T) {
	reindent := func(name string) func(b *bundletest.Bundle) {
		return func(b *bundletest.Bundle) {
			i := b.Find(name)
			var out bytes.Buffer
			if err := json.Indent(&out, b.Entries[i].Data, "", "  "); err != nil {
				t.Fatal(err)
			}
			b.Entries[i].Data = out.Bytes()
		}
	}
	repos := []byte(`{"app":{"1":"` + strings.Repeat("3f", 32) + `"}}`)
	for _, tc := range []struct {
		name     string
		change   func(b *bundletest.Bundle)
		code     verify.Code // "" for intact
		entry    string
		problem  string
		noMetada bool
	}{
		{name: "as written", change: func(*bundletest.Bundle) {}},
		{name: "index.json re-indented", change: reindent(tarball.OCIIndexFile), code: verify.CodeDigest, entry: tarball.OCIIndexFile, problem: "not the ones bundle.json's metadata lists"},
		{name: "manifest.json re-indented", change: reindent(tarball.DockerManifest), code: verify.CodeDigest, entry: tarball.DockerManifest, problem: "not the ones bundle.json's metadata lists"},
		{name: "oci-layout with a space", change: func(b *bundletest.Bundle) {
			b.Entries[b.Find(tarball.OCILayoutFile)].Data = []byte(`{"imageLayoutVersion": "1.0.0"}`)
		}, code: verify.CodeDigest, entry: tarball.OCILayoutFile, problem: "not the ones bundle.json's metadata lists"},
		{name: "same size, other bytes", change: func(b *bundletest.Bundle) {
			// Two keys swapped: the same index, the same size.
			i := b.Find(tarball.OCIIndexFile)
			const was, is = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",`, `{"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2,`
			if !bytes.HasPrefix(b.Entries[i].Data, []byte(was)) {
				t.Fatalf("index.json starts %.80s", b.Entries[i].Data)
			}
			b.Entries[i].Data = append([]byte(is), b.Entries[i].Data[len(was):]...)
		}, code: verify.CodeDigest, entry: tarball.OCIIndexFile, problem: "sha256 is not the one bundle.json's metadata lists"},
		{name: "repositories listed", change: func(b *bundletest.Bundle) { b.SetEntry(tarball.RepositoriesFile, repos) }},
		{name: "repositories not listed", change: func(b *bundletest.Bundle) {
			b.SetEntry(tarball.RepositoriesFile, repos)
			delete(b.Index.Metadata, tarball.RepositoriesFile)
			b.SetIndex()
		}, code: verify.CodeEntry, entry: tarball.RepositoriesFile, problem: "not listed in bundle.json's metadata"},
		{name: "repositories listed, not there", change: func(b *bundletest.Bundle) {
			b.Index.Metadata[tarball.RepositoriesFile] = tarball.SumOf(repos)
			b.SetIndex()
		}, code: verify.CodeMissing, entry: tarball.RepositoriesFile, problem: "listed in bundle.json's metadata but not in the file"},
		{name: "a name no bundle holds", change: func(b *bundletest.Bundle) {
			b.Index.Metadata["etc/passwd"] = tarball.SumOf(repos)
			b.SetIndex()
		}, code: verify.CodeIndex, entry: tarball.IndexFile, problem: `metadata lists "etc/passwd"`},
		{name: "legacy", change: func(b *bundletest.Bundle) { b.Legacy() }, noMetada: true},
		{name: "legacy with repositories", change: func(b *bundletest.Bundle) { b.Legacy(); b.SetEntry(tarball.RepositoriesFile, repos) }, noMetada: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t)
			tc.change(b)
			data, _ := b.Bytes()
			rep := run(t, data, verify.Options{})
			if rep.NoMetadata != tc.noMetada {
				t.Errorf("NoMetadata = %v, want %v", rep.NoMetadata, tc.noMetada)
			}
			if tc.code == "" {
				mustDeep(t, rep)
				return
			}
			f := want(t, rep, tc.code, tc.entry, "")
			if !strings.Contains(f.Problem, tc.problem) {
				t.Errorf("finding %q does not say %q", f, tc.problem)
			}
			if len(rep.Findings) != 1 {
				t.Errorf("want that finding alone:\n%s", findings(rep))
			}
		})
	}
}

// What tarball.Write writes lists the sums of what it writes.
func TestWriterMetadata(t *testing.T) {
	b := newBundle(t)
	l, err := tarball.NewPlan(b.Index, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{tarball.OCILayoutFile: []byte(tarball.OCILayoutContent), tarball.OCIIndexFile: l.OCIIndex, tarball.DockerManifest: l.DockerManifest} {
		if got := l.Index.Metadata[name]; got != tarball.SumOf(data) {
			t.Errorf("metadata of %s: %+v, want %+v", name, got, tarball.SumOf(data))
		}
	}
	if len(l.Index.Metadata) != 3 {
		t.Errorf("metadata lists %d entries, want 3: %v", len(l.Index.Metadata), l.Index.Metadata)
	}
}
