package manifests

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

const (
	dig1 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dig2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestParseReference(t *testing.T) {
	tests := []struct {
		in       string
		full     string
		familiar string
		repo     string
		digest   bool
	}{
		// Docker Hub official images.
		{"debian", "docker.io/library/debian:latest", "debian:latest", "docker.io/library/debian", false},
		{"debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm", "docker.io/library/debian", false},
		{"library/debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm", "docker.io/library/debian", false},
		{"docker.io/debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm", "docker.io/library/debian", false},
		{"docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm", "docker.io/library/debian", false},
		{"index.docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm", "docker.io/library/debian", false},
		{"debian@" + dig1, "docker.io/library/debian@" + dig1, "debian@" + dig1, "docker.io/library/debian", true},
		// Docker Hub user repositories.
		{"acme/app:1", "docker.io/acme/app:1", "acme/app:1", "docker.io/acme/app", false},
		{"docker.io/acme/app", "docker.io/acme/app:latest", "acme/app:latest", "docker.io/acme/app", false},
		{"docker.io/library/foo/bar:1", "docker.io/library/foo/bar:1", "library/foo/bar:1", "docker.io/library/foo/bar", false},
		{"rancher/mirrored-coredns-coredns:1.10.1", "docker.io/rancher/mirrored-coredns-coredns:1.10.1", "rancher/mirrored-coredns-coredns:1.10.1", "docker.io/rancher/mirrored-coredns-coredns", false},
		// Docker Hub repositories that would read as another registry without docker.io/.
		{"docker.io/localhost/app:1", "docker.io/localhost/app:1", "docker.io/localhost/app:1", "docker.io/localhost/app", false},
		{"docker.io/a.b/c", "docker.io/a.b/c:latest", "docker.io/a.b/c:latest", "docker.io/a.b/c", false},
		{"docker.io/library/a.b", "docker.io/library/a.b:latest", "a.b:latest", "docker.io/library/a.b", false},
		// Other registries, with ports.
		{"ghcr.io/x/y:1", "ghcr.io/x/y:1", "ghcr.io/x/y:1", "ghcr.io/x/y", false},
		{"registry.example.com:5000/team/app:1.0", "registry.example.com:5000/team/app:1.0", "registry.example.com:5000/team/app:1.0", "registry.example.com:5000/team/app", false},
		{"registry.example.com:5000/team/app", "registry.example.com:5000/team/app:latest", "registry.example.com:5000/team/app:latest", "registry.example.com:5000/team/app", false},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause", false},
		{"quay.io/prometheus/prometheus@" + dig1, "quay.io/prometheus/prometheus@" + dig1, "quay.io/prometheus/prometheus@" + dig1, "quay.io/prometheus/prometheus", true},
		{"127.0.0.1:5000/a_b__c.d-e--f:v1_X.y-z", "127.0.0.1:5000/a_b__c.d-e--f:v1_X.y-z", "127.0.0.1:5000/a_b__c.d-e--f:v1_X.y-z", "127.0.0.1:5000/a_b__c.d-e--f", false},
		{"[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000/app", false},
		// localhost.
		{"localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest", "localhost:5000/app", false},
		{"localhost:5000/team/app:1@" + dig2, "localhost:5000/team/app@" + dig2, "localhost:5000/team/app@" + dig2, "localhost:5000/team/app", true},
		{"localhost/app:1", "localhost/app:1", "localhost/app:1", "localhost/app", false},
		// A tag that looks like a port: docker reads "localhost:5000" as repository localhost, tag 5000.
		{"localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io/library/localhost", false},
		// Tag and digest: the digest wins.
		{"debian:bookworm@" + dig1, "docker.io/library/debian@" + dig1, "debian@" + dig1, "docker.io/library/debian", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if got := FullName(r); got != tt.full {
				t.Errorf("FullName = %q, want %q", got, tt.full)
			}
			if got := FamiliarName(r); got != tt.familiar {
				t.Errorf("FamiliarName = %q, want %q", got, tt.familiar)
			}
			if got := FullRepo(r.Context()); got != tt.repo {
				t.Errorf("FullRepo = %q, want %q", got, tt.repo)
			}
			if _, isDigest := r.(name.Digest); isDigest != tt.digest {
				t.Errorf("got a %T, want digest=%v", r, tt.digest)
			}
			// Both printed forms read back as the same reference.
			for _, s := range []string{FullName(r), FamiliarName(r), r.Name()} {
				r2, err := ParseReference(s)
				if err != nil {
					t.Fatalf("ParseReference(%q) of a printed form: %v", s, err)
				}
				if FullName(r2) != tt.full || r2.Context() != r.Context() {
					t.Errorf("ParseReference(%q) = %q, want %q", s, FullName(r2), tt.full)
				}
			}
		})
	}
}

func TestParseReferenceSameRepository(t *testing.T) {
	var repos []name.Repository
	for _, s := range []string{"debian", "library/debian:1", "docker.io/debian", "docker.io/library/debian@" + dig1, "index.docker.io/debian:2"} {
		r, err := ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		repos = append(repos, r.Context())
	}
	for _, r := range repos[1:] {
		if r != repos[0] {
			t.Errorf("%#v != %#v: every spelling of a repository must give equal values", r, repos[0])
		}
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []struct{ in, why string }{
		{"", "reference is empty"},
		{"debian bookworm", "contains whitespace"},
		{"debian\x00", "contains a control character"},
		{"débian", "non-ASCII"},
		{"https://ghcr.io/x/y:1", "must not contain a URL scheme (https://)"},
		{"Debian", `repository name must be lower case ("Debian")`},
		{"ghcr.io/Acme/app", `repository name must be lower case ("Acme")`},
		{"debian:", "missing tag after ':'"},
		{"debian:-x", `tag "-x" must not start with '-'`},
		{"debian:a+b", `tag "a+b" contains '+'`},
		{"debian:" + strings.Repeat("a", 129), "tag is 129 characters long; the limit is 128"},
		{"debian@sha256:1234", `digest "sha256:1234" has 4 hex digits; sha256 needs 64`},
		{"debian@sha512:1234", `digest algorithm "sha512" is not supported (only sha256)`},
		{"debian@" + strings.ToUpper(dig1[7:]), `must be sha256:<64 hex digits>`},
		{"debian@sha256:" + strings.ToUpper(dig1[7:]), "use lower-case hex digits"},
		{"debian@", "missing digest after '@'"},
		{"debian@" + dig1 + "@" + dig1, "more than one '@'"},
		{":tag", "missing repository name"},
		{"ghcr.io//x", "empty path component"},
		{"ghcr.io/x/", "empty path component"},
		{"/x", "empty path component"},
		{"ghcr.io/", "missing repository path after the registry host"},
		{"ghcr.io/-x", `path component "-x" must start and end with a letter or digit`},
		{"ghcr.io/x-", `path component "x-" must start and end with a letter or digit`},
		{"ghcr.io/a..b", `path component "a..b" has the separator ".."`},
		{"ghcr.io/a___b", `has the separator "___"`},
		{"ghcr.io/a+b", `path component "a+b" contains '+'`},
		{"host:99999/x", "port 99999 is out of range"},
		{"host:0/x", "port 0 is out of range"},
		{"host:abc/x", `port "abc" is not a number`},
		{"host:/x", "missing port after ':'"},
		{"-host.io/x", `label "-host" must not start or end with '-'`},
		{"a..b.io/x", "empty label"},
		{"ho_st.io/x", `contains '_'`},
		{"[::1/x", "no closing ']'"},
		{"[zz]:5000/x", `"zz" is not an IPv6 address`},
		{"[::1]x/y", `unexpected "x" after ']'`},
		{strings.Repeat("a", 256), "name is 256 characters long; the limit is 255"},
		{strings.Repeat("a", 238), "name is 256 characters long as docker.io/library/aaa"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if err == nil {
				t.Fatalf("ParseReference(%q) = %v, want an error", tt.in, FullName(r))
			}
			if !errors.Is(err, ErrBadReference) {
				t.Errorf("error %v does not wrap ErrBadReference", err)
			}
			want := fmt.Sprintf("bad reference %q: ", tt.in)
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error = %q, want %q…%q", err, want, tt.why)
			}
		})
	}
}

func TestNilAndZero(t *testing.T) {
	if FullName(nil) != "" || FamiliarName(nil) != "" || FullRepo(name.Repository{}) != "" {
		t.Error("nil and zero values must print as empty strings")
	}
}

func TestCheckPlatform(t *testing.T) {
	tests := []struct{ in, err string }{
		{"linux/amd64", ""},
		{"linux/arm64/v8", ""},
		{"linux/arm/v7", ""},
		{"linux/386", ""},
		{"linux/s390x", ""},
		{"windows/amd64:10.0.17763.1234", ""},
		{"", "platform is empty"},
		{"linux", "want os/arch[/variant]"},
		{"linux/", "want os/arch[/variant]"},
		{"/amd64", "want os/arch[/variant]"},
		{"linux/amd64/v8/x", "too many slashes"},
		{"linux/amd64:", "no empty parts or spaces"},
		{" linux/amd64", "no empty parts or spaces"},
		{"linux//v7", "want os/arch[/variant]"},
		{"linux/amd64:a:b", "no empty parts or spaces"},
		{"Linux/AMD64", "write it in lower case (linux/amd64)"},
		{"linux/amd+64", `'+' is not allowed`},
		{"linux/x86_64", "registries call this architecture amd64 (linux/amd64)"},
		{"linux/aarch64", "registries call this architecture arm64 (linux/arm64)"},
		{"linux/armhf", "(linux/arm/v7)"},
		{"windows/amd64:10 0", "os version contains ' '"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := CheckPlatform(tt.in)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("CheckPlatform(%q) = %v, want nil", tt.in, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("CheckPlatform(%q) = %v, want an error containing %q", tt.in, err, tt.err)
			}
		})
	}
}
