package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testLock() *Lock {
	return &Lock{
		Version: LockVersion,
		Source:  &LockSource{File: "images.yaml", SHA256: strings.Repeat("ab", 32)},
		Images: []LockedImage{
			{Ref: "registry.k8s.io/pause:3.10", Digest: dig2},
			{Ref: "debian:bookworm", Digest: dig1, Platforms: []string{"linux/amd64", "linux/arm64"}},
			{Ref: "quay.io/prometheus/prometheus@" + dig1, Digest: dig1},
			{Ref: "docker.io/acme/app:1", Digest: dig2, Platforms: []string{"all"}},
		},
	}
}

const testLockJSON = `{
  "lockVersion": 1,
  "source": {
    "file": "images.yaml",
    "sha256": "abababababababababababababababababababababababababababababababab"
  },
  "images": [
    {
      "ref": "docker.io/acme/app:1",
      "digest": "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
      "platforms": [
        "all"
      ]
    },
    {
      "ref": "docker.io/library/debian:bookworm",
      "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "platforms": [
        "linux/amd64",
        "linux/arm64"
      ]
    },
    {
      "ref": "quay.io/prometheus/prometheus@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    },
    {
      "ref": "registry.k8s.io/pause:3.10",
      "digest": "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
    }
  ]
}
`

func TestLockRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "images.lock")
	in := testLock()
	before := *in
	before.Images = append([]LockedImage(nil), in.Images...)
	if err := WriteLock(path, in); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*in, before) {
		t.Error("WriteLock changed the Lock it was given")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != testLockJSON {
		t.Errorf("lockfile:\n%s\nwant:\n%s", data, testLockJSON)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode())
	}

	out, err := ReadLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != 1 || *out.Source != *in.Source || len(out.Images) != 4 {
		t.Fatalf("ReadLock = %+v", out)
	}
	for _, im := range in.Images {
		d, ok := out.Lookup(im.Ref)
		if !ok || d != im.Digest {
			t.Errorf("Lookup(%s) = %s, %v; want %s", im.Ref, d, ok, im.Digest)
		}
	}

	// Writing what was read gives the same bytes.
	path2 := filepath.Join(dir, "again.lock")
	if err := WriteLock(path2, out); err != nil {
		t.Fatal(err)
	}
	if data2, _ := os.ReadFile(path2); string(data2) != string(data) {
		t.Errorf("second write differs:\n%s", data2)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temp files)", len(entries))
	}
}

func TestLockDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := testLock(), testLock()
	for i, j := 0, len(b.Images)-1; i < j; i, j = i+1, j-1 {
		b.Images[i], b.Images[j] = b.Images[j], b.Images[i]
	}
	pa, pb := filepath.Join(dir, "a.lock"), filepath.Join(dir, "b.lock")
	if err := WriteLock(pa, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteLock(pb, b); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(pa)
	db, _ := os.ReadFile(pb)
	if string(da) != string(db) {
		t.Errorf("same images in another order gave different files:\n%s\n%s", da, db)
	}
}

func TestLockEmptyAndNoSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "images.lock")
	if err := WriteLock(path, &Lock{}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if want := "{\n  \"lockVersion\": 1,\n  \"images\": []\n}\n"; string(data) != want {
		t.Errorf("got %q, want %q", data, want)
	}
	l, err := ReadLock(path)
	if err != nil || l.Images == nil || l.Source != nil {
		t.Errorf("ReadLock = %+v, %v", l, err)
	}
}

func TestWriteLockAtomic(t *testing.T) {
	t.Run("rename fails: no temp file left", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "images.lock")
		// A non-empty directory at the path makes the rename fail.
		if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := WriteLock(path, testLock())
		if err == nil || !strings.HasPrefix(err.Error(), "writing lockfile: ") {
			t.Fatalf("WriteLock = %v, want an error", err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != "images.lock" {
			t.Errorf("directory holds %v, want only images.lock", entries)
		}
	})
	t.Run("invalid lock: old file unchanged", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "images.lock")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		bad := &Lock{Images: []LockedImage{{Ref: "Debian", Digest: dig1}, {Ref: "alpine", Digest: "sha256:1"}}}
		err := WriteLock(path, bad)
		if err == nil || !strings.Contains(err.Error(), `images[0].ref: bad reference "Debian"`) || !strings.Contains(err.Error(), "images[1].digest: ") {
			t.Fatalf("WriteLock = %v", err)
		}
		if data, _ := os.ReadFile(path); string(data) != "old" {
			t.Errorf("old file changed to %q", data)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("directory holds %v", entries)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		err := WriteLock(filepath.Join(t.TempDir(), "no", "images.lock"), testLock())
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("WriteLock = %v", err)
		}
	})
	t.Run("replaces an existing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "images.lock")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := WriteLock(path, testLock()); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); string(data) != testLockJSON {
			t.Errorf("got %s", data)
		}
	})
	t.Run("other errors", func(t *testing.T) {
		dir := t.TempDir()
		for _, tt := range []struct {
			l    *Lock
			want string
		}{
			{nil, "no lock given"},
			{&Lock{Version: 2}, "unsupported lockVersion 2"},
			{&Lock{Images: []LockedImage{{Ref: "debian", Digest: dig1}, {Ref: "docker.io/library/debian:latest", Digest: dig2}}}, "images[1]: duplicate ref docker.io/library/debian:latest (first at images[0])"},
			{&Lock{Images: []LockedImage{{Ref: "debian@" + dig1, Digest: dig2}}}, "is pinned to " + dig1 + " but digest is " + dig2},
			{&Lock{Images: []LockedImage{{Ref: "debian", Digest: dig1, Platforms: []string{"linux"}}}}, `images[0].platforms: bad platform "linux"`},
		} {
			err := WriteLock(filepath.Join(dir, "x.lock"), tt.l)
			if err == nil || !strings.HasPrefix(err.Error(), "writing lockfile ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteLock = %v, want …%s", err, tt.want)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("directory holds %v", entries)
		}
	})
}

func TestReadLockErrors(t *testing.T) {
	valid := func(images string) string {
		return `{"lockVersion": 1, "images": [` + images + `]}`
	}
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"images.lock: reading lockfile: file is empty"}},
		{"syntax error", "{\n  \"lockVersion\": 1,\n  \"images\": [}\n", []string{"images.lock:3:14: reading lockfile: invalid character '}' looking for beginning of value"}},
		{"truncated", "{\n  \"lockVersion\": 1,\n", []string{"images.lock:2:20: reading lockfile: unexpected end of JSON"}},
		{"wrong type", "{\"lockVersion\": \"1\"}", []string{"images.lock:1:19: reading lockfile: lockVersion: json: cannot unmarshal string into Go struct field"}},
		{"wrong type in image", "{\"lockVersion\": 1,\n \"images\": [{\"ref\": 3}]}", []string{"images.lock:2:21: reading lockfile: images.ref: json: cannot unmarshal number"}},
		{"trailing data", valid("") + "\n{}", []string{"images.lock:2:1: reading lockfile: unexpected data after the JSON object"}},
		{"missing version", `{"images": []}`, []string{"images.lock: reading lockfile: missing lockVersion (want 1)"}},
		{"newer version", `{"lockVersion": 2, "images": []}`, []string{"images.lock: reading lockfile: unsupported lockVersion 2 (this bundle reads 1)"}},
		{"bad source", `{"lockVersion": 1, "source": {"file": "x", "sha256": "abc"}, "images": []}`, []string{`images.lock: reading lockfile: source.sha256: "abc" is not 64 lower-case hex digits`}},
		{"every bad image", valid(`{"ref": "Debian", "digest": "` + dig1 + `"}, {"ref": "alpine", "digest": "md5:1"}, {"ref": "alpine@` + dig1 + `", "digest": "` + dig2 + `"}, {"ref": "busybox", "digest": "` + dig1 + `", "platforms": ["linux/x86_64"]}, {"ref": "nginx", "digest": "` + dig1 + `"}, {"ref": "docker.io/library/nginx:latest", "digest": "` + dig1 + `"}`),
			[]string{
				`images.lock: reading lockfile: images[0].ref: bad reference "Debian": repository name must be lower case`,
				`images.lock: reading lockfile: images[1].digest: digest algorithm "md5" is not supported`,
				`images.lock: reading lockfile: images[2]: ref docker.io/library/alpine@` + dig1 + ` is pinned to ` + dig1 + ` but digest is ` + dig2,
				`images.lock: reading lockfile: images[3].platforms: bad platform "linux/x86_64"`,
				`images.lock: reading lockfile: images[5]: duplicate ref docker.io/library/nginx:latest (first at images[4])`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "images.lock")
			if err := os.WriteFile(path, []byte(tt.in), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadLock(path)
			if err == nil {
				t.Fatal("ReadLock succeeded")
			}
			got := strings.ReplaceAll(err.Error(), path, "images.lock")
			lines := strings.Split(got, "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(tt.want), got)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error %d:\n got %s\nwant %s…", i, lines[i], want)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := ReadLock(filepath.Join(t.TempDir(), "nope.lock"))
		if err == nil || !strings.HasPrefix(err.Error(), "reading lockfile: open ") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadLock = %v", err)
		}
	})
}

func TestReadLockNormalizes(t *testing.T) {
	in := `{"lockVersion": 1, "future": true, "images": [{"ref": "registry.k8s.io/pause:3.10", "digest": "` + dig2 + `"}, {"ref": "debian:bookworm", "digest": "` + dig1 + `", "extra": 1}]}`
	l, err := ParseLock("images.lock", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []LockedImage{{Ref: "docker.io/library/debian:bookworm", Digest: dig1}, {Ref: "registry.k8s.io/pause:3.10", Digest: dig2}}
	if !reflect.DeepEqual(l.Images, want) {
		t.Errorf("Images = %+v, want %+v", l.Images, want)
	}
}

func TestLookup(t *testing.T) {
	l := &Lock{Images: []LockedImage{
		{Ref: "docker.io/library/debian:bookworm", Digest: dig1},
		{Ref: "ghcr.io/x/y@" + dig2, Digest: dig2},
	}}
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{"docker.io/library/debian:bookworm", dig1, true},
		{"debian:bookworm", dig1, true},
		{"index.docker.io/library/debian:bookworm", dig1, true},
		{"debian", "", false},
		{"debian:bullseye", "", false},
		{"ghcr.io/x/y@" + dig2, dig2, true},
		{"not a ref", "", false},
	}
	for _, tt := range tests {
		if got, ok := l.Lookup(tt.ref); got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.ref, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := (*Lock)(nil).Lookup("debian"); ok {
		t.Error("Lookup on a nil Lock found something")
	}
}

func TestLockTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.lock")
	if len(files) == 0 {
		t.Fatal("no lockfiles in testdata")
	}
	for _, f := range files {
		l, err := ReadLock(f)
		valid := strings.HasPrefix(filepath.Base(f), "valid")
		if valid != (err == nil) {
			t.Errorf("ReadLock(%s) = %v, %v", f, l, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), f+":") {
			t.Errorf("ReadLock(%s): error does not name the file: %v", f, err)
		}
		if valid {
			data, _ := os.ReadFile(f)
			if enc, err := encodeLock(l); err != nil || string(enc) != string(data) {
				t.Errorf("%s does not encode back to itself: %v\n%s", f, err, enc)
			}
		}
	}
}
