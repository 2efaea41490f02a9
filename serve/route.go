package serve

import (
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Limits on what a request may name. A request over them is refused
// before anything is looked up.
const (
	// MaxNameLength bounds a repository name: the clients' limit on
	// host/name (docker, containerd), so no client can send a longer one
	// that is meant.
	MaxNameLength = 255
	// MaxTagLength is the tag grammar's own limit.
	MaxTagLength = 128
	// MaxPathLength bounds the whole request path.
	MaxPathLength = 1024
	// MaxPage is the most tags or repositories one listing returns,
	// whatever n asks for; a Link header points to the rest.
	MaxPage = 1000
	// MaxHeaderBytes bounds the request headers (http.Server adds its own
	// slack of 4 KiB).
	MaxHeaderBytes = 16 << 10
)

// Kind is what a request path addresses.
type Kind int

// Kinds of routes, after the distribution spec's endpoints.
const (
	KindBase      Kind = iota + 1 // /v2/
	KindCatalog                   // /v2/_catalog
	KindTags                      // /v2/<name>/tags/list
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindUpload                    // /v2/<name>/blobs/uploads/[<id>]: push, never served
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

// Route is a request path, parsed and checked.
type Route struct {
	Kind Kind
	// Name is the repository, for every kind but KindBase and KindCatalog.
	Name string
	// Tag is the tag of a KindManifest route by tag.
	Tag string
	// Digest is the digest of a KindBlob or KindReferrers route, or of a
	// KindManifest route by digest. Supported is false for a digest of
	// another algorithm than sha256, well formed but never held here.
	Digest    v1.Hash
	Supported bool
}

// ParseRoute parses the path of a request (its escaped form: a name, tag
// or digest never needs escaping, so a path with an escape is refused
// rather than decoded). A path that is no endpoint, or whose name, tag or
// digest breaks the spec's grammar, is an *Error (404 or 400).
func ParseRoute(path string) (Route, *Error) {
	if len(path) > MaxPathLength {
		return Route{}, errorf(http.StatusNotFound, CodeNameInvalid, "the path is longer than %d bytes", MaxPathLength)
	}
	rest, ok := strings.CutPrefix(path, "/v2")
	if !ok {
		return Route{}, notFound()
	}
	if rest == "" || rest == "/" {
		return Route{Kind: KindBase}, nil
	}
	rest, ok = strings.CutPrefix(rest, "/")
	if !ok {
		return Route{}, notFound()
	}
	if rest == "_catalog" {
		return Route{Kind: KindCatalog}, nil
	}
	if strings.ContainsAny(rest, "%?#\\") {
		return Route{}, errorf(http.StatusNotFound, CodeNameInvalid, "the path holds a character no name, tag or digest has")
	}
	// Push endpoints: refused whatever follows (an upload id).
	if i := strings.LastIndex(rest, "/blobs/uploads"); i > 0 {
		tail := rest[i+len("/blobs/uploads"):]
		if tail == "" || tail == "/" || (tail[0] == '/' && !strings.Contains(tail[1:], "/")) {
			name := rest[:i]
			if err := checkName(name); err != nil {
				return Route{}, err
			}
			return Route{Kind: KindUpload, Name: name}, nil
		}
	}
	parts := strings.Split(rest, "/")
	n := len(parts)
	if n < 3 {
		return Route{}, notFound()
	}
	name := strings.Join(parts[:n-2], "/")
	action, arg := parts[n-2], parts[n-1]
	var r Route
	switch {
	case action == "tags" && arg == "list":
		r = Route{Kind: KindTags}
	case action == "manifests":
		r = Route{Kind: KindManifest}
		if strings.Contains(arg, ":") {
			d, supported, err := parseDigest(arg)
			if err != nil {
				return Route{}, err
			}
			r.Digest, r.Supported = d, supported
		} else {
			if err := checkTag(arg); err != nil {
				return Route{}, err
			}
			r.Tag = arg
		}
	case action == "blobs", action == "referrers":
		r = Route{Kind: KindBlob}
		if action == "referrers" {
			r.Kind = KindReferrers
		}
		d, supported, err := parseDigest(arg)
		if err != nil {
			return Route{}, err
		}
		r.Digest, r.Supported = d, supported
	default:
		return Route{}, notFound()
	}
	if err := checkName(name); err != nil {
		return Route{}, err
	}
	r.Name = name
	return r, nil
}

func notFound() *Error {
	return errorf(http.StatusNotFound, CodeUnsupported, "no such endpoint (this registry serves the pull side of the OCI distribution API)")
}

// checkName applies the spec's grammar to a repository name: path
// components of [a-z0-9]+ joined by ".", "_", "__" or any run of "-",
// separated by "/".
func checkName(name string) *Error {
	if name == "" {
		return errorf(http.StatusNotFound, CodeNameInvalid, "no repository name")
	}
	if len(name) > MaxNameLength {
		return errorf(http.StatusNotFound, CodeNameInvalid, "the repository name is longer than %d characters", MaxNameLength)
	}
	if !ValidName(name) {
		return errorf(http.StatusNotFound, CodeNameInvalid, "invalid repository name %q", name)
	}
	return nil
}

// ValidName reports whether name fits the distribution spec's grammar of
// repository names (its length aside).
func ValidName(name string) bool {
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return false
		}
	}
	return true
}

func validComponent(c string) bool {
	if c == "" || !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); i++ {
		if alnum(c[i]) {
			continue
		}
		// A separator run: ".", "_", "__" or "-"+, between alphanumerics.
		j := i
		for j < len(c) && !alnum(c[j]) {
			j++
		}
		sep := c[i:j]
		switch {
		case sep == "." || sep == "_" || sep == "__":
		case strings.Trim(sep, "-") == "":
		default:
			return false
		}
		i = j - 1
	}
	return true
}

func alnum(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') }

// checkTag applies the tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func checkTag(tag string) *Error {
	if !ValidTag(tag) {
		return errorf(http.StatusNotFound, CodeManifestUnknown, "invalid tag %q", truncate(tag))
	}
	return nil
}

// ValidTag reports whether tag fits the tag grammar.
func ValidTag(tag string) bool {
	if tag == "" || len(tag) > MaxTagLength {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if i > 0 {
			ok = ok || c == '.' || c == '-'
		}
		if !ok {
			return false
		}
	}
	return true
}

// parseDigest parses "algorithm:encoded" by the spec's grammar. A sha256
// digest must have 64 lower-case hex digits, a sha512 one 128; another
// algorithm that fits the grammar is well formed but unsupported (never
// held here).
func parseDigest(s string) (v1.Hash, bool, *Error) {
	bad := func() (v1.Hash, bool, *Error) {
		return v1.Hash{}, false, errorf(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q", truncate(s))
	}
	algo, enc, ok := strings.Cut(s, ":")
	if !ok || algo == "" || enc == "" || len(s) > 200 {
		return bad()
	}
	for i := 0; i < len(algo); i++ {
		c := algo[i]
		sep := c == '+' || c == '.' || c == '_' || c == '-'
		if !alnum(c) && !(sep && i > 0 && i < len(algo)-1 && alnum(algo[i-1])) {
			return bad()
		}
	}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if !(alnum(c) || (c >= 'A' && c <= 'Z') || c == '=' || c == '_' || c == '-') {
			return bad()
		}
	}
	hexLen := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if hexLen > 0 {
		if len(enc) != hexLen || strings.Trim(enc, "0123456789abcdef") != "" {
			return bad()
		}
	}
	return v1.Hash{Algorithm: algo, Hex: enc}, algo == "sha256", nil
}

// truncate shortens what a client sent for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
