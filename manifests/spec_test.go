package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// summary prints an entry on one line for table tests.
func summary(e Entry) string {
	s := fmt.Sprintf("%d:%d %s", e.Pos.Line, e.Pos.Col, FullRepo(e.Repository))
	if e.Tags != nil {
		s += " tags=" + strings.Join(e.Tags, ",")
	}
	if e.TagRegex != nil {
		s += " regex=" + e.TagRegex.String()
	}
	if e.Digest != "" {
		s += " digest=" + e.Digest[:14]
	}
	if e.Platforms != nil {
		s += " platforms=" + strings.Join(e.Platforms, ",")
	}
	return s
}

func summaries(s *Spec) []string {
	var out []string
	for _, e := range s.Images {
		out = append(out, summary(e))
	}
	return out
}

func TestParseYAML(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		platforms []string
		mirrors   []Mirror
		images    []string
	}{
		{
			name:   "short forms normalized like docker",
			in:     "images:\n  - debian\n  - debian:bookworm\n  - acme/app:1\n  - ghcr.io/x/y:1\n  - localhost:5000/app\n",
			images: []string{"2:5 docker.io/library/debian tags=latest", "3:5 docker.io/library/debian tags=bookworm", "4:5 docker.io/acme/app tags=1", "5:5 ghcr.io/x/y tags=1", "6:5 localhost:5000/app tags=latest"},
		},
		{
			name:   "name key",
			in:     "images:\n  - name: ghcr.io/acme/api:1.4.2\n",
			images: []string{"2:5 ghcr.io/acme/api tags=1.4.2"},
		},
		{
			name:      "default and per-image platforms",
			in:        "platforms: [linux/amd64, linux/arm64/v8]\nimages:\n  - debian\n  - name: alpine\n    platforms: [linux/arm/v7]\n  - name: busybox\n    platforms: all\n",
			platforms: []string{"linux/amd64", "linux/arm64/v8"},
			images:    []string{"3:5 docker.io/library/debian tags=latest", "4:5 docker.io/library/alpine tags=latest platforms=linux/arm/v7", "6:5 docker.io/library/busybox tags=latest platforms=all"},
		},
		{
			name:      "all platforms as a list and a scalar platform",
			in:        "platforms: [all]\nimages:\n  - name: debian\n    platforms: linux/amd64\n",
			platforms: []string{"all"},
			images:    []string{"3:5 docker.io/library/debian tags=latest platforms=linux/amd64"},
		},
		{
			name:   "pinned by digest",
			in:     "images:\n  - name: quay.io/prometheus/prometheus@" + dig1 + "\n  - debian@" + dig2 + "\n",
			images: []string{"2:5 quay.io/prometheus/prometheus digest=sha256:0123456", "3:5 docker.io/library/debian digest=sha256:fedcba9"},
		},
		{
			name:   "tag and digest keeps the tag as the name",
			in:     "images:\n  - debian:bookworm@" + dig1 + "\n",
			images: []string{"2:5 docker.io/library/debian tags=bookworm digest=sha256:0123456"},
		},
		{
			name:   "tags list, unquoted numbers kept as written",
			in:     "images:\n  - name: registry.k8s.io/pause\n    tags: [\"3.9\", 3.10, 010, latest]\n  - name: alpine\n    tags: \"3.20\"\n",
			images: []string{"2:5 registry.k8s.io/pause tags=3.9,3.10,010,latest", "4:5 docker.io/library/alpine tags=3.20"},
		},
		{
			name:   "block tags list",
			in:     "images:\n  - name: registry.k8s.io/pause\n    tags:\n      - \"3.9\"\n      - \"3.10\"\n",
			images: []string{"2:5 registry.k8s.io/pause tags=3.9,3.10"},
		},
		{
			name:   "tag regex",
			in:     "images:\n  - name: docker.io/library/alpine\n    tags: {regex: '^3\\.2[0-9]$'}\n  - name: alpine\n    tags:\n      regex: ^edge$\n",
			images: []string{`2:5 docker.io/library/alpine regex=^3\.2[0-9]$`, "4:5 docker.io/library/alpine regex=^edge$"},
		},
		{
			name:    "mirrors sorted by registry, docker hub under docker.io",
			in:      "mirrors:\n  quay.io: mirror.local/quay\n  index.docker.io: registry.local:5000/dockerhub/\n  GHCR.io: mirror.local:443\nimages:\n  - debian\n",
			mirrors: []Mirror{{"docker.io", "registry.local:5000/dockerhub"}, {"ghcr.io", "mirror.local:443"}, {"quay.io", "mirror.local/quay"}},
			images:  []string{"6:5 docker.io/library/debian tags=latest"},
		},
		{
			name:      "keys in any order, anchors and aliases",
			in:        "images:\n  - name: debian\n    platforms: &p [linux/arm64]\n  - name: alpine\n    platforms: *p\nplatforms: [linux/amd64]\nmirrors:\n  docker.io: m.local\n",
			platforms: []string{"linux/amd64"},
			mirrors:   []Mirror{{"docker.io", "m.local"}},
			images:    []string{"2:5 docker.io/library/debian tags=latest platforms=linux/arm64", "4:5 docker.io/library/alpine tags=latest platforms=linux/arm64"},
		},
		{
			name:   "same repository, different tags, digests and regexes",
			in:     "images:\n  - debian:12\n  - debian:bookworm\n  - debian@" + dig1 + "\n  - debian:12-slim@" + dig1 + "\n  - name: debian\n    tags: {regex: '^1'}\n  - name: debian\n    tags: {regex: '^2'}\n",
			images: []string{"2:5 docker.io/library/debian tags=12", "3:5 docker.io/library/debian tags=bookworm", "4:5 docker.io/library/debian digest=sha256:0123456", "5:5 docker.io/library/debian tags=12-slim digest=sha256:0123456", "6:5 docker.io/library/debian regex=^1", "8:5 docker.io/library/debian regex=^2"},
		},
		{
			name:   "comments, document marker, CRLF",
			in:     "# images\r\n---\r\nimages:   # the list\r\n  - debian   # trailing\r\n...\r\n",
			images: []string{"4:5 docker.io/library/debian tags=latest"},
		},
		{
			name:   "flow style",
			in:     "{images: [debian, {name: alpine, tags: [edge]}]}",
			images: []string{"1:11 docker.io/library/debian tags=latest", "1:19 docker.io/library/alpine tags=edge"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("images.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(s.Platforms, tt.platforms) {
				t.Errorf("Platforms = %q, want %q", s.Platforms, tt.platforms)
			}
			if !slices.Equal(s.Mirrors, tt.mirrors) {
				t.Errorf("Mirrors = %q, want %q", s.Mirrors, tt.mirrors)
			}
			if got := summaries(s); !slices.Equal(got, tt.images) {
				t.Errorf("Images:\n got %q\nwant %q", got, tt.images)
			}
			sum := sha256.Sum256([]byte(tt.in))
			if s.File != "images.yaml" || s.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("File, SHA256 = %q, %q", s.File, s.SHA256)
			}
		})
	}
}

func TestParsePlain(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		images []string
	}{
		{
			name:   "RKE2 style list",
			in:     "docker.io/rancher/mirrored-pause:3.6\ndocker.io/rancher/klipper-helm:v0.8.2-build20230815\n",
			images: []string{"1:1 docker.io/rancher/mirrored-pause tags=3.6", "2:1 docker.io/rancher/klipper-helm tags=v0.8.2-build20230815"},
		},
		{
			name:   "comments, blank lines, indentation, CRLF, BOM",
			in:     "\uFEFF# list\r\n\r\n  debian:bookworm  # trailing comment\r\n\t\talpine\r\n#ghcr.io/x/y\r\nquay.io/a/b@" + dig1 + "\r\n   ",
			images: []string{"3:3 docker.io/library/debian tags=bookworm", "4:3 docker.io/library/alpine tags=latest", "6:1 quay.io/a/b digest=sha256:0123456"},
		},
		{
			name:   "no trailing newline",
			in:     "busybox",
			images: []string{"1:1 docker.io/library/busybox tags=latest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("images.txt", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summaries(s); !slices.Equal(got, tt.images) {
				t.Errorf("Images:\n got %q\nwant %q", got, tt.images)
			}
			if s.Platforms != nil || s.Mirrors != nil {
				t.Errorf("a plain list sets no platforms or mirrors: %v %v", s.Platforms, s.Mirrors)
			}
		})
	}
}

// TestParseErrors checks each error: its file:line:col and its message.
// want holds one prefix per error line, in order.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // default images.yaml
		in   string
		want []string
	}{
		// Unknown keys.
		{"unknown top-level key", "", "platfroms: [linux/amd64]\nimages: [debian]\n",
			[]string{`images.yaml:1:1: unknown key "platfroms" at top level (known: platforms, mirrors, images); did you mean "platforms"?`}},
		{"unknown image key", "", "images:\n  - debian\n  - alpine\n  - busybox\n  - nginx\n  - redis\n  - name: debian:12\n    platfrom: [linux/amd64]\n",
			[]string{`images.yaml:8:5: unknown key "platfrom" in image entry (known: name, tags, platforms); did you mean "platforms"?`}},
		{"swapped letters in a key", "", "images:\n  - nmae: 127.0.0.1:5000/app:1\n",
			[]string{`images.yaml:2:5: unknown key "nmae" in image entry (known: name, tags, platforms); did you mean "name"?`}},
		{"unknown architecture", "", "images:\n  - name: app:1\n    platforms: [linux/amd46]\n",
			[]string{`images.yaml:3:17: bad platform "linux/amd46": unknown architecture "amd46"; did you mean "amd64"?`}},
		{"unknown operating system", "", "platforms: [lnux/arm64]\nimages: [app:1]\n",
			[]string{`images.yaml:1:13: bad platform "lnux/arm64": unknown operating system "lnux"; did you mean "linux"?`}},
		{"far from any architecture", "", "platforms: [linux/vax]\nimages: [app:1]\n",
			[]string{`images.yaml:1:13: bad platform "linux/vax": unknown architecture "vax" (known: amd64,`}},
		{"space after the colon", "", "images:\n  - debian: bookworm\n",
			[]string{`images.yaml:2:5: unknown key "debian" in image entry (known: name, tags, platforms); did you mean "debian:bookworm" (no space after ':')?`}},
		{"unknown key in tags", "", "images:\n  - name: alpine\n    tags: {regexp: '^3'}\n",
			[]string{`images.yaml:3:12: unknown key "regexp" in tags (known: regex); did you mean "regex"?`}},
		{"merge key", "", "base: &b {platforms: [linux/amd64]}\nimages:\n  - name: debian\n    <<: *b\n",
			[]string{`images.yaml:1:1: unknown key "base" at top level`, `images.yaml:4:5: merge keys (<<) are not supported in image entry`}},
		{"duplicate key", "", "images: [debian]\nimages: [alpine]\n",
			[]string{`images.yaml:2:1: duplicate key "images" at top level (first at images.yaml:1:1)`}},
		{"duplicate key in entry", "", "images:\n  - name: debian\n    name: alpine\n",
			[]string{`images.yaml:3:5: duplicate key "name" in image entry (first at images.yaml:2:5)`}},
		{"non-scalar key", "", "images:\n  - {[a]: b, name: debian}\n",
			[]string{`images.yaml:2:6: keys must be plain words, got a list in image entry`}},

		// Bad references.
		{"upper case", "", "images:\n  - Debian:bookworm\n",
			[]string{`images.yaml:2:5: bad reference "Debian:bookworm": repository name must be lower case ("Debian")`}},
		{"url scheme", "", "images:\n  - name: https://ghcr.io/x/y:1\n",
			[]string{`images.yaml:2:11: bad reference "https://ghcr.io/x/y:1": must not contain a URL scheme (https://)`}},
		{"short digest", "", "images:\n  - debian@sha256:abc\n",
			[]string{`images.yaml:2:5: bad reference "debian@sha256:abc": digest "sha256:abc" has 3 hex digits; sha256 needs 64`}},
		{"bad tag", "", "images:\n  - 'debian:a+b'\n",
			[]string{`images.yaml:2:5: bad reference "debian:a+b": tag "a+b" contains '+'`}},
		{"bad port", "", "images:\n  - name: registry:99999/x\n",
			[]string{`images.yaml:2:11: bad reference "registry:99999/x": registry host "registry:99999": port 99999 is out of range (1-65535)`}},
		{"whitespace", "", "images:\n  - name: \"debian bookworm\"\n",
			[]string{`images.yaml:2:11: bad reference "debian bookworm": contains whitespace`}},

		// Tag and tags.
		{"name with a tag and a tags list", "", "images:\n  - name: registry.k8s.io/pause:3.9\n    tags: [\"3.10\"]\n",
			[]string{`images.yaml:3:5: name "registry.k8s.io/pause:3.9" already has a tag; use either name:tag or a tags: list`}},
		{"name with a digest and a tags list", "", "images:\n  - name: debian@" + dig1 + "\n    tags: [a]\n",
			[]string{`images.yaml:3:5: name "debian@` + dig1 + `" is pinned by digest; drop the digest or the tags: list`}},
		{"bad tag in list", "", "images:\n  - name: debian\n    tags: [ok, -bad, 'a b']\n",
			[]string{`images.yaml:3:16: bad tag: tag "-bad" must not start with '-'`, `images.yaml:3:22: bad tag: tag "a b" contains ' '`}},

		// Duplicates.
		{"duplicate written differently", "", "images:\n  - debian\n  - name: alpine\n  - docker.io/library/debian:latest\n",
			[]string{`images.yaml:4:5: duplicate image "docker.io/library/debian:latest" (first at images.yaml:2:5)`}},
		{"duplicate via tags list", "", "images:\n  - registry.k8s.io/pause:3.9\n  - name: registry.k8s.io/pause\n    tags: [\"3.10\", \"3.9\"]\n",
			[]string{`images.yaml:4:20: duplicate image "registry.k8s.io/pause:3.9" (first at images.yaml:2:5)`}},
		{"duplicate digest", "", "images:\n  - index.docker.io/library/debian@" + dig1 + "\n  - debian@" + dig1 + "\n",
			[]string{`images.yaml:3:5: duplicate image "docker.io/library/debian@` + dig1 + `" (first at images.yaml:2:5)`}},
		{"duplicate tag and tag+digest", "", "images:\n  - debian:12\n  - debian:12@" + dig1 + "\n",
			[]string{`images.yaml:3:5: duplicate image "docker.io/library/debian:12" (first at images.yaml:2:5)`}},
		{"duplicate regex", "", "images:\n  - name: alpine\n    tags: {regex: '^3'}\n  - name: docker.io/alpine\n    tags: {regex: '^3'}\n",
			[]string{`images.yaml:4:5: duplicate image docker.io/library/alpine (tags matching "^3") (first at images.yaml:2:5)`}},
		{"duplicate tag in list", "", "images:\n  - name: alpine\n    tags: [\"3.20\", \"3.20\"]\n",
			[]string{`images.yaml:3:20: duplicate tag "3.20" (first at images.yaml:3:12)`}},
		{"duplicate through an alias", "", "images:\n  - &d debian\n  - *d\n",
			[]string{`images.yaml:3:5: duplicate image "docker.io/library/debian:latest" (first at images.yaml:2:5)`}},

		// Empty lists and values.
		{"empty images list", "", "images: []\n", []string{`images.yaml:1:9: images list is empty`}},
		{"null images", "", "platforms: [linux/amd64]\nimages:\n", []string{`images.yaml:2:1: images list is empty`}},
		{"empty tags", "", "images:\n  - name: alpine\n    tags: []\n", []string{`images.yaml:3:11: tags list is empty`}},
		{"null tags", "", "images:\n  - name: alpine\n    tags:\n", []string{`images.yaml:3:5: tags list is empty`}},
		{"empty platforms", "", "platforms: []\nimages: [debian]\n", []string{`images.yaml:1:12: platforms list is empty`}},
		{"empty image platforms", "", "images:\n  - name: debian\n    platforms: []\n", []string{`images.yaml:3:16: platforms list is empty`}},
		{"empty mirrors", "", "mirrors: {}\nimages: [debian]\n", []string{`images.yaml:1:1: mirrors is empty`}},
		{"empty tags mapping", "", "images:\n  - name: alpine\n    tags: {}\n", []string{`images.yaml:3:11: tags mapping is empty (want {regex: '…'})`}},
		{"null image entry", "", "images:\n  - debian\n  -\n  - ~\n", []string{`images.yaml:3:4: image entry is empty`, `images.yaml:4:5: image entry is empty`}},
		{"null name", "", "images:\n  - name:\n", []string{`images.yaml:2:10: name is empty`}},
		{"entry without name", "", "images:\n  - tags: [a]\n", []string{`images.yaml:2:5: image entry has no name key`}},
		{"missing images", "", "platforms: [linux/amd64]\n", []string{`images.yaml:1:1: missing key "images" (the list of images to bundle)`}},
		{"empty regex", "", "images:\n  - name: alpine\n    tags: {regex: ''}\n", []string{`images.yaml:3:19: tag regex is empty (write '.*' to take every tag)`}},

		// Platforms.
		{"platform without arch", "", "platforms: [linux]\nimages: [debian]\n",
			[]string{`images.yaml:1:13: bad platform "linux": want os/arch[/variant], such as linux/amd64`}},
		{"platform with too many parts", "", "images:\n  - name: debian\n    platforms: [linux/amd64/v8/x]\n",
			[]string{`images.yaml:3:17: bad platform "linux/amd64/v8/x": too many slashes in platform spec: linux/amd64/v8/x`}},
		{"upper-case platform", "", "platforms: [Linux/AMD64]\nimages: [debian]\n",
			[]string{`images.yaml:1:13: bad platform "Linux/AMD64": write it in lower case (linux/amd64)`}},
		{"architecture alias", "", "platforms:\n  - linux/amd64\n  - linux/aarch64\nimages: [debian]\n",
			[]string{`images.yaml:3:5: bad platform "linux/aarch64": registries call this architecture arm64 (linux/arm64)`}},
		{"all mixed with others", "", "platforms: [linux/amd64, all]\nimages: [debian]\n",
			[]string{`images.yaml:1:26: "all" cannot be combined with other platforms`}},
		{"duplicate platform", "", "platforms: [linux/amd64, linux/amd64]\nimages: [debian]\n",
			[]string{`images.yaml:1:26: duplicate platform "linux/amd64" (first at images.yaml:1:13)`}},

		// Regex.
		{"invalid regex", "", "images:\n  - name: alpine\n    tags: {regex: '^3\\.(['}\n",
			[]string{`images.yaml:3:19: invalid tag regex "^3\\.([": error parsing regexp: missing closing ]`}},

		// Wrong YAML types.
		{"platforms mapping", "", "platforms: {linux: amd64}\nimages: [debian]\n",
			[]string{`images.yaml:1:12: platforms must be a list, got a mapping`}},
		{"platform item list", "", "platforms: [[linux/amd64]]\nimages: [debian]\n",
			[]string{`images.yaml:1:13: a platform must be a string, got a list`}},
		{"images mapping", "", "images: {debian: bookworm}\n",
			[]string{`images.yaml:1:9: images must be a list, got a mapping`}},
		{"images scalar", "", "images: debian\n",
			[]string{`images.yaml:1:9: images must be a list, got the value "debian"`}},
		{"image entry list", "", "images:\n  - [debian]\n",
			[]string{`images.yaml:2:5: image entry must be a reference or a mapping with a name key, got a list`}},
		{"name list", "", "images:\n  - name: [debian]\n",
			[]string{`images.yaml:2:11: name must be a string, got a list`}},
		{"tags mapping without regex", "", "images:\n  - name: alpine\n    tags: {regex: '^3', x: 1}\n",
			[]string{`images.yaml:3:25: unknown key "x" in tags (known: regex)`}},
		{"tag item mapping", "", "images:\n  - name: alpine\n    tags: [{a: b}]\n",
			[]string{`images.yaml:3:12: a tag must be a string, got a mapping`}},
		{"regex list", "", "images:\n  - name: alpine\n    tags: {regex: [a]}\n",
			[]string{`images.yaml:3:19: tag regex must be a string, got a list`}},
		{"mirrors list", "", "mirrors: [docker.io]\nimages: [debian]\n",
			[]string{`images.yaml:1:10: mirrors must be a mapping of registry host to mirror (docker.io: registry.local:5000/dockerhub), got a list`}},
		{"top-level list", "", "- debian\n- alpine\n",
			[]string{`images.yaml:1:1: top level must be a mapping with platforms, mirrors and images keys, got a list; put the list under an images: key`}},
		{"top-level scalar", "", "debian:bookworm\nalpine\n",
			[]string{`images.yaml:1:1: top level must be a mapping with platforms, mirrors and images keys, got the value "debian:bookworm alpine"; a plain list of references needs a file name ending in .txt`}},

		// Mirrors.
		{"mirror with scheme", "", "mirrors:\n  docker.io: https://registry.local/hub\nimages: [debian]\n",
			[]string{`images.yaml:2:14: mirror "https://registry.local/hub" must not contain a URL scheme; write host[:port][/path]`}},
		{"mirror without host", "", "mirrors:\n  docker.io: dockerhub/cache\nimages: [debian]\n",
			[]string{`images.yaml:2:14: mirror "dockerhub/cache" must start with a registry host (a name with a dot or a port, or localhost)`}},
		{"mirror with bad path", "", "mirrors:\n  docker.io: mirror.local/Hub\nimages: [debian]\n",
			[]string{`images.yaml:2:14: bad mirror "mirror.local/Hub": repository name must be lower case ("Hub")`}},
		{"mirrored registry with a path", "", "mirrors:\n  docker.io/library: mirror.local\nimages: [debian]\n",
			[]string{`images.yaml:2:3: mirrored registry "docker.io/library" must be a host name, without a path`}},
		{"duplicate mirror", "", "mirrors:\n  docker.io: a.local\n  index.docker.io: b.local\nimages: [debian]\n",
			[]string{`images.yaml:3:3: duplicate mirror for docker.io (first at images.yaml:2:3)`}},
		{"null mirror", "", "mirrors:\n  docker.io:\nimages: [debian]\n",
			[]string{`images.yaml:2:13: a mirror is empty`}},

		// Empty files and syntax errors.
		{"empty file", "", "", []string{`images.yaml: file is empty (want an images: list)`}},
		{"only comments", "", "# nothing yet\n\n", []string{`images.yaml: file is empty`}},
		{"only a document marker", "", "---\n", []string{`images.yaml: file is empty`}},
		{"tab indentation", "", "images:\n\t- debian\n",
			[]string{`images.yaml:2:1: tab character in indentation; YAML indents with spaces (yaml: found character that cannot start any token)`}},
		{"tab inside an entry", "", "images:\n  - name: debian\n  \tplatforms: [linux/amd64]\n",
			[]string{`images.yaml:3:3: tab character in indentation; YAML indents with spaces`}},
		{"unclosed flow list", "", "platforms: [linux/amd64\nimages: [debian]\n",
			[]string{`images.yaml:2: invalid YAML: did not find expected ',' or ']'`}},
		{"bad indentation", "", "images:\n  - debian\n alpine: x\n",
			[]string{`images.yaml:3: invalid YAML: did not find expected key`}},
		{"unknown anchor", "", "images:\n  - &xy a\n  - *xy\n  - *x\n", []string{`images.yaml:4:5: invalid YAML: unknown anchor 'x' referenced`}},
		{"scanner error on line 1", "", "x: a: b\n", []string{`images.yaml:1: invalid YAML: mapping values are not allowed in this context`}},
		{"parser error at the end", "", "[a\n", []string{`images.yaml:1: invalid YAML: did not find expected ',' or ']'`}},
		{"parser error on line 1", "", "[a", []string{`images.yaml:1: invalid YAML: did not find expected ',' or ']'`}},
		{"parser error", "", "a: 1\nimages:\n  - name: x\n    tags: [a\n  - y\n", []string{`images.yaml:4: invalid YAML: did not find expected ',' or ']'`}},
		{"block sequence error", "", "images:\n  - name: x\n    tags: a\n   bad: 1\n", []string{`images.yaml:2: invalid YAML: did not find expected '-' indicator`}},
		{"undefined tag handle", "", "a: 1\nb: !x!y 3\n", []string{`images.yaml:2: invalid YAML: found undefined tag handle`}},
		{"scanner error", "", "a: 1\nb: 2\nc: 'x\n", []string{`images.yaml:3: invalid YAML: found unexpected end of stream`}},
		{"control character", "", "images:\n  - deb\x01ian\n", []string{`images.yaml:2:8: invalid YAML: control characters are not allowed`}},
		{"invalid UTF-8", "", "images:\n  - a\n  - deb\xffian\n", []string{`images.yaml:3:8: invalid YAML: invalid`}},
		{"tab after a list", "", "images:\n  - a\n\t- b\n", []string{`images.yaml:3:1: tab character in indentation; YAML indents with spaces (yaml: found a tab character that violates indentation)`}},
		{"two documents", "", "images: [debian]\n---\nimages: [alpine]\n",
			[]string{`images.yaml:3:1: a second YAML document; a manifest file holds one (remove the '---')`}},
		{"nul bytes", "", "images: [debian]\x00", []string{`images.yaml: not a text file (it contains NUL bytes)`}},
		{"too large", "", strings.Repeat("#", MaxFileSize+1), []string{`images.yaml: manifest file is larger than 4194304 bytes`}},

		// Plain lists.
		{"plain list errors", "images.txt", "debian\n  Debian:bookworm # upper case\nhttps://ghcr.io/x/y:1\n\nghcr.io//x\ndocker.io/library/debian\n",
			[]string{
				`images.txt:2:3: bad reference "Debian:bookworm": repository name must be lower case ("Debian")`,
				`images.txt:3:1: bad reference "https://ghcr.io/x/y:1": must not contain a URL scheme (https://)`,
				`images.txt:5:1: bad reference "ghcr.io//x": empty path component`,
				`images.txt:6:1: duplicate image "docker.io/library/debian:latest" (first at images.txt:1:1)`,
			}},
		{"plain list with two references on a line", "images.txt", "debian alpine\n",
			[]string{`images.txt:1:1: bad reference "debian alpine": contains whitespace`}},
		{"plain list that is YAML", "images.txt", "images:\n  - debian\n",
			[]string{`images.txt:1:1: bad reference "images:": missing tag after ':' (this looks like YAML; name the file .yaml)`,
				`images.txt:2:3: bad reference "- debian": contains whitespace (this looks like YAML; name the file .yaml)`}},
		{"empty plain list", "images.txt", "# nothing\n\n", []string{`images.txt: file lists no images (want one reference per line)`}},
		{"invalid UTF-8", "images.txt", "debian\xff\n", []string{`images.txt:1:1: line is not valid UTF-8`}},

		// Many problems at once, in file order.
		{"every problem reported", "", "images:\n  - Debian\n  - name: alpine\n    tag: x\n  - debian@sha256:1\nextra: 1\nplatforms: [linux, linux/amd64, linux/amd64]\n",
			[]string{
				`images.yaml:2:5: bad reference "Debian"`,
				`images.yaml:4:5: unknown key "tag" in image entry (known: name, tags, platforms)`,
				`images.yaml:5:5: bad reference "debian@sha256:1"`,
				`images.yaml:6:1: unknown key "extra" at top level`,
				`images.yaml:7:13: bad platform "linux"`,
				`images.yaml:7:33: duplicate platform "linux/amd64" (first at images.yaml:7:20)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = "images.yaml"
			}
			s, err := Parse(file, []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse = %q, want an error", summaries(s))
			}
			if s != nil {
				t.Errorf("Parse returned a Spec with an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error %d:\n got %s\nwant %s…", i, lines[i], want)
				}
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Pos.File != file || pe.Error() != lines[0] {
				t.Errorf("errors.As(*Error) = %v; want the first error, naming %s", pe, file)
			}
		})
	}
}

func TestParseManyErrorsCapped(t *testing.T) {
	var b strings.Builder
	for i := 0; i < maxErrors+10; i++ {
		fmt.Fprintf(&b, "BAD%d\n", i)
	}
	_, err := Parse("images.txt", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("got %d lines, want %d", len(lines), maxErrors+1)
	}
	if want := "images.txt: 10 more problems not shown"; lines[maxErrors] != want {
		t.Errorf("last line = %q, want %q", lines[maxErrors], want)
	}
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		file, in string
		want     Format
	}{
		{"images.yaml", "debian\n", FormatYAML},
		{"IMAGES.YML", "debian\n", FormatYAML},
		{"images.txt", "images:\n  - debian\n", FormatPlain},
		{"images.list", "images: [debian]\n", FormatPlain},
		{"images", "images:\n  - debian\n", FormatYAML},
		{"images", "# c\n{images: [debian]}\n", FormatYAML},
		{"images", "---\n", FormatYAML},
		{"images", "- debian\n", FormatYAML},
		{"images", "platforms: [all]\n", FormatYAML},
		{"images", "debian:bookworm\nlocalhost:5000/app:1 # images: here\n", FormatPlain},
		{"images", "", FormatPlain},
		{"-", "debian\n", FormatPlain},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.in, func(t *testing.T) {
			if got := DetectFormat(tt.file, []byte(tt.in)); got != tt.want {
				t.Errorf("DetectFormat = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Run("by extension and by sniffing", func(t *testing.T) {
		dir := t.TempDir()
		for file, in := range map[string]string{
			"images.yaml": "images: [debian]\n",
			"images.txt":  "debian\n",
			"images":      "images:\n  - debian\n",
			"list":        "debian # comment\n",
		} {
			path := filepath.Join(dir, file)
			if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%s): %v", file, err)
			}
			if got := summaries(s); len(got) != 1 || !strings.HasSuffix(got[0], "docker.io/library/debian tags=latest") || s.File != path {
				t.Errorf("Load(%s) = %q, %q", file, s.File, got)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		if err == nil || !strings.HasPrefix(err.Error(), "reading manifest file: open ") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load = %v", err)
		}
	})
	t.Run("a bundle passed by mistake", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "images.tar")
		if err := os.WriteFile(path, make([]byte, MaxFileSize+100), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), "manifest file is larger than") {
			t.Errorf("Load = %v", err)
		}
	})
	t.Run("testdata", func(t *testing.T) {
		yamls, _ := filepath.Glob("testdata/*.yaml")
		txts, _ := filepath.Glob("testdata/*.txt")
		for _, f := range append(yamls, txts...) {
			s, err := Load(f)
			valid := strings.HasPrefix(filepath.Base(f), "valid")
			if valid != (err == nil) {
				t.Errorf("Load(%s) = %v, %v", f, s, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), f) {
				t.Errorf("Load(%s): error does not name the file: %v", f, err)
			}
		}
	})
}

func TestSpecHelpers(t *testing.T) {
	s, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"6:5 docker.io/library/debian tags=bookworm",
		"7:5 ghcr.io/acme/api tags=1.4.2 platforms=linux/amd64",
		"9:5 quay.io/prometheus/prometheus digest=sha256:0123456",
		"10:5 registry.k8s.io/pause tags=3.9,3.10",
		`12:5 docker.io/library/alpine regex=^3\.2[0-9]$`,
		"14:5 localhost:5000/team/app tags=1.0 digest=sha256:fedcba9 platforms=all",
	}
	if got := summaries(s); !slices.Equal(got, want) {
		t.Fatalf("Images:\n got %q\nwant %q", got, want)
	}

	t.Run("PlatformsFor", func(t *testing.T) {
		for i, want := range [][]string{{"linux/amd64", "linux/arm64"}, {"linux/amd64"}, {"linux/amd64", "linux/arm64"}, {"linux/amd64", "linux/arm64"}, {"linux/amd64", "linux/arm64"}, {"all"}} {
			if got := s.PlatformsFor(s.Images[i]); !slices.Equal(got, want) {
				t.Errorf("PlatformsFor(%s) = %q, want %q", s.Images[i].Pos, got, want)
			}
		}
		if got := (&Spec{}).PlatformsFor(Entry{}); got != nil {
			t.Errorf("PlatformsFor with nothing set = %q, want nil", got)
		}
	})

	t.Run("MirrorFor", func(t *testing.T) {
		s := &Spec{Mirrors: []Mirror{{"docker.io", "registry.local:5000/dockerhub"}, {"ghcr.io", "mirror.local"}}}
		tests := []struct{ in, want string }{
			{"debian", "registry.local:5000/dockerhub/library/debian"},
			{"docker.io/acme/app", "registry.local:5000/dockerhub/acme/app"},
			{"ghcr.io/x/y", "mirror.local/x/y"},
			{"quay.io/a/b", ""},
			{"localhost:5000/a", ""},
		}
		for _, tt := range tests {
			r, err := ParseReference(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.MirrorFor(r.Context())
			if ok != (tt.want != "") {
				t.Errorf("MirrorFor(%s) ok = %v", tt.in, ok)
			}
			if tt.want == "" {
				if got != r.Context() {
					t.Errorf("MirrorFor(%s) = %s, want it unchanged", tt.in, FullRepo(got))
				}
			} else if FullRepo(got) != tt.want {
				t.Errorf("MirrorFor(%s) = %s, want %s", tt.in, FullRepo(got), tt.want)
			}
		}
	})

	t.Run("Refs", func(t *testing.T) {
		var got []string
		for _, e := range s.Images {
			for _, r := range e.Refs() {
				got = append(got, FullName(r))
			}
		}
		want := []string{
			"docker.io/library/debian:bookworm",
			"ghcr.io/acme/api:1.4.2",
			"quay.io/prometheus/prometheus@" + dig1,
			"registry.k8s.io/pause:3.9",
			"registry.k8s.io/pause:3.10",
			"localhost:5000/team/app:1.0",
		}
		if !slices.Equal(got, want) {
			t.Errorf("Refs:\n got %q\nwant %q", got, want)
		}
	})
}

func TestMirrorNameTooLong(t *testing.T) {
	long := strings.Repeat("a", 200)
	in := "mirrors:\n  ghcr.io: mirror.local/" + long + "\nimages:\n  - ghcr.io/" + long + "\n"
	_, err := Parse("images.yaml", []byte(in))
	want := "images.yaml:4:5: repository ghcr.io/" + long + " cannot be fetched through its mirror"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Parse = %v, want %s…", err, want)
	}
}

func TestEntryRepositoryComparable(t *testing.T) {
	s, err := Parse("images.yaml", []byte("images:\n  - debian:1\n  - docker.io/library/debian:2\n  - index.docker.io/debian:3\n"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := name.NewRepository("docker.io/library/debian")
	for _, e := range s.Images {
		if e.Repository != want {
			t.Errorf("%s: Repository = %#v, want %#v", e.Pos, e.Repository, want)
		}
	}
}

func TestPosString(t *testing.T) {
	for _, tt := range []struct {
		p    Pos
		want string
	}{
		{Pos{"images.yaml", 12, 5}, "images.yaml:12:5"},
		{Pos{"images.yaml", 12, 0}, "images.yaml:12"},
		{Pos{"images.yaml", 0, 0}, "images.yaml"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}
