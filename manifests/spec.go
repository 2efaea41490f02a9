package manifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/bundle-tool/bundle/internal/safefs"

	"github.com/google/go-containerregistry/pkg/name"
)

// MaxFileSize is the largest manifest file Load and Parse accept. A
// manifest is a short text file; anything bigger is the wrong file (a
// bundle passed to -f by mistake).
const MaxFileSize = 4 << 20

// Spec is a parsed images.yaml or images.txt.
type Spec struct {
	File      string   // path as given
	SHA256    string   // hex sha256 of the file's bytes
	Platforms []string // default platforms ("linux/amd64", "linux/arm64/v8"); nil when not set; []string{"all"} keeps every platform
	Mirrors   []Mirror // sorted by From
	Images    []Entry  // in file order
}

// Mirror says where to fetch a registry's repositories from. The names in
// the bundle stay the originals.
type Mirror struct {
	From string // a registry host, "docker.io" for Docker Hub
	To   string // host[:port][/path/prefix]
}

// Entry is one image entry of a manifest file. An entry names one
// repository and which of its images to take: Tags, or the tags matching
// TagRegex, or the image at Digest.
//
// When a name carries both a tag and a digest ("app:1.0@sha256:…"), Digest
// is what is fetched and Tags holds that one tag: the name the image gets
// in the bundle. The registry's current value of the tag is not consulted.
type Entry struct {
	Pos        Pos
	Repository name.Repository // normalized: every spelling of a repository gives an equal value
	Tags       []string        // explicit tags; ["latest"] when neither tag, digest nor regex is given
	TagRegex   *regexp.Regexp  // from tags: {regex: '…'}; unanchored, as in grep
	Digest     string          // "sha256:…" when pinned by digest
	Platforms  []string        // per-image override; nil = use Spec.Platforms
}

// Refs returns the references the entry names in the bundle, before any
// TagRegex is expanded: one name.Tag per tag (pinned to Digest when it is
// set), or the name.Digest of a digest-only entry.
func (e Entry) Refs() []name.Reference {
	if len(e.Tags) == 0 && e.Digest != "" {
		return []name.Reference{e.Repository.Digest(e.Digest)}
	}
	refs := make([]name.Reference, 0, len(e.Tags))
	for _, t := range e.Tags {
		refs = append(refs, e.Repository.Tag(t))
	}
	return refs
}

// PlatformsFor returns the platforms to keep for an entry: its own, else
// the file's default; nil when neither is set (the caller's default
// applies).
func (s *Spec) PlatformsFor(e Entry) []string {
	if e.Platforms != nil {
		return e.Platforms
	}
	return s.Platforms
}

// MirrorFor returns the repository to fetch repo from: with the mirror
// docker.io: registry.local:5000/dockerhub, docker.io/library/debian is
// fetched from registry.local:5000/dockerhub/library/debian. ok is false,
// and repo is returned as it is, when no mirror applies. Parse checks that
// the mirror name of every entry is valid, so ok is true for every entry
// of a parsed Spec whose registry has a mirror.
func (s *Spec) MirrorFor(repo name.Repository) (name.Repository, bool) {
	from := registryKey(repo.RegistryStr())
	for _, m := range s.Mirrors {
		if m.From != from {
			continue
		}
		mirrored, err := name.NewRepository(m.To + "/" + repo.RepositoryStr())
		if err != nil {
			return repo, false
		}
		return mirrored, true
	}
	return repo, false
}

// registryKey is how a registry host is compared against Mirror.From:
// Docker Hub under its docker.io name, other hosts in lower case.
func registryKey(host string) string {
	h := strings.ToLower(host)
	if h == name.DefaultRegistry || h == DockerHub {
		return DockerHub
	}
	return h
}

// Load reads a manifest file and parses it: YAML when the name ends in
// .yaml or .yml, a plain list when it ends in .txt, and otherwise whatever
// the content looks like (see Parse).
//
// The file must be regular (links are followed): a FIFO or a device is
// refused without being waited on.
func Load(path string) (*Spec, error) {
	f, err := safefs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest file %s: %w", path, err)
	}
	return Parse(path, data)
}

// Format is the syntax of a manifest file.
type Format int

const (
	FormatYAML  Format = iota + 1 // images.yaml: platforms, mirrors, images
	FormatPlain                   // images.txt: one reference per line, # comments
)

func (f Format) String() string {
	switch f {
	case FormatYAML:
		return "yaml"
	case FormatPlain:
		return "plain list"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// DetectFormat picks a manifest file's syntax: by the file name's
// extension (.yaml and .yml are YAML; .txt and .list are plain lists),
// and otherwise by content: YAML when any line outside comments starts a
// list item ("- "), holds a "key: value" pair, ends in ':' or is a
// document marker or flow collection; a plain list otherwise.
func DetectFormat(file string, data []byte) Format {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".yaml", ".yml":
		return FormatYAML
	case ".txt", ".list":
		return FormatPlain
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case line == "-" || line == "---" || strings.HasPrefix(line, "- "),
			strings.HasPrefix(line, "{"), strings.HasPrefix(line, "["),
			strings.Contains(line, ": "), strings.HasSuffix(line, ":"):
			return FormatYAML
		}
	}
	return FormatPlain
}

// Parse parses the bytes of a manifest file; file names it in errors and
// picks the syntax (see DetectFormat). Every problem found is reported,
// each as an *Error naming file:line:col, joined with errors.Join.
func Parse(file string, data []byte) (*Spec, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{Pos: Pos{File: file}, Msg: fmt.Sprintf("manifest file is larger than %d bytes; is it really an images.yaml or images.txt?", MaxFileSize)}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, &Error{Pos: Pos{File: file}, Msg: "not a text file (it contains NUL bytes); want an images.yaml or images.txt"}
	}
	sum := sha256.Sum256(data)
	s := &Spec{File: file, SHA256: hex.EncodeToString(sum[:])}
	p := &parser{spec: s, errs: errList{file: file}, seen: map[string]Pos{}}
	if DetectFormat(file, data) == FormatYAML {
		p.parseYAML(data)
	} else {
		p.parsePlain(data)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// newEntry makes the entry for a reference with no tags: list.
func newEntry(pos Pos, parts refParts) Entry {
	e := Entry{Pos: pos, Repository: parts.repo, Digest: parts.digest}
	switch {
	case parts.tag != "":
		e.Tags = []string{parts.tag}
	case parts.digest == "":
		e.Tags = []string{name.DefaultTag}
	}
	return e
}

// parser holds the state of one Parse call, whatever the syntax.
type parser struct {
	spec *Spec
	errs errList
	seen map[string]Pos // full reference → where it was first named
}

func (p *parser) pos(line, col int) Pos { return Pos{File: p.spec.File, Line: line, Col: col} }

// addEntry checks an entry against the ones before it and against the
// mirrors, and appends it. names are the entry's references with their
// positions (a tags: list gives each tag its own).
func (p *parser) addEntry(e Entry, names []namedAt) {
	ok := true
	for _, n := range names {
		if first, dup := p.seen[n.key]; dup {
			p.errs.add(n.pos, nil, "duplicate image %s (first at %s)", n.show, first)
			ok = false
			continue
		}
		p.seen[n.key] = n.pos
	}
	if _, mirrored := p.spec.MirrorFor(e.Repository); !mirrored && p.hasMirror(e.Repository) {
		p.errs.add(e.Pos, nil, "repository %s cannot be fetched through its mirror: the mirrored name is not a valid repository", FullRepo(e.Repository))
		ok = false
	}
	if ok {
		p.spec.Images = append(p.spec.Images, e)
	}
}

func (p *parser) hasMirror(r name.Repository) bool {
	key := registryKey(r.RegistryStr())
	return slices.ContainsFunc(p.spec.Mirrors, func(m Mirror) bool { return m.From == key })
}

// namedAt is one reference an entry names, for duplicate checks.
type namedAt struct {
	key  string // what makes two entries the same
	show string // how to name it in an error
	pos  Pos
}

// entryNames lists what an entry names: its full references, or for a
// regex its repository and pattern.
func entryNames(e Entry, tagPos []Pos) []namedAt {
	repo := FullRepo(e.Repository)
	switch {
	case e.TagRegex != nil:
		k := repo + " tags matching " + e.TagRegex.String()
		return []namedAt{{key: k, show: fmt.Sprintf("%s (tags matching %q)", repo, e.TagRegex.String()), pos: e.Pos}}
	case len(e.Tags) == 0:
		k := repo + "@" + e.Digest
		return []namedAt{{key: k, show: fmt.Sprintf("%q", k), pos: e.Pos}}
	}
	out := make([]namedAt, len(e.Tags))
	for i, t := range e.Tags {
		k := repo + ":" + t
		pos := e.Pos
		if i < len(tagPos) {
			pos = tagPos[i]
		}
		out[i] = namedAt{key: k, show: fmt.Sprintf("%q", k), pos: pos}
	}
	return out
}
