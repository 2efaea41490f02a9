package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Keys of an images.yaml, in the order the parser reads them.
var (
	topKeys   = []string{"platforms", "mirrors", "images"}
	entryKeys = []string{"name", "tags", "platforms"}
	tagsKeys  = []string{"regex"}
)

// parseYAML reads an images.yaml with yaml.v3's Node API, so that every
// problem names its line and column.
func (p *parser) parseYAML(data []byte) {
	root := p.decodeYAML(data)
	if root == nil {
		return
	}
	root = resolve(root)
	if isNull(root) {
		p.errs.add(Pos{File: p.spec.File}, nil, "file is empty (want an images: list)")
		return
	}
	if root.Kind != yaml.MappingNode {
		hint := ""
		switch root.Kind {
		case yaml.SequenceNode:
			hint = "; put the list under an images: key"
		case yaml.ScalarNode:
			hint = "; a plain list of references needs a file name ending in .txt"
		}
		p.errs.add(p.at(root), nil, "top level must be a mapping with platforms, mirrors and images keys, got %s%s", kindName(root), hint)
		return
	}
	fields := p.fields(root, "at top level", topKeys, nil)
	// Platforms and mirrors first: image entries are checked against them.
	if f, ok := fields["platforms"]; ok {
		p.spec.Platforms = p.platforms(f)
	}
	if f, ok := fields["mirrors"]; ok {
		p.mirrors(f)
	}
	f, ok := fields["images"]
	if !ok {
		p.errs.add(p.at(root), nil, "missing key \"images\" (the list of images to bundle)")
		return
	}
	p.images(f)
}

// decodeYAML returns the root node of the file's only document, or nil
// after recording why there is none.
func (p *parser) decodeYAML(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			p.errs.add(Pos{File: p.spec.File}, nil, "reading YAML: parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs.add(Pos{File: p.spec.File}, nil, "file is empty (want an images: list)")
		} else {
			p.syntaxError(data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntaxError(data, err)
		return nil
	case len(extra.Content) > 0 && !isNull(extra.Content[0]) || len(extra.Content) > 1:
		p.errs.add(p.at(extra.Content[0]), nil, "a second YAML document; a manifest file holds one (remove the '---')")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.errs.add(Pos{File: p.spec.File}, nil, "file is empty (want an images: list)")
		return nil
	}
	return doc.Content[0]
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner). yaml.v3 reports their line 0-based, and leaves the line out
// when it is the first.
var yamlParserErrors = []string{
	"did not find expected key",
	"did not find expected node content",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found duplicate %TAG directive",
	"found incompatible YAML document",
}

// syntaxError turns a yaml.v3 error ("yaml: line 3: …") into file:line
// form, correcting yaml.v3's line where it is off and finding the place
// itself where yaml.v3 gives none. Tabs in indentation, the commonest
// cause, are pointed at exactly.
func (p *parser) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 0, 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	isParserError := slices.Contains(yamlParserErrors, msg)
	switch {
	case isParserError:
		line++
	case strings.HasPrefix(msg, "unknown anchor '"):
		anchor := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		line, col = findAlias(data, anchor)
	case line == 0:
		if l, c, ok := findBadChar(data); ok {
			line, col = l, c
		} else if !strings.HasPrefix(msg, "anchor '") {
			line = 1 // yaml.v3 leaves out line 1 of scanner errors
		}
	}
	// An error at the end of the file can be reported on a line past it.
	if n := bytes.Count(data, []byte("\n")) + 1; len(data) > 0 && data[len(data)-1] == '\n' && line >= n {
		line = n - 1
	} else if line > n {
		line = n
	}
	if strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token") {
		lines := strings.Split(string(data), "\n")
		for i := max(line-2, 0); i < len(lines) && i <= line; i++ {
			l := lines[i]
			indent := len(l) - len(strings.TrimLeft(l, " \t"))
			if j := strings.IndexByte(l[:indent], '\t'); j >= 0 {
				p.errs.add(p.pos(i+1, j+1), err, "tab character in indentation; YAML indents with spaces (yaml: %s)", msg)
				return
			}
		}
	}
	p.errs.add(p.pos(line, col), err, "invalid YAML: %s", msg)
}

// findAlias returns the line and column of the first use of an alias.
func findAlias(data []byte, anchor string) (line, col int) {
	for i, l := range strings.Split(string(data), "\n") {
		for off := 0; ; {
			j := strings.Index(l[off:], "*"+anchor)
			if j < 0 {
				break
			}
			end := off + j + 1 + len(anchor)
			if end == len(l) || strings.IndexByte(" \t\r,]}#", l[end]) >= 0 {
				return i + 1, utf8.RuneCountInString(l[:off+j]) + 1
			}
			off += j + 1
		}
	}
	return 0, 0
}

// findBadChar returns the position of the first byte that YAML does not
// accept: invalid UTF-8, or a control character other than tab, CR, LF.
func findBadChar(data []byte) (line, col int, ok bool) {
	line, col = 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r == 0x7f, r >= 0x80 && r <= 0x9f && r != 0x85,
			r == 0xfffe, r == 0xffff:
			return line, col, true
		case r == '\n':
			line, col = line+1, 0
		}
		col++
		data = data[size:]
	}
	return 0, 0, false
}

// field is one key: value pair of a mapping.
type field struct{ key, val *yaml.Node }

// fields reads a mapping's pairs, reporting keys that are not plain
// strings, unknown, or repeated. An unknown key gets the nearest known
// one as advice, or else hint's, when set.
func (p *parser) fields(m *yaml.Node, where string, known []string, hint func(k, v *yaml.Node) string) map[string]field {
	out := make(map[string]field, len(known))
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), m.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errs.add(p.at(k), nil, "keys must be plain words, got %s %s", kindName(k), where)
		case k.Value == "<<" && k.Tag == "!!merge":
			p.errs.add(p.at(k), nil, "merge keys (<<) are not supported %s", where)
		case !slices.Contains(known, k.Value):
			h := ""
			if near, ok := Nearest(k.Value, known); ok {
				h = fmt.Sprintf("; did you mean %q?", near)
			} else if hint != nil {
				h = hint(k, v)
			}
			p.errs.add(p.at(k), nil, "unknown key %q %s (known: %s)%s", k.Value, where, strings.Join(known, ", "), h)
		default:
			if first, dup := out[k.Value]; dup {
				p.errs.add(p.at(k), nil, "duplicate key %q %s (first at %s)", k.Value, where, p.at(first.key))
				continue
			}
			out[k.Value] = field{k, v}
		}
	}
	return out
}

// list returns the items of a list value; a single scalar counts as a list
// of one. Errors (null, empty, a mapping) are reported at the key.
func (p *parser) list(f field, what string) ([]*yaml.Node, bool) {
	v := resolve(f.val)
	switch {
	case isNull(v):
		p.errs.add(p.at(f.key), nil, "%s list is empty", what)
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.errs.add(p.at(v), nil, "%s list is empty", what)
	case v.Kind == yaml.SequenceNode:
		return v.Content, true
	case v.Kind == yaml.ScalarNode:
		return []*yaml.Node{f.val}, true
	default:
		p.errs.add(p.at(v), nil, "%s must be a list, got %s", what, kindName(v))
	}
	return nil, false
}

// scalar returns a non-null scalar's text as written (so an unquoted 3.10
// stays "3.10"), or reports what it is instead.
func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	r := resolve(n)
	switch {
	case r.Kind != yaml.ScalarNode:
		p.errs.add(p.at(n), nil, "%s must be a string, got %s", what, kindName(r))
	case isNull(r):
		p.errs.add(p.at(n), nil, "%s is empty", what)
	default:
		return r.Value, true
	}
	return "", false
}

// platforms reads a platforms list (top level or per image).
func (p *parser) platforms(f field) []string {
	items, ok := p.list(f, "platforms")
	if !ok {
		return nil
	}
	var out []string
	var allAt *yaml.Node
	seen := map[string]Pos{}
	for _, it := range items {
		s, ok := p.scalar(it, "a platform")
		if !ok {
			continue
		}
		pos := p.at(it)
		if first, dup := seen[s]; dup {
			p.errs.add(pos, nil, "duplicate platform %q (first at %s)", s, first)
			continue
		}
		seen[s] = pos
		if s == AllPlatforms {
			allAt = it
		} else if err := CheckTypedPlatform(s); err != nil {
			p.errs.add(pos, err, "%s", err)
			continue
		}
		out = append(out, s)
	}
	if allAt != nil && len(items) > 1 {
		p.errs.add(p.at(allAt), nil, "%q cannot be combined with other platforms", AllPlatforms)
	}
	return out
}

// mirrors reads the mirrors mapping: registry host → host[:port][/path].
func (p *parser) mirrors(f field) {
	v := resolve(f.val)
	switch {
	case isNull(v) || v.Kind == yaml.MappingNode && len(v.Content) == 0:
		p.errs.add(p.at(f.key), nil, "mirrors is empty (remove the key or add registry: mirror pairs)")
		return
	case v.Kind != yaml.MappingNode:
		p.errs.add(p.at(v), nil, "mirrors must be a mapping of registry host to mirror (docker.io: registry.local:5000/dockerhub), got %s", kindName(v))
		return
	}
	seen := map[string]Pos{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		from, ok1 := p.scalar(k, "a mirrored registry")
		to, ok2 := p.scalar(val, "a mirror")
		if !ok1 || !ok2 {
			continue
		}
		if err := checkMirrorFrom(from); err != nil {
			p.errs.add(p.at(k), err, "%s", err)
			continue
		}
		to = strings.TrimSuffix(to, "/")
		if err := checkMirrorTo(to); err != nil {
			p.errs.add(p.at(val), err, "%s", err)
			continue
		}
		key := registryKey(from)
		if first, dup := seen[key]; dup {
			p.errs.add(p.at(k), nil, "duplicate mirror for %s (first at %s)", key, first)
			continue
		}
		seen[key] = p.at(k)
		p.spec.Mirrors = append(p.spec.Mirrors, Mirror{From: key, To: to})
	}
	sort.Slice(p.spec.Mirrors, func(i, j int) bool { return p.spec.Mirrors[i].From < p.spec.Mirrors[j].From })
}

func checkMirrorFrom(from string) error {
	switch {
	case strings.Contains(from, "://"):
		return fmt.Errorf("mirrored registry %q must be a host name, without a URL scheme", from)
	case strings.Contains(from, "/"):
		return fmt.Errorf("mirrored registry %q must be a host name, without a path", from)
	}
	if err := checkHost(from); err != nil {
		return fmt.Errorf("bad mirrored registry: %w", err)
	}
	return nil
}

func checkMirrorTo(to string) error {
	if strings.Contains(to, "://") {
		return fmt.Errorf("mirror %q must not contain a URL scheme; write host[:port][/path]", to)
	}
	host, path, _ := strings.Cut(to, "/")
	if !isHostLike(host) {
		return fmt.Errorf("mirror %q must start with a registry host (a name with a dot or a port, or localhost)", to)
	}
	if err := checkHost(host); err != nil {
		return fmt.Errorf("bad mirror: %w", err)
	}
	if path != "" {
		if err := checkPath(path); err != nil {
			return fmt.Errorf("bad mirror %q: %w", to, err)
		}
	}
	return nil
}

// images reads the images list.
func (p *parser) images(f field) {
	v := resolve(f.val)
	switch {
	case isNull(v):
		p.errs.add(p.at(f.key), nil, "images list is empty")
		return
	case v.Kind != yaml.SequenceNode:
		p.errs.add(p.at(v), nil, "images must be a list, got %s", kindName(v))
		return
	case len(v.Content) == 0:
		p.errs.add(p.at(v), nil, "images list is empty")
		return
	}
	for _, it := range v.Content {
		r := resolve(it)
		switch {
		case r.Kind == yaml.MappingNode:
			p.imageMapping(it, r)
		case r.Kind != yaml.ScalarNode:
			p.errs.add(p.at(it), nil, "image entry must be a reference or a mapping with a name key, got %s", kindName(r))
		case isNull(r):
			p.errs.add(p.at(it), nil, "image entry is empty")
		default:
			parts, err := parseRef(r.Value)
			if err != nil {
				p.errs.add(p.at(it), err, "%s", err)
				continue
			}
			e := newEntry(p.at(it), parts)
			p.addEntry(e, entryNames(e, nil))
		}
	}
}

// imageMapping reads an image entry written as a mapping. it is the list
// item as written (for its position), m the mapping it resolves to.
func (p *parser) imageMapping(it, m *yaml.Node) {
	before := p.errs.count()
	fields := p.fields(m, "in image entry", entryKeys, func(k, v *yaml.Node) string {
		// "- debian: bookworm" is a mapping; "- debian:bookworm" was meant.
		if len(m.Content) == 2 && resolve(v).Kind == yaml.ScalarNode && !isNull(resolve(v)) {
			return fmt.Sprintf("; did you mean %q (no space after ':')?", k.Value+":"+resolve(v).Value)
		}
		return ""
	})
	nf, ok := fields["name"]
	if !ok {
		if p.errs.count() == before {
			p.errs.add(p.at(it), nil, "image entry has no name key")
		}
		return
	}
	ref, ok := p.scalar(nf.val, "name")
	if !ok {
		return
	}
	parts, err := parseRef(ref)
	if err != nil {
		p.errs.add(p.at(nf.val), err, "%s", err)
		return
	}
	e := newEntry(p.at(it), parts)
	var tagPos []Pos
	if tf, ok := fields["tags"]; ok {
		switch {
		case parts.tag != "":
			p.errs.add(p.at(tf.key), nil, "name %q already has a tag; use either name:tag or a tags: list", ref)
		case parts.digest != "":
			p.errs.add(p.at(tf.key), nil, "name %q is pinned by digest; drop the digest or the tags: list", ref)
		default:
			e.Tags, e.TagRegex, tagPos = p.tags(tf)
		}
	}
	if pf, ok := fields["platforms"]; ok {
		e.Platforms = p.platforms(pf)
	}
	if p.errs.count() != before {
		return
	}
	p.addEntry(e, entryNames(e, tagPos))
}

// tags reads a tags: value, a list of tags or {regex: '…'}.
func (p *parser) tags(f field) ([]string, *regexp.Regexp, []Pos) {
	v := resolve(f.val)
	if v.Kind == yaml.MappingNode {
		fields := p.fields(v, "in tags", tagsKeys, nil)
		rf, ok := fields["regex"]
		if !ok {
			if len(v.Content) == 0 {
				p.errs.add(p.at(v), nil, "tags mapping is empty (want {regex: '…'})")
			} else if len(fields) == len(v.Content)/2 {
				p.errs.add(p.at(v), nil, "tags mapping has no regex key")
			}
			return nil, nil, nil
		}
		src, ok := p.scalar(rf.val, "tag regex")
		if !ok {
			return nil, nil, nil
		}
		if src == "" {
			p.errs.add(p.at(rf.val), nil, "tag regex is empty (write '.*' to take every tag)")
			return nil, nil, nil
		}
		re, err := regexp.Compile(src)
		if err != nil {
			p.errs.add(p.at(rf.val), err, "invalid tag regex %q: %v", src, err)
			return nil, nil, nil
		}
		return nil, re, nil
	}
	items, ok := p.list(f, "tags")
	if !ok {
		return nil, nil, nil
	}
	var tags []string
	var pos []Pos
	seen := map[string]Pos{}
	for _, it := range items {
		t, ok := p.scalar(it, "a tag")
		if !ok {
			continue
		}
		at := p.at(it)
		if err := checkTag(t); err != nil {
			p.errs.add(at, err, "bad tag: %s", err)
			continue
		}
		if first, dup := seen[t]; dup {
			p.errs.add(at, nil, "duplicate tag %q (first at %s)", t, first)
			continue
		}
		seen[t] = at
		tags = append(tags, t)
		pos = append(pos, at)
	}
	return tags, nil, pos
}

// at is a node's position.
func (p *parser) at(n *yaml.Node) Pos { return p.pos(n.Line, n.Column) }

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName says what a node is, for errors: "a list", "a mapping",
// "the string \"x\"".
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return fmt.Sprintf("the value %q", v)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}
