package manifests

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

// DockerHub is the name bundle shows for Docker Hub. go-containerregistry
// calls it name.DefaultRegistry ("index.docker.io"); docker, containerd and
// the bundle's own index say "docker.io".
const DockerHub = "docker.io"

const (
	maxNameLen = 255 // docker's limit on registry/path
	maxTagLen  = 128
)

// ErrBadReference is wrapped by every error ParseReference returns, so
// callers can tell a malformed reference from other failures.
var ErrBadReference = errors.New("bad reference")

// refError says why a reference is malformed.
type refError struct {
	ref    string
	reason string
}

func (e *refError) Error() string {
	return fmt.Sprintf("bad reference %q: %s", e.ref, e.reason)
}

func (e *refError) Unwrap() error { return ErrBadReference }

// refParts is a reference as written: a repository with an optional tag
// and an optional digest. ParseReference and the manifest parsers share it.
type refParts struct {
	repo   name.Repository // normalized (see normalizeRepo)
	tag    string          // "" when none was written
	digest string          // "" when none was written
}

// ParseReference parses an image reference and normalizes it the way docker
// does: "debian" is docker.io/library/debian:latest, "acme/app" is
// docker.io/acme/app:latest, and a first path component with a dot or a
// port, or "localhost", names the registry.
//
// A reference with a digest returns a name.Digest. A reference with both a
// tag and a digest ("debian:bookworm@sha256:…") also returns a name.Digest:
// the digest alone says what to fetch, and go-containerregistry's types
// cannot carry both (the manifest parser keeps the tag in Entry.Tags).
//
// Errors wrap ErrBadReference and say what is wrong.
func ParseReference(s string) (name.Reference, error) {
	p, err := parseRef(s)
	if err != nil {
		return nil, err
	}
	if p.digest != "" {
		return p.repo.Digest(p.digest), nil
	}
	tag := p.tag
	if tag == "" {
		tag = name.DefaultTag
	}
	return p.repo.Tag(tag), nil
}

// FullName returns the full normalized reference, as bundle.json, index.json
// annotations and lockfiles record it: "docker.io/library/debian:bookworm",
// "ghcr.io/acme/api@sha256:…". Docker Hub is shown as docker.io.
func FullName(r name.Reference) string {
	if r == nil {
		return ""
	}
	return FullRepo(r.Context()) + identifierSep(r.Identifier()) + r.Identifier()
}

// FullRepo returns the full normalized repository name:
// "docker.io/library/debian", "registry.example.com:5000/team/app".
func FullRepo(r name.Repository) string {
	reg := r.RegistryStr()
	if reg == "" && r.RepositoryStr() == "" {
		return ""
	}
	if reg == name.DefaultRegistry {
		reg = DockerHub
	}
	return reg + "/" + r.RepositoryStr()
}

// FamiliarRepo returns the repository as docker prints it: Docker Hub's
// "docker.io/" and "library/" prefixes dropped ("debian", "acme/app"), any
// other registry kept ("ghcr.io/x/y", "localhost:5000/app"). A Docker Hub
// repository whose first component would read as a registry host keeps
// its docker.io/ prefix ("docker.io/localhost/app").
func FamiliarRepo(r name.Repository) string {
	if r.RegistryStr() != name.DefaultRegistry {
		return FullRepo(r)
	}
	path := r.RepositoryStr()
	if rest, ok := strings.CutPrefix(path, "library/"); ok && !strings.Contains(rest, "/") {
		return rest
	}
	// docker.io/localhost/app must not print as localhost/app, which
	// names another registry.
	if first, _, _ := strings.Cut(path, "/"); isHostLike(first) {
		return FullRepo(r)
	}
	return path
}

// FamiliarName returns the reference as docker prints it in RepoTags:
// "debian:bookworm", "acme/app:1", "registry.example.com:5000/team/app:1.0",
// "ghcr.io/x/y:1"; digest references as "debian@sha256:…".
func FamiliarName(r name.Reference) string {
	if r == nil {
		return ""
	}
	return FamiliarRepo(r.Context()) + identifierSep(r.Identifier()) + r.Identifier()
}

// identifierSep is "@" before a digest and ":" before a tag (tags never
// contain a colon; digests always do).
func identifierSep(id string) string {
	if strings.Contains(id, ":") {
		return "@"
	}
	return ":"
}

// parseRef splits and checks a reference with docker's grammar, saying what
// is wrong when it does not fit, and builds go-containerregistry names.
func parseRef(s string) (refParts, error) {
	bad := func(format string, a ...any) (refParts, error) {
		return refParts{}, &refError{ref: s, reason: fmt.Sprintf(format, a...)}
	}
	if s == "" {
		return bad("reference is empty")
	}
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			return bad("contains whitespace")
		case unicode.IsControl(r):
			return bad("contains a control character")
		case r > unicode.MaxASCII:
			return bad("contains the non-ASCII character %q", r)
		}
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return bad("must not contain a URL scheme (%s://); write host/path:tag", s[:i])
	}

	rest, dig, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if strings.Contains(dig, "@") {
			return bad("more than one '@'")
		}
		if err := checkDigest(dig); err != nil {
			return bad("%s", err)
		}
	}
	var tag string
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		rest, tag = rest[:i], rest[i+1:]
		if tag == "" {
			return bad("missing tag after ':'")
		}
		if err := checkTag(tag); err != nil {
			return bad("%s", err)
		}
	}
	if rest == "" {
		return bad("missing repository name")
	}
	if len(rest) > maxNameLen {
		return bad("name is %d characters long; the limit is %d", len(rest), maxNameLen)
	}

	host, path := "", rest
	if first, after, ok := strings.Cut(rest, "/"); ok && isHostLike(first) {
		host, path = first, after
		if err := checkHost(host); err != nil {
			return bad("%s", err)
		}
	}
	if err := checkPath(path); err != nil {
		return bad("%s", err)
	}

	repo, err := name.NewRepository(rest)
	if err != nil {
		// Not expected after the checks above; keep go-containerregistry's reason.
		return bad("%s", err)
	}
	repo, err = normalizeRepo(repo)
	if err != nil {
		return bad("%s", err)
	}
	// Docker applies its limit to the normalized name.
	if full := FullRepo(repo); len(full) > maxNameLen {
		return bad("name is %d characters long as %s; the limit is %d", len(full), full, maxNameLen)
	}
	return refParts{repo: repo, tag: tag, digest: dig}, nil
}

// normalizeRepo rebuilds a repository from its full name, so that every
// spelling of one repository ("debian", "docker.io/library/debian",
// "index.docker.io/debian") gives equal name.Repository values.
func normalizeRepo(r name.Repository) (name.Repository, error) {
	return name.NewRepository(r.RegistryStr() + "/" + r.RepositoryStr())
}

// isHostLike reports whether the first path component of a name names a
// registry: it contains a dot or a port, or is "localhost" (docker's rule,
// which go-containerregistry follows).
func isHostLike(s string) bool {
	return s == "localhost" || strings.ContainsAny(s, ".:")
}

// checkDigest accepts "sha256:" and 64 lower-case hex digits: the only
// digests a bundle can hold (its blobs live under blobs/sha256/).
func checkDigest(d string) error {
	algo, hexPart, ok := strings.Cut(d, ":")
	switch {
	case d == "":
		return errors.New("missing digest after '@'")
	case !ok:
		return fmt.Errorf("digest %q must be sha256:<64 hex digits>", d)
	case algo != "sha256":
		return fmt.Errorf("digest algorithm %q is not supported (only sha256)", algo)
	case len(hexPart) != 64:
		return fmt.Errorf("digest %q has %d hex digits; sha256 needs 64", d, len(hexPart))
	}
	for _, c := range hexPart {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("digest %q contains %q; use lower-case hex digits", d, c)
		}
	}
	return nil
}

// checkTag applies docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func checkTag(t string) error {
	if t == "" {
		return errors.New("tag is empty")
	}
	if len(t) > maxTagLen {
		return fmt.Errorf("tag is %d characters long; the limit is %d", len(t), maxTagLen)
	}
	for i, c := range t {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
		if i > 0 {
			ok = ok || c == '.' || c == '-'
		}
		if !ok {
			if i == 0 && (c == '.' || c == '-') {
				return fmt.Errorf("tag %q must not start with %q", t, c)
			}
			return fmt.Errorf("tag %q contains %q (allowed: letters, digits, '_', '.', '-')", t, c)
		}
	}
	return nil
}

// checkHost accepts host[:port] with a DNS name, an IPv4 address or a
// bracketed IPv6 address.
func checkHost(h string) error {
	hostname, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return fmt.Errorf("registry host %q has no closing ']'", h)
		}
		hostname, port = h[1:end], h[end+1:]
		if ip := net.ParseIP(hostname); ip == nil || !strings.Contains(hostname, ":") {
			return fmt.Errorf("registry host %q: %q is not an IPv6 address", h, hostname)
		}
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return fmt.Errorf("registry host %q: unexpected %q after ']'", h, port)
			}
			port = p
			if err := checkPort(h, port); err != nil {
				return err
			}
		}
		return nil
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		hostname, port = h[:i], h[i+1:]
		if err := checkPort(h, port); err != nil {
			return err
		}
	}
	if hostname == "" {
		return fmt.Errorf("registry host %q has no host name", h)
	}
	if len(hostname) > 253 {
		return fmt.Errorf("registry host name is %d characters long; the limit is 253", len(hostname))
	}
	for _, label := range strings.Split(hostname, ".") {
		if label == "" {
			return fmt.Errorf("registry host %q has an empty label (\"..\" or a leading or trailing dot)", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("registry host %q: label %q must not start or end with '-'", h, label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("registry host %q contains %q", h, c)
			}
		}
	}
	return nil
}

func checkPort(h, port string) error {
	if port == "" {
		return fmt.Errorf("registry host %q: missing port after ':'", h)
	}
	if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("registry host %q: port %q is not a number", h, port)
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		return fmt.Errorf("registry host %q: port %s is out of range (1-65535)", h, port)
	}
	return nil
}

// checkPath applies docker's repository path grammar: components of
// lower-case letters and digits, joined by '.', '_', '__' or runs of '-',
// separated by '/'.
func checkPath(path string) error {
	if path == "" {
		return errors.New("missing repository path after the registry host")
	}
	for _, comp := range strings.Split(path, "/") {
		if err := checkComponent(comp); err != nil {
			return err
		}
	}
	return nil
}

func checkComponent(c string) error {
	if c == "" {
		return errors.New("empty path component (a leading, trailing or doubled '/')")
	}
	isAlnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case isAlnum(b):
		case b >= 'A' && b <= 'Z':
			return fmt.Errorf("repository name must be lower case (%q)", c)
		case b == '.' || b == '_' || b == '-':
			if i == 0 || i == len(c)-1 {
				return fmt.Errorf("path component %q must start and end with a letter or digit", c)
			}
			// A separator run: ".", "_", "__" or any number of "-".
			j := i
			for j < len(c) && (c[j] == '.' || c[j] == '_' || c[j] == '-') {
				j++
			}
			if j == len(c) {
				return fmt.Errorf("path component %q must start and end with a letter or digit", c)
			}
			sep := c[i:j]
			if !(sep == "." || sep == "_" || sep == "__" || strings.Trim(sep, "-") == "") {
				return fmt.Errorf("path component %q has the separator %q (allowed: '.', '_', '__', '-')", c, sep)
			}
			i = j - 1
		default:
			return fmt.Errorf("path component %q contains %q", c, rune(b))
		}
	}
	return nil
}
