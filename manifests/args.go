package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// ArgsFile is the File of a Spec made only from command-line arguments.
const ArgsFile = "arguments"

// allTags is the tag pattern of --all-tags: every tag of the repository.
var allTags = regexp.MustCompile(`.`)

// Args are images named on the command line: `bundle create -o F REF…
// [--platform P]… [--all-tags]`.
type Args struct {
	Refs      []string // references as typed, in order
	Platforms []string // --platform, repeatable; nil = the file's or the default
	AllTags   bool     // every tag of each repository named (a tag or digest given is an error)
}

// AddArgs returns base (a parsed images.yaml, or nil for none) with the
// images named by args appended, checked like the entries of a file: a
// reference that does not parse, or names an image already named (in the
// file or before it on the command line), is an error naming the argument
// and its position ("argument 2"). --platform applies to the argument entries; with no
// references it is the default of the file's entries that set none of
// their own (the file's top-level platforms). The result's SHA256 covers
// the file's bytes and the arguments, so a lockfile or bundle.json source
// changes when either does.
func AddArgs(base *Spec, args Args) (*Spec, error) {
	for _, p := range args.Platforms {
		if p == AllPlatforms && len(args.Platforms) == 1 {
			continue
		}
		if err := CheckTypedPlatform(p); err != nil {
			return nil, &Error{Pos: Pos{File: "--platform"}, Msg: err.Error(), Err: err}
		}
	}
	if args.AllTags && len(args.Refs) == 0 {
		return nil, &Error{Pos: Pos{File: "--all-tags"}, Msg: "--all-tags needs repositories named as arguments"}
	}
	s := &Spec{File: ArgsFile}
	if base != nil {
		cp := *base
		cp.Images = append([]Entry(nil), base.Images...)
		s = &cp
	}
	p := &parser{spec: s, errs: errList{file: s.File}, seen: map[string]Pos{}}
	for _, e := range s.Images {
		for _, n := range entryNames(e, nil) {
			if _, dup := p.seen[n.key]; !dup {
				p.seen[n.key] = n.pos
			}
		}
	}
	if len(args.Refs) == 0 && args.Platforms != nil {
		s.Platforms = args.Platforms
	}
	for i, ref := range args.Refs {
		pos := Pos{File: fmt.Sprintf("argument %d", i+1)}
		parts, err := parseRef(ref)
		if err != nil {
			p.errs.add(pos, err, "%s", err)
			continue
		}
		e := newEntry(pos, parts)
		if args.AllTags {
			if parts.tag != "" || parts.digest != "" {
				p.errs.add(pos, nil, "--all-tags takes a repository without a tag or digest")
				continue
			}
			e.Tags, e.TagRegex = nil, allTags
		}
		if args.Platforms != nil {
			e.Platforms = args.Platforms
		}
		p.addEntry(e, entryNames(e, nil))
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	if len(args.Refs) > 0 {
		h := sha256.New()
		if base != nil {
			h.Write([]byte(base.SHA256 + "\n"))
		}
		h.Write([]byte(strings.Join(args.Refs, "\n")))
		fmt.Fprintf(h, "\n--platform %s\n--all-tags %v\n", strings.Join(args.Platforms, ","), args.AllTags)
		s.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return s, nil
}
