package manifests

import (
	"strings"
	"testing"
)

func TestAddArgs(t *testing.T) {
	s, err := AddArgs(nil, Args{Refs: []string{"debian:bookworm", "127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64)}, Platforms: []string{"linux/amd64", "linux/arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.File != ArgsFile || len(s.Images) != 2 || s.SHA256 == "" {
		t.Fatalf("spec = %+v", s)
	}
	if got := s.Images[0].Refs()[0].String(); got != "index.docker.io/library/debian:bookworm" {
		t.Errorf("first ref %s", got)
	}
	if got := s.Images[1].Digest; got != "sha256:"+strings.Repeat("a", 64) {
		t.Errorf("digest %q", got)
	}
	for _, e := range s.Images {
		if strings.Join(e.Platforms, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("%v platforms %v", e.Refs(), e.Platforms)
		}
	}

	// With a file: appended after its entries; a duplicate is an error at
	// the argument, naming where it was first.
	base, err := Parse("images.yaml", []byte("platforms: [linux/amd64]\nimages:\n  - alpine:3.20\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err = AddArgs(base, Args{Refs: []string{"busybox"}})
	if err != nil || len(s.Images) != 2 || len(base.Images) != 1 || s.SHA256 == base.SHA256 {
		t.Fatalf("AddArgs(file) = %+v, %v (base %d images)", s, err, len(base.Images))
	}
	if s.Images[1].Tags[0] != "latest" || s.PlatformsFor(s.Images[1])[0] != "linux/amd64" {
		t.Errorf("busybox entry %+v", s.Images[1])
	}
	_, err = AddArgs(base, Args{Refs: []string{"docker.io/library/alpine:3.20"}})
	if err == nil || !strings.Contains(err.Error(), `argument 1: duplicate image "docker.io/library/alpine:3.20"`) || !strings.Contains(err.Error(), "images.yaml:3:5") {
		t.Errorf("duplicate: %v", err)
	}

	// --platform alone overrides the file's default.
	s, err = AddArgs(base, Args{Platforms: []string{"linux/arm64"}})
	if err != nil || s.PlatformsFor(s.Images[0])[0] != "linux/arm64" || base.Platforms[0] != "linux/amd64" {
		t.Errorf("--platform over the file: %+v, %v", s, err)
	}

	// --all-tags: every tag of a repository.
	s, err = AddArgs(nil, Args{Refs: []string{"127.0.0.1:5000/team/app"}, AllTags: true})
	if err != nil || s.Images[0].TagRegex == nil || !s.Images[0].TagRegex.MatchString("1.0") || len(s.Images[0].Tags) != 0 {
		t.Errorf("--all-tags: %+v, %v", s, err)
	}

	for _, tc := range []struct {
		args Args
		want string
	}{
		{Args{Refs: []string{"Bad Ref"}}, "argument 1: bad reference \"Bad Ref\""},
		{Args{Refs: []string{"app:1"}, Platforms: []string{"linux/amd46"}}, `did you mean "amd64"`},
		{Args{Refs: []string{"app:1"}, AllTags: true}, "--all-tags takes a repository without a tag"},
		{Args{AllTags: true}, "--all-tags needs repositories"},
		{Args{Refs: []string{"a:1", "a:1"}}, "argument 2: duplicate image"},
	} {
		if _, err := AddArgs(nil, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddArgs(%+v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func FuzzAddArgs(f *testing.F) {
	f.Add("debian:bookworm", "linux/amd64", false)
	f.Fuzz(func(t *testing.T, ref, platform string, all bool) {
		s, err := AddArgs(nil, Args{Refs: []string{ref}, Platforms: []string{platform}, AllTags: all})
		if err == nil && len(s.Images) != 1 {
			t.Errorf("no error and %d images", len(s.Images))
		}
	})
}
