package tarball_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	"github.com/klauspost/pgzip"
)

func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	zw := pgzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

// readAll reads every entry, hashing blobs; it stops at the first error
// that is not an *EntryError and returns the names read and the errors.
func readAll(t *testing.T, r *tarball.Reader) (names []string, entryErrs []*tarball.EntryError, err error) {
	t.Helper()
	for {
		e, err := r.Next()
		if err == io.EOF {
			return names, entryErrs, nil
		}
		var ee *tarball.EntryError
		if errors.As(err, &ee) {
			entryErrs = append(entryErrs, ee)
			continue
		}
		if err != nil {
			return names, entryErrs, err
		}
		names = append(names, e.Name)
		h := sha256.New()
		n, err := io.Copy(h, e)
		if err != nil {
			return names, entryErrs, err
		}
		if n != e.Size && e.Kind != tarball.KindDir {
			t.Errorf("%s: read %d bytes of %d", e.Name, n, e.Size)
		}
		if e.Kind == tarball.KindBlob && hex.EncodeToString(h.Sum(nil)) != e.Digest.Hex {
			t.Errorf("%s: content does not match its digest", e.Name)
		}
	}
}

func TestReaderValid(t *testing.T) {
	b := bundletest.Small(t)
	data, _ := b.Bytes()
	for name, input := range map[string][]byte{"plain": data, "gzip": gzipped(data)} {
		t.Run(name, func(t *testing.T) {
			r := tarball.NewReader(bytes.NewReader(input))
			defer r.Close()
			idx, err := r.Index()
			if err != nil {
				t.Fatal(err)
			}
			if len(idx.Images) != 2 || len(idx.Blobs) != len(b.Entries)-6 {
				t.Errorf("index: %d images, %d blobs", len(idx.Images), len(idx.Blobs))
			}
			if r.Compressed() != (name == "gzip") {
				t.Errorf("Compressed = %v", r.Compressed())
			}
			names, ees, err := readAll(t, r)
			if err != nil || len(ees) != 0 {
				t.Fatalf("err %v, entry errors %v", err, ees)
			}
			var want []string
			for _, e := range b.Entries[1:] {
				want = append(want, e.Name)
			}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("entries:\n got %v\nwant %v", names, want)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after the end: %v", err)
			}
		})
	}
}

func TestReaderNextWithoutIndex(t *testing.T) {
	data, _ := bundletest.Small(t).Bytes()
	r := tarball.NewReader(bytes.NewReader(data))
	e, err := r.Next()
	if err != nil || e.Name != tarball.OCILayoutFile {
		t.Fatalf("Next: %v, %v", e, err)
	}
	if idx, err := r.Index(); err != nil || idx == nil {
		t.Fatalf("Index after Next: %v", err)
	}
	// An entry cannot be read once the next one has started.
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Read(make([]byte, 10)); err == nil {
		t.Error("reading a stale entry: no error")
	}
}

func TestReaderEntryErrors(t *testing.T) {
	b := bundletest.Small(t)
	layer := b.Entries[len(b.Entries)-1].Name
	for _, tc := range []struct {
		entry  bundletest.Entry
		reason string
	}{
		{bundletest.Entry{Name: "../x", Data: []byte("x")}, `".."`},
		{bundletest.Entry{Name: "blobs/sha256/../../x", Data: []byte("x")}, `".."`},
		{bundletest.Entry{Name: "/etc/x", Data: []byte("x")}, "absolute"},
		{bundletest.Entry{Name: `C:\x`, Data: []byte("x")}, "absolute"},
		{bundletest.Entry{Name: "link", Type: tar.TypeSymlink, Linkname: "/"}, "symlink"},
		{bundletest.Entry{Name: "hard", Type: tar.TypeLink, Linkname: layer}, "hardlink"},
		{bundletest.Entry{Name: "dev", Type: tar.TypeBlock}, "device"},
		{bundletest.Entry{Name: "pipe", Type: tar.TypeFifo}, "pipe"},
		{bundletest.Entry{Name: layer, Data: []byte("again")}, "duplicate"},
		{bundletest.Entry{Name: "blobs/", Type: tar.TypeDir}, "duplicate"},
		{bundletest.Entry{Name: "bundle.json", Data: []byte("{}")}, "duplicate"},
		{bundletest.Entry{Name: "blobs/sha512/" + strings.Repeat("a", 128), Data: []byte("x")}, "outside the layout"},
		{bundletest.Entry{Name: "blobs/sha256/abc", Data: []byte("x")}, "outside the layout"},
		{bundletest.Entry{Name: "./index.json", Data: []byte("x")}, "outside the layout"},
		{bundletest.Entry{Name: "oci-layout/", Type: tar.TypeDir}, "outside the layout"},
		{bundletest.Entry{Name: "repositories", Data: make([]byte, tarball.MaxRepositoriesSize+1)}, "over the limit"},
		{bundletest.Entry{Name: "repositories", Data: []byte("{}")}, "not listed in bundle.json's metadata"},
	} {
		t.Run(tc.entry.Name, func(t *testing.T) {
			c := *b
			c.Entries = append(append([]bundletest.Entry(nil), b.Entries...), tc.entry, bundletest.Entry{Name: tarball.BlobPath(bundletest.Digest([]byte("after"))), Data: []byte("after")})
			data, _ := c.Bytes()
			r := tarball.NewReader(bytes.NewReader(data))
			names, ees, err := readAll(t, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(ees) != 1 || ees[0].Name != tc.entry.Name || !strings.Contains(ees[0].Reason, tc.reason) || !tarball.IsCorrupt(ees[0]) {
				t.Fatalf("entry errors: %v", ees)
			}
			// The reader went on past the bad entry.
			if names[len(names)-1] != c.Entries[len(c.Entries)-1].Name {
				t.Errorf("did not read past the bad entry: %v", names)
			}
		})
	}
}

// A bundle.json without metadata (made before it listed them) lets every
// fixed entry through, as before; with metadata, one it does not list is an
// *EntryError, from Reader and from Open alike.
func TestReaderMetadataListsFixedEntries(t *testing.T) {
	repos := bundletest.Entry{Name: tarball.RepositoriesFile, Data: []byte("{}")}
	for _, tc := range []struct {
		name   string
		make   func(b *bundletest.Bundle)
		reason string
	}{
		{"listed", func(b *bundletest.Bundle) { b.SetEntry(repos.Name, repos.Data) }, ""},
		{"legacy", func(b *bundletest.Bundle) { b.Legacy(); b.SetEntry(repos.Name, repos.Data) }, ""},
		{"unlisted", func(b *bundletest.Bundle) {
			b.SetEntry(repos.Name, repos.Data)
			delete(b.Index.Metadata, repos.Name)
			b.SetIndex()
		}, "not listed in bundle.json's metadata"},
		{"index.json unlisted", func(b *bundletest.Bundle) {
			delete(b.Index.Metadata, tarball.OCIIndexFile)
			b.SetIndex()
		}, "not listed in bundle.json's metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bundletest.Small(t)
			tc.make(b)
			data, _ := b.Bytes()
			_, ees, err := readAll(t, tarball.NewReader(bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			_, openErr := tarball.OpenReaderAt(bytes.NewReader(data), int64(len(data)))
			if tc.reason == "" {
				if len(ees) != 0 || openErr != nil {
					t.Errorf("entry errors %v, Open: %v; want none", ees, openErr)
				}
				return
			}
			if len(ees) != 1 || !strings.Contains(ees[0].Reason, tc.reason) {
				t.Errorf("entry errors %v, want one saying %q", ees, tc.reason)
			}
			var ee *tarball.EntryError
			if !errors.As(openErr, &ee) || !strings.Contains(ee.Reason, tc.reason) {
				t.Errorf("Open: %v, want an *EntryError saying %q", openErr, tc.reason)
			}
		})
	}
}

// sparseTar returns bundle.json then a PAX sparse (format 0.1) blob entry
// of 1 GB made of a single byte of data.
func sparseTar() []byte {
	record := func(k, v string) string {
		l := len(k) + len(v) + 3
		for {
			s := strconv.Itoa(l) + " " + k + "=" + v + "\n"
			if len(s) == l {
				return s
			}
			l = len(s)
		}
	}
	var buf bytes.Buffer
	buf.Write(bundletest.Tar(bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":1}`)})[:1024])
	start := buf.Len()
	tw := tar.NewWriter(&buf)
	recs := record("GNU.sparse.size", "1000000000") + record("GNU.sparse.numblocks", "1") + record("GNU.sparse.map", "999999999,1")
	tw.WriteHeader(&tar.Header{Name: "pax", Size: int64(len(recs)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	tw.Write([]byte(recs))
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.Repeat("0", 64), Size: 1, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	tw.Write([]byte("x"))
	tw.Close()
	b := buf.Bytes()
	hdr := b[start : start+512]
	hdr[156] = tar.TypeXHeader
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestReaderSparse(t *testing.T) {
	// A sparse file could claim any size while carrying no data.
	r := tarball.NewReader(bytes.NewReader(sparseTar()))
	_, ees, err := readAll(t, r)
	if err != nil || len(ees) != 1 || !strings.Contains(ees[0].Reason, "sparse") {
		t.Errorf("entry errors %v, err %v", ees, err)
	}
}

func TestReaderCorrupt(t *testing.T) {
	data, offsets := bundletest.Small(t).Bytes()
	blob := ""
	for name, off := range offsets {
		if strings.HasPrefix(name, tarball.BlobsSHA256Dir) && (blob == "" || off > offsets[blob]) {
			blob = name
		}
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		entry string
		trunc bool
	}{
		{"truncated in a blob", data[:offsets[blob]+10], blob, true},
		{"truncated between entries", data[:len(data)-1024], "", true},
		{"truncated in bundle.json", data[:offsets[tarball.IndexFile]+5], tarball.IndexFile, true},
		{"trailing data", append(bytes.Clone(data), []byte("junk")...), "", false},
		{"bad header", func() []byte { d := bytes.Clone(data); d[offsets[tarball.OCIIndexFile]-512+150] ^= 0xff; return d }(), "", false},
		{"bad bundle.json header", func() []byte { d := bytes.Clone(data); d[130] ^= 0xff; return d }(), tarball.IndexFile, false},
		{"bad bundle.json", bundletest.Tar(bundletest.Entry{Name: tarball.IndexFile, Data: []byte("{")}), tarball.IndexFile, false},
		{"unknown schema", bundletest.Tar(bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":2}`)}), tarball.IndexFile, false},
		{"truncated gzip", gzipped(data)[:200], "", true},
		{"cut inside the first header", data[:40], "", true},
		{"cut inside bundle.json's name", data[:5], "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tarball.NewReader(bytes.NewReader(tc.data))
			defer r.Close()
			_, _, err := readAll(t, r)
			var ce *tarball.CorruptError
			if !errors.As(err, &ce) || !tarball.IsCorrupt(err) {
				t.Fatalf("err = %v", err)
			}
			if tc.entry != "" && ce.Entry != tc.entry {
				t.Errorf("entry %q, want %q (%v)", ce.Entry, tc.entry, err)
			}
			if tc.trunc != errors.Is(err, tarball.ErrTruncated) {
				t.Errorf("truncated = %v: %v", !tc.trunc, err)
			}
			if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("error is not final: then %v", err2)
			}
		})
	}
}

func TestReaderIOError(t *testing.T) {
	data, _ := bundletest.Small(t).Bytes()
	for _, input := range [][]byte{data, gzipped(data)} {
		for _, at := range []int{0, 10, 700, len(input) / 2, len(input) - 1} {
			r := tarball.NewReader(testenv.FailAfter(bytes.NewReader(input), int64(at)))
			_, _, err := readAll(t, r)
			if err == nil {
				_, err = r.Index()
			}
			if !errors.Is(err, testenv.ErrDevice) || tarball.IsCorrupt(err) {
				t.Errorf("failing at %d: err = %v", at, err)
			}
			r.Close()
		}
	}
}

func TestNotBundleMessages(t *testing.T) {
	hexID := strings.Repeat("ab", 32)
	data := bundletest.Tar(
		bundletest.Entry{Name: hexID + "/layer.tar", Data: []byte("x")},
		bundletest.Entry{Name: "manifest.json", Data: []byte("[]")},
	)
	_, err := tarball.NewReader(bytes.NewReader(gzipped(data))).Index()
	if err == nil || err.Error() != "not a bundle file (looks like a docker save archive)" {
		t.Errorf("err = %v", err)
	}
}

// A file shorter than one tar block that is not the start of a bundle
// (images.yaml given as -i) is not a bundle, not a truncated one.
func TestReaderSmallFileIsNotBundle(t *testing.T) {
	for _, data := range []string{"images:\n  - name: alpine:3.20\n", "x", strings.Repeat("bundle", 50)} {
		_, err := tarball.NewReader(strings.NewReader(data)).Index()
		var nb *tarball.NotBundleError
		if !errors.As(err, &nb) || errors.Is(err, tarball.ErrTruncated) {
			t.Errorf("%q: err = %v, want not a bundle file", data, err)
		}
	}
}
