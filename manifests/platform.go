package manifests

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AllPlatforms, alone in a platforms list, keeps every platform of a
// multi-arch image.
const AllPlatforms = "all"

// IsAllPlatforms reports whether a platforms list is AllPlatforms alone:
// keep every platform.
func IsAllPlatforms(platforms []string) bool {
	return len(platforms) == 1 && platforms[0] == AllPlatforms
}

// MatchPlatform reports whether a manifest of platform have is one that a
// request for platform want selects: have satisfies want
// (v1.Platform.Satisfies). A field want leaves empty matches anything, so
// linux/arm64 selects linux/arm64/v8 (but linux/arm64/v8 does not select
// linux/arm64), and every feature want names must be among have's. It is
// the one rule by which create, load and the docker manifest choice select
// platforms, and by which verify checks an index against bundle.json.
func MatchPlatform(want, have v1.Platform) bool {
	return have.Satisfies(want)
}

// archHints maps names people write for an architecture to the name
// registries use.
var archHints = map[string]string{
	"x86_64":  "amd64",
	"x86-64":  "amd64",
	"x64":     "amd64",
	"aarch64": "arm64",
	"armhf":   "arm/v7",
	"armv7":   "arm/v7",
	"armv7l":  "arm/v7",
	"armel":   "arm/v6",
	"armv6":   "arm/v6",
	"i386":    "386",
	"i686":    "386",
	"x86":     "386",
}

// knownOS and knownArch are the operating systems and architectures
// registries name platforms by (Go's GOOS and GOARCH values, which the OCI
// image spec uses).
var (
	knownOS   = []string{"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "dragonfly", "solaris", "illumos", "aix", "android", "ios", "plan9", "js", "wasip1", "zos"}
	knownArch = []string{"amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips", "mipsle", "mips64", "mips64le", "loong64", "wasm", "sparc64"}
)

// CheckTypedPlatform is CheckPlatform for a platform a person typed (in
// images.yaml or a --platform flag): it must also name a known operating
// system and architecture, so that linux/amd46 is an error at parse time
// (with the nearest known name) rather than an image that matches nothing.
// CheckPlatform alone is for platforms read from registries and lockfiles,
// which may name others.
func CheckTypedPlatform(s string) error {
	if err := CheckPlatform(s); err != nil {
		return err
	}
	p, _ := v1.ParsePlatform(s)
	for _, k := range []struct {
		what, got string
		known     []string
	}{{"operating system", p.OS, knownOS}, {"architecture", p.Architecture, knownArch}} {
		if slices.Contains(k.known, k.got) {
			continue
		}
		if near, ok := Nearest(k.got, k.known); ok {
			return fmt.Errorf("bad platform %q: unknown %s %q; did you mean %q?", s, k.what, k.got, near)
		}
		return fmt.Errorf("bad platform %q: unknown %s %q (known: %s)", s, k.what, k.got, strings.Join(k.known, ", "))
	}
	return nil
}

// CheckPlatform reports whether s is a platform bundle can select:
// os/arch[/variant][:osversion] as v1.ParsePlatform reads it, with os and
// arch present, written in its canonical form, in lower case.
func CheckPlatform(s string) error {
	if s == "" {
		return fmt.Errorf("platform is empty")
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return fmt.Errorf("bad platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return fmt.Errorf("bad platform %q: want os/arch[/variant], such as linux/amd64", s)
	}
	if p.String() != s {
		return fmt.Errorf("bad platform %q: want os/arch[/variant][:osversion] with no empty parts or spaces, such as linux/arm64/v8", s)
	}
	for _, part := range []string{p.OS, p.Architecture, p.Variant} {
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				if c >= 'A' && c <= 'Z' {
					return fmt.Errorf("bad platform %q: write it in lower case (%s)", s, strings.ToLower(s))
				}
				return fmt.Errorf("bad platform %q: %q is not allowed", s, c)
			}
		}
	}
	if want, ok := archHints[p.Architecture]; ok {
		return fmt.Errorf("bad platform %q: registries call this architecture %s (%s/%s)", s, want, p.OS, want)
	}
	for _, c := range p.OSVersion {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("bad platform %q: os version contains %q", s, c)
		}
	}
	return nil
}
