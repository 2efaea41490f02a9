package tarball_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// streamed is what the streaming Reader gives for data: the entries after
// bundle.json, the content of bundle.json's index and of the fixed files,
// and its first error (an *EntryError included). With blobs, blob
// contents are read too; without, archive/tar skips them, as Open does.
type streamed struct {
	index   *tarball.Index
	entries []tarball.FileEntry
	content map[string][]byte
	err     error
}

func stream(data []byte, blobs bool) streamed {
	r := tarball.NewReader(bytes.NewReader(data))
	defer r.Close()
	var s streamed
	s.content = map[string][]byte{}
	s.index, s.err = r.Index()
	if s.err != nil {
		return s
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return s
		}
		if err != nil {
			s.err = err
			return s
		}
		if e.Kind == tarball.KindFile || (blobs && e.Kind == tarball.KindBlob) {
			b, err := io.ReadAll(e)
			if err != nil {
				s.err = err
				return s
			}
			s.content[e.Name] = b
		}
		s.entries = append(s.entries, tarball.FileEntry{Name: e.Name, Kind: e.Kind, Digest: e.Digest, Offset: e.Offset, Size: e.Size})
	}
}

// sameAsStream checks that Open of data gives what the streaming Reader
// gives: the same error, of the same type and text, or the same entries
// at the same offsets, whose sections hold what the Reader reads.
func sameAsStream(t *testing.T, data []byte) (*tarball.File, error) {
	t.Helper()
	f, err := tarball.OpenReaderAt(bytes.NewReader(data), int64(len(data)))
	want := stream(data, false)
	if (err == nil) != (want.err == nil) || (err != nil && (err.Error() != want.err.Error() || reflect.TypeOf(err) != reflect.TypeOf(want.err))) {
		t.Fatalf("Open: %T %v\nReader: %T %v", err, err, want.err, want.err)
	}
	if err != nil {
		if tarball.IsCorrupt(err) != tarball.IsCorrupt(want.err) {
			t.Fatalf("Open error %v: IsCorrupt %v, the Reader's %v", err, tarball.IsCorrupt(err), tarball.IsCorrupt(want.err))
		}
		return nil, err
	}
	if !reflect.DeepEqual(f.Index(), want.index) {
		t.Fatalf("Open's bundle.json is not the Reader's")
	}
	got := f.Entries()
	if len(got) == 0 || got[0].Name != tarball.IndexFile {
		t.Fatalf("entries do not start with bundle.json: %v", got)
	}
	ix := got[0]
	if !bytes.Equal(data[ix.Offset:ix.Offset+ix.Size], f.Content(tarball.IndexFile)) {
		t.Fatalf("bundle.json at %d (%d bytes) is not the content Open read", ix.Offset, ix.Size)
	}
	if !reflect.DeepEqual(got[1:], want.entries) && (len(got) > 1 || len(want.entries) > 0) {
		t.Fatalf("entries:\n Open   %v\n Reader %v", got[1:], want.entries)
	}
	full := stream(data, true)
	if full.err != nil {
		t.Fatalf("Open succeeded, reading every content fails: %v", full.err)
	}
	for _, e := range got[1:] {
		if e.Kind == tarball.KindDir {
			continue
		}
		sec, err := io.ReadAll(f.Section(e.Name))
		if err != nil || !bytes.Equal(sec, full.content[e.Name]) {
			t.Fatalf("%s: section (%d bytes, %v) is not the content the Reader reads (%d bytes)", e.Name, len(sec), err, len(full.content[e.Name]))
		}
		if e.Kind == tarball.KindFile && !bytes.Equal(f.Content(e.Name), full.content[e.Name]) {
			t.Fatalf("%s: Content is not the content the Reader reads", e.Name)
		}
	}
	return f, nil
}

func TestOpenValid(t *testing.T) {
	b := bundletest.Small(t)
	data, offsets := b.Bytes()
	path := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := tarball.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Index().Images) != 2 {
		t.Errorf("index: %d images", len(f.Index().Images))
	}
	entries := f.Entries()
	if len(entries) != len(b.Entries) {
		t.Fatalf("%d entries, want %d", len(entries), len(b.Entries))
	}
	for i, want := range b.Entries {
		e := entries[i]
		if e.Name != want.Name || e.Offset != offsets[want.Name] || (e.Kind != tarball.KindDir && e.Size != int64(len(want.Data))) {
			t.Errorf("entry %d: %+v, want %s at %d, %d bytes", i, e, want.Name, offsets[want.Name], len(want.Data))
		}
		if e.Kind == tarball.KindDir {
			continue
		}
		got, err := io.ReadAll(f.Section(want.Name))
		if err != nil || !bytes.Equal(got, want.Data) {
			t.Errorf("%s: section of %d bytes, %v; want %d bytes", want.Name, len(got), err, len(want.Data))
		}
		if e.Kind == tarball.KindFile && !bytes.Equal(f.Content(want.Name), want.Data) {
			t.Errorf("%s: Content is not the entry's data", want.Name)
		}
	}
	for h := range f.Index().Blobs {
		e, ok := f.Blob(h)
		if !ok || e.Kind != tarball.KindBlob || e.Digest != h {
			t.Errorf("Blob(%s) = %+v, %v", h, e, ok)
			continue
		}
		sum := sha256.New()
		io.Copy(sum, f.Section(e.Name))
		if hex.EncodeToString(sum.Sum(nil)) != h.Hex {
			t.Errorf("blob %s: its section does not hash to its digest", h)
		}
	}
	if _, ok := f.Lookup("blobs/sha256/" + strings.Repeat("0", 64)); ok {
		t.Error("Lookup of an absent blob found it")
	}
	if f.Section("nope") != nil || f.Content("nope") != nil {
		t.Error("Section or Content of an absent entry is not nil")
	}
	sameAsStream(t, data)
}

func TestOpenRefuses(t *testing.T) {
	data, _ := bundletest.Small(t).Bytes()
	dir := t.TempDir()
	gz := filepath.Join(dir, "b.tar.gz")
	os.WriteFile(gz, gzipped(data), 0o644)
	if _, err := tarball.Open(gz); !errors.Is(err, tarball.ErrCompressed) || tarball.IsCorrupt(err) {
		t.Errorf("Open of a gzip bundle: %v, want ErrCompressed", err)
	}
	if _, err := tarball.Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open of a directory: %v", err)
	}
	if _, err := tarball.Open(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
}

// Open refuses what the streaming Reader refuses, with the same typed
// error: the hostile fixtures and damaged copies of a valid bundle.
func TestOpenSameErrorsAsReader(t *testing.T) {
	type want int
	const (
		ok want = iota
		entry
		corrupt
		notBundle
	)
	type openCase struct {
		name string
		data []byte
		want want
		text string
	}
	var cases []openCase
	for _, tc := range []struct {
		file string
		want want
		text string
	}{
		{"absolute.tar", entry, "absolute path"},
		{"bad-reference.tar", ok, ""},
		{"device.tar", entry, "device file"},
		{"dotdot-in-blobs.tar", entry, `path with ".."`},
		{"dotdot.tar", entry, `path with ".."`},
		{"duplicate-blob.tar", entry, "duplicate entry"},
		{"duplicate-bundle-json.tar", entry, "duplicate entry"},
		{"duplicate-manifest-json.tar", entry, "duplicate entry"},
		{"gzip-bomb-layer.tar", ok, ""},
		{"hardlink.tar", entry, "hardlink to"},
		{"oversized-bundle-json.tar", corrupt, "over the limit"},
		{"oversized-manifest-json.tar", entry, "over the limit"},
		{"pinned-digest-lie.tar", ok, ""},
		{"symlink-dir.tar", entry, "symlink to"},
		{"symlink.tar", entry, "symlink to"},
	} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "hostile", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, openCase{tc.file, data, tc.want, tc.text})
	}
	data, offsets := bundletest.Small(t).Bytes()
	blob := ""
	for name, off := range offsets {
		if strings.HasPrefix(name, tarball.BlobsSHA256Dir) && (blob == "" || off > offsets[blob]) {
			blob = name
		}
	}
	zeros := make([]byte, 2048)
	oneEndBlock := bundletest.Tar(
		bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":1}`)},
		bundletest.Entry{Name: tarball.BlobPath(bundletest.Digest(zeros)), Data: zeros},
	)
	oneEndBlock = oneEndBlock[:len(oneEndBlock)-512]
	cases = append(cases, []openCase{
		{"valid", data, ok, ""},
		{"empty", nil, notBundle, "the file is empty"},
		{"text", []byte(strings.Repeat("hello, this is not a tar file at all\n", 30)), notBundle, "not a tar archive"},
		{"docker save", bundletest.Tar(bundletest.Entry{Name: strings.Repeat("ab", 32) + "/layer.tar", Data: []byte("x")}, bundletest.Entry{Name: "manifest.json", Data: []byte("[]")}), notBundle, "docker save"},
		{"truncated in the last blob", data[:offsets[blob]+10], corrupt, "the file ends inside a tar header"},
		{"truncated in a header", data[:offsets[tarball.OCIIndexFile]-100], corrupt, "the file ends inside a tar header"},
		{"truncated between entries", data[:len(data)-1024], corrupt, "without its end-of-archive marker"},
		{"truncated in bundle.json", data[:offsets[tarball.IndexFile]+5], corrupt, "the file ends inside the entry"},
		{"trailing data", append(bytes.Clone(data), []byte("junk")...), corrupt, "data after the end"},
		{"bad header", func() []byte { d := bytes.Clone(data); d[offsets[tarball.OCIIndexFile]-512+150] ^= 0xff; return d }(), corrupt, "the tar header after"},
		{"bad bundle.json header", func() []byte { d := bytes.Clone(data); d[130] ^= 0xff; return d }(), corrupt, "its tar header is damaged"},
		{"bad bundle.json", bundletest.Tar(bundletest.Entry{Name: tarball.IndexFile, Data: []byte("{")}), corrupt, "parsing"},
		{"sparse", sparseTar(), entry, "sparse file"},
		// The skipped content's zeros count towards the end marker, as
		// they do when it is read.
		{"one end block after zeros", oneEndBlock, ok, ""},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sameAsStream(t, tc.data)
			var ee *tarball.EntryError
			var ce *tarball.CorruptError
			var nb *tarball.NotBundleError
			switch tc.want {
			case ok:
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return
			case entry:
				if !errors.As(err, &ee) {
					t.Fatalf("Open: %T %v, want an *EntryError", err, err)
				}
			case corrupt:
				if !errors.As(err, &ce) {
					t.Fatalf("Open: %T %v, want a *CorruptError", err, err)
				}
			case notBundle:
				if !errors.As(err, &nb) {
					t.Fatalf("Open: %T %v, want a *NotBundleError", err, err)
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Open: %v, want %q", err, tc.text)
			}
		})
	}
	gz, err := os.ReadFile(filepath.Join("..", "testdata", "hostile", "gzip-bomb-bundle.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.OpenReaderAt(bytes.NewReader(gz), int64(len(gz))); !errors.Is(err, tarball.ErrCompressed) {
		t.Errorf("gzip-bomb-bundle.tar.gz: %v, want ErrCompressed", err)
	}
}

// failingReaderAt fails every read that reaches offset n.
type failingReaderAt struct {
	data []byte
	n    int64
}

func (f *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.n {
		k := max(0, f.n-off)
		copy(p, f.data[off:off+k])
		return int(k), testenv.ErrDevice
	}
	return copy(p, f.data[off:]), nil
}

func TestOpenIOError(t *testing.T) {
	data, _ := bundletest.Small(t).Bytes()
	for _, at := range []int{0, 10, 700, len(data) / 2, len(data) - 1} {
		_, err := tarball.OpenReaderAt(&failingReaderAt{data: data, n: int64(at)}, int64(len(data)))
		if !errors.Is(err, testenv.ErrDevice) || tarball.IsCorrupt(err) {
			t.Errorf("failing at %d: err = %v", at, err)
		}
	}
}

// FuzzOpen feeds Open and the streaming Reader the same bytes: Open gives
// the error the Reader gives, of the same type and text, or the entries
// the Reader gives, at the offsets where the Reader reads their content;
// it refuses every gzip stream with ErrCompressed. Nothing panics.
func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	zeros := make([]byte, 1100)
	one := bundletest.Tar(
		bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":1}`)},
		bundletest.Entry{Name: tarball.BlobPath(bundletest.Digest(zeros)), Data: zeros},
	)
	f.Add(one[:len(one)-512])
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
			if _, err := tarball.OpenReaderAt(bytes.NewReader(data), int64(len(data))); !errors.Is(err, tarball.ErrCompressed) {
				t.Fatalf("Open of a gzip stream: %v", err)
			}
			return
		}
		sameAsStream(t, data)
	})
}
