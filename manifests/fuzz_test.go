package manifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// addTestdata seeds a fuzz test with the files in testdata/ matching pattern.
func addTestdata(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files for %s: %v", pattern, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParse checks that Parse never panics, whatever the bytes and
// whichever syntax, and that what it returns holds together: either a
// Spec of valid, distinct, normalized entries, or one-line errors that
// each name the file.
func FuzzParse(f *testing.F) {
	addTestdata(f, "*.yaml")
	addTestdata(f, "*.txt")
	for _, s := range []string{
		"images: [debian, &a alpine, *a]\n",
		"images:\n  - name: x\n    tags: {regex: '(?i)^v[0-9]+$'}\n    platforms: all\n",
		"mirrors: {docker.io: a.io/b, quay.io: localhost:5000}\nimages: ['[::1]:5000/a:b@sha256:" + strings.Repeat("0", 64) + "']\n",
		"a: &a [*a]\n",
		"images: !!map {}\n",
		"images:\n- ? [a]\n  : b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, file := range []string{"images.yaml", "images.txt", "images"} {
			s, err := Parse(file, data)
			if (s == nil) == (err == nil) {
				t.Fatalf("Parse(%s) = %v, %v: want exactly one of a Spec and an error", file, s, err)
			}
			if err != nil {
				checkParseError(t, file, err)
				continue
			}
			checkSpec(t, file, data, s)
		}
	})
}

func checkParseError(t *testing.T, file string, err error) {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	if len(errs) == 0 || len(errs) > maxErrors+1 {
		t.Fatalf("Parse(%s): %d errors", file, len(errs))
	}
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("Parse(%s): error %q is a %T, want *Error", file, e, e)
		}
		msg := pe.Error()
		if pe.Pos.File != file || !strings.HasPrefix(msg, file) || pe.Msg == "" {
			t.Fatalf("Parse(%s): error %q does not name the file", file, msg)
		}
		if strings.ContainsAny(msg, "\n\r") {
			t.Fatalf("Parse(%s): error %q is not one line", file, msg)
		}
		if pe.Pos.Line < 0 || pe.Pos.Col < 0 || pe.Pos.Col > 0 && pe.Pos.Line == 0 {
			t.Fatalf("Parse(%s): error %q has a bad position %#v", file, msg, pe.Pos)
		}
	}
}

func checkSpec(t *testing.T, file string, data []byte, s *Spec) {
	t.Helper()
	sum := sha256.Sum256(data)
	if s.File != file || s.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("Parse(%s): File, SHA256 = %q, %q", file, s.File, s.SHA256)
	}
	if len(s.Images) == 0 {
		t.Fatalf("Parse(%s): no images and no error", file)
	}
	checkPlatforms(t, s.Platforms)
	for i := 1; i < len(s.Mirrors); i++ {
		if s.Mirrors[i-1].From >= s.Mirrors[i].From {
			t.Fatalf("mirrors not sorted and distinct: %q", s.Mirrors)
		}
	}
	seen := map[string]bool{}
	for _, e := range s.Images {
		if e.Pos.File != file || e.Pos.Line < 1 || e.Pos.Col < 1 {
			t.Fatalf("entry at %#v", e.Pos)
		}
		repo := FullRepo(e.Repository)
		r2, err := name.NewRepository(repo)
		if err != nil || r2 != e.Repository {
			t.Fatalf("repository %s does not read back: %v", repo, err)
		}
		kinds := 0
		if len(e.Tags) > 0 {
			kinds++
		}
		if e.TagRegex != nil {
			kinds++
		}
		if e.Digest != "" && len(e.Tags) == 0 {
			kinds++
		}
		if kinds != 1 {
			t.Fatalf("entry %s: tags %q, regex %v, digest %q", e.Pos, e.Tags, e.TagRegex, e.Digest)
		}
		if e.Digest != "" {
			if err := checkDigest(e.Digest); err != nil {
				t.Fatalf("entry %s: %v", e.Pos, err)
			}
		}
		for _, r := range e.Refs() {
			full := FullName(r)
			if seen[full] {
				t.Fatalf("%s named twice without an error", full)
			}
			seen[full] = true
			checkRoundTrip(t, full)
		}
		checkPlatforms(t, e.Platforms)
		if e.Platforms != nil && len(e.Platforms) == 0 {
			t.Fatalf("entry %s: empty, non-nil platforms", e.Pos)
		}
		_ = s.PlatformsFor(e)
		m, ok := s.MirrorFor(e.Repository)
		if ok != s.hasMirrorFor(e.Repository) {
			t.Fatalf("entry %s: MirrorFor = %s, %v", e.Pos, FullRepo(m), ok)
		}
	}
}

func (s *Spec) hasMirrorFor(r name.Repository) bool {
	for _, m := range s.Mirrors {
		if m.From == registryKey(r.RegistryStr()) {
			return true
		}
	}
	return false
}

func checkPlatforms(t *testing.T, ps []string) {
	t.Helper()
	for _, p := range ps {
		if p == AllPlatforms {
			if len(ps) != 1 {
				t.Fatalf("platforms %q: all with others", ps)
			}
			continue
		}
		if err := CheckPlatform(p); err != nil {
			t.Fatalf("platforms %q: %v", ps, err)
		}
	}
}

// checkRoundTrip checks that a full name reads back as itself, through
// ParseReference, FamiliarName and go-containerregistry's own parser.
func checkRoundTrip(t *testing.T, full string) {
	t.Helper()
	r, err := ParseReference(full)
	if err != nil {
		t.Fatalf("ParseReference(%q): %v", full, err)
	}
	if got := FullName(r); got != full {
		t.Fatalf("FullName(ParseReference(%q)) = %q", full, got)
	}
	fam := FamiliarName(r)
	r2, err := ParseReference(fam)
	if err != nil || FullName(r2) != full {
		t.Fatalf("FamiliarName %q of %q reads back as %v, %v", fam, full, r2, err)
	}
	g, err := name.ParseReference(full)
	if err != nil {
		t.Fatalf("go-containerregistry cannot parse %q: %v", full, err)
	}
	if FullName(g) != full || g.Context() != r.Context() {
		t.Fatalf("go-containerregistry reads %q as %q", full, FullName(g))
	}
}

// FuzzReference checks that ParseReference never panics, that its
// errors say which reference was bad, and that what it accepts prints and
// reads back unchanged, also through go-containerregistry.
func FuzzReference(f *testing.F) {
	for _, s := range []string{
		"debian", "debian:bookworm", "acme/app:1", "docker.io/library/debian", "index.docker.io/debian",
		"ghcr.io/x/y:1", "registry.example.com:5000/team/app:1.0", "localhost:5000/app", "localhost:5000",
		"[::1]:5000/a", "quay.io/a/b@sha256:" + strings.Repeat("a", 64), "a:b@sha256:" + strings.Repeat("0", 64),
		"Debian", "https://x/y", "a//b", "a__b/c--d/e.f", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrBadReference) || strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("ParseReference(%q): error %q", s, err)
			}
			return
		}
		checkRoundTrip(t, FullName(r))
	})
}

// FuzzLock checks that ParseLock never panics and that a lock it
// accepts encodes to bytes it reads back to the same lock.
func FuzzLock(f *testing.F) {
	addTestdata(f, "*.lock")
	f.Add([]byte(`{"lockVersion":1,"images":[{"ref":"debian","digest":"sha256:` + strings.Repeat("0", 64) + `","platforms":["all"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock("images.lock", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "images.lock") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		enc, err := encodeLock(l)
		if err != nil {
			t.Fatalf("a lock ParseLock accepted does not encode: %v", err)
		}
		l2, err := ParseLock("images.lock", enc)
		if err != nil {
			t.Fatalf("encoded lock does not read back: %v\n%s", err, enc)
		}
		enc2, _ := encodeLock(l2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
