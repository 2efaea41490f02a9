package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options are the inputs of Open.
type Options struct {
	// Inputs name the bundles: a file, or any volume, the base name or a
	// glob of a split bundle (tarball.FindVolumes). Volumes of one split
	// bundle named twice are one bundle.
	Inputs []string
	// Prefix is put before every repository name (RepositoryPath).
	Prefix string
	// Progress receives the verify pass of each bundle; may be nil.
	Progress bundle.VerifyProgress
	// Warn receives what goes wrong while serving that no request
	// caused alone: a bundle file that changed on disk. May be nil.
	Warn func(error)
	// AccessLog receives every request once answered; may be nil.
	AccessLog func(Access)
}

// source is one bundle file (or split bundle) being served.
type source struct {
	name    string // for messages
	created time.Time
	order   int // its place among the inputs
	vr      *tarball.VolumeReader
	vols    []tarball.Volume
	starts  []int64
	base    []fs.FileInfo // of the open volumes, when verified
	file    *tarball.File
	index   *tarball.Index

	mu      sync.Mutex
	changed *ChangedError // sticky once seen
}

// blobAt is where a blob lies.
type blobAt struct {
	src       *source
	off, size int64
}

// tagged is what a tag names.
type tagged struct {
	digest  v1.Hash
	mt      types.MediaType
	size    int64
	ref     string // as bundle.json says it
	src     *source
	created time.Time
}

// repository is what one repository name serves.
type repository struct {
	tags      map[string]tagged
	tagList   []string // sorted
	manifests map[v1.Hash]bool
	blobs     map[v1.Hash]bool // manifests included: a registry serves them as blobs too
}

func newRepository() *repository {
	return &repository{tags: map[string]tagged{}, manifests: map[v1.Hash]bool{}, blobs: map[v1.Hash]bool{}}
}

type nsName struct{ ns, name string }

// Conflict is a tag that two bundles (or two upstream registries) give
// different images: the newest bundle's (by bundle.json "created") is
// served.
type Conflict struct {
	// Name is the served name ("library/debian:bookworm").
	Name string `json:"name"`
	// Served and Shadowed are the references, digests and bundles.
	Served   Claim   `json:"served"`
	Shadowed []Claim `json:"shadowed"`
	// NameOnly says the images come from different upstream registries
	// (docker.io/x/y:1, ghcr.io/x/y:1): a request with ?ns= gets its
	// own, one without gets Served.
	NameOnly bool `json:"nameOnly,omitempty"`
}

// Claim is one bundle's image for a name.
type Claim struct {
	Ref     string `json:"ref"`
	Digest  string `json:"digest"`
	Bundle  string `json:"bundle"`
	Created string `json:"created"`
}

// BundleSummary is one bundle served.
type BundleSummary struct {
	Name     string `json:"name"`
	Created  string `json:"created"`
	Images   int    `json:"images"`
	Blobs    int    `json:"blobs"`
	External int    `json:"external,omitempty"` // a delta's blobs found in the others
	Bytes    int64  `json:"bytes"`
	Volumes  int    `json:"volumes,omitempty"`
}

// Summary is what Open found: what is served.
type Summary struct {
	Bundles      []BundleSummary `json:"bundles"`
	Images       int             `json:"images"`
	Repositories int             `json:"repositories"`
	Blobs        int             `json:"blobs"`
	// Upstreams are the registries the images came from (docker.io,
	// ghcr.io, …), sorted: the mirrors a node configures.
	Upstreams []string   `json:"upstreams"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Same counts tags that two bundles give the same image (no conflict).
	Same int `json:"same,omitempty"`
}

// Registry serves bundles as a read-only OCI registry. Build it with
// Open, serve it with Handler or Serve, and Close it.
type Registry struct {
	opts    Options
	sources []*source
	blobs   map[v1.Hash]blobAt
	types   map[v1.Hash]types.MediaType
	byNS    map[nsName]*repository
	byName  map[string]*repository
	names   []string // sorted, for the catalog
	summary Summary
	// stall bounds how long one write of a blob may wait on the client
	// (Serve sets it).
	stall time.Duration

	warned    sync.Mutex
	warnedFor map[string]bool // bundles whose change was reported
}

// Open opens and verifies every bundle, as bundle verify does, and
// indexes what they hold. A bundle that does not verify is a
// *CorruptError, a gzip-compressed one a *CompressedError, bundles
// lacking blobs their images need an *IncompleteError; nothing is served
// then.
func Open(ctx context.Context, opts Options) (*Registry, error) {
	if len(opts.Inputs) == 0 {
		return nil, errors.New("no bundle given")
	}
	if opts.Prefix != "" && (!ValidName(opts.Prefix) || len(opts.Prefix) >= MaxNameLength) {
		return nil, fmt.Errorf("--prefix %q is not a repository path (lower-case letters, digits, separators . _ __ -, components joined by /)", opts.Prefix)
	}
	r := &Registry{opts: opts}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	seen := map[string]bool{}
	for _, in := range opts.Inputs {
		set, err := tarball.FindVolumes(in)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", in, err)
		}
		key := set.Base
		if abs, err := filepath.Abs(key); err == nil {
			key = abs
		}
		if seen[key] {
			continue // another volume of a split bundle already given
		}
		seen[key] = true
		src, err := openSource(ctx, in, set, opts.Progress)
		if err != nil {
			return nil, err
		}
		src.order = len(r.sources)
		r.sources = append(r.sources, src)
	}
	if err := r.build(); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// Close closes every bundle file.
func (r *Registry) Close() error {
	var first error
	for _, s := range r.sources {
		if s.vr != nil {
			if err := s.vr.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// Summary says what is served.
func (r *Registry) Summary() Summary { return r.summary }

// openSource opens one bundle, verifies it and reads its headers.
func openSource(ctx context.Context, in string, set *tarball.VolumeSet, progress bundle.VerifyProgress) (*source, error) {
	name := in
	if set.Split {
		name = set.Name()
	}
	verifyIt := func() (*bundle.VerifyResult, error) {
		return bundle.Verify(ctx, bundle.VerifyOptions{Input: in, Progress: progress})
	}
	if len(set.Missing) > 0 || len(set.Readable()) == 0 {
		// Let verify say which volume is missing.
		res, err := verifyIt()
		if err != nil {
			return nil, err
		}
		return nil, &CorruptError{Name: res.Name, Report: res.Report}
	}
	vr, err := set.Open()
	if err != nil {
		return nil, err
	}
	src := &source{name: name, vr: vr, vols: vr.Volumes()}
	fail := func(err error) (*source, error) {
		vr.Close()
		return nil, err
	}
	if vr.Size() < 0 {
		return fail(fmt.Errorf("%s is not a regular file: a pipe cannot be served", name))
	}
	var start int64
	for _, v := range src.vols {
		src.starts = append(src.starts, start)
		start += v.Size
	}
	magic := make([]byte, 2)
	if n, _ := vr.ReadAt(magic, 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return fail(&CompressedError{Name: name})
	}
	if src.base, err = vr.Stat(); err != nil {
		return fail(fmt.Errorf("%s: %w", name, err))
	}
	res, err := verifyIt()
	if err != nil {
		return fail(err)
	}
	if !res.Report.Intact {
		return fail(&CorruptError{Name: res.Name, Report: res.Report})
	}
	// What was verified is what is open: the same files, unchanged.
	if err := src.check(); err != nil {
		return fail(err)
	}
	for i, v := range src.vols {
		fi, err := os.Stat(v.Path)
		if err != nil || !os.SameFile(fi, src.base[i]) {
			return fail(&ChangedError{Bundle: name, File: v.Path, What: "replaced by another file while it was verified"})
		}
	}
	if src.file, err = tarball.OpenReaderAt(vr, vr.Size()); err != nil {
		return fail(fmt.Errorf("reading %s: %w", name, err))
	}
	src.index = src.file.Index()
	if t, err := time.Parse(time.RFC3339, src.index.Created); err == nil {
		src.created = t
	}
	return src, nil
}

// check says whether the bundle's files are still what was verified:
// same size and modification time, from the open files.
func (s *source) check() error {
	return s.checkVolumes(0, len(s.vols))
}

// checkVolumes checks volumes [from, to).
func (s *source) checkVolumes(from, to int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		return s.changed
	}
	fis, err := s.vr.Stat()
	if err != nil {
		s.changed = &ChangedError{Bundle: s.name, File: s.vols[0].Path, What: err.Error()}
		return s.changed
	}
	for i := from; i < to; i++ {
		was, now := s.base[i], fis[i]
		switch {
		case now.Size() != was.Size():
			s.changed = &ChangedError{Bundle: s.name, File: s.vols[i].Path, What: fmt.Sprintf("size %d, was %d", now.Size(), was.Size())}
		case !now.ModTime().Equal(was.ModTime()):
			s.changed = &ChangedError{Bundle: s.name, File: s.vols[i].Path, What: fmt.Sprintf("modified %s, was %s", now.ModTime().UTC().Format(time.RFC3339Nano), was.ModTime().UTC().Format(time.RFC3339Nano))}
		}
		if s.changed != nil {
			return s.changed
		}
	}
	return nil
}

// readAt reads len(p) bytes at off, then checks the volumes it read from
// are unchanged: bytes it returns without error were read from the
// verified file.
func (s *source) readAt(p []byte, off int64) error {
	if _, err := s.vr.ReadAt(p, off); err != nil {
		if cerr := s.check(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("reading %s at offset %d: %w", s.name, off, err)
	}
	from := sort.Search(len(s.starts), func(i int) bool { return s.starts[i]+s.vols[i].Size > off }) // the volume of off
	to := from + 1
	for to < len(s.vols) && s.starts[to] < off+int64(len(p)) {
		to++
	}
	return s.checkVolumes(min(from, len(s.vols)-1), to)
}

// build indexes the sources: the blobs, and per repository the tags and
// the digests it serves.
func (r *Registry) build() error {
	r.blobs = map[v1.Hash]blobAt{}
	r.types = map[v1.Hash]types.MediaType{}
	r.byNS = map[nsName]*repository{}
	r.byName = map[string]*repository{}
	// Oldest first, so that the newest bundle's tags are set last.
	order := slices.Clone(r.sources)
	sort.SliceStable(order, func(i, j int) bool { return order[i].created.Before(order[j].created) })
	for _, s := range r.sources {
		for _, e := range s.file.Entries() {
			if e.Kind != tarball.KindBlob {
				continue
			}
			if _, ok := r.blobs[e.Digest]; !ok {
				r.blobs[e.Digest] = blobAt{src: s, off: e.Offset, size: e.Size}
			}
		}
		for h, b := range s.index.Blobs {
			r.types[h] = b.MediaType
		}
		for h, b := range s.index.External {
			if _, ok := r.types[h]; !ok {
				r.types[h] = b.MediaType
			}
		}
	}
	type claimKey struct{ ns, name, tag string }
	claims := map[claimKey][]tagged{}
	var claimOrder []claimKey
	upstreams := map[string]bool{}
	var missing []MissingBlob
	images := 0
	for _, s := range order {
		for _, im := range s.index.Images {
			ref, err := manifests.ParseReference(im.Ref)
			if err != nil {
				return fmt.Errorf("%s: bundle.json names %q: %w", s.name, im.Ref, err)
			}
			images++
			ns := upstream(ref.Context().Registry)
			upstreams[ns] = true
			repoName := load.RepositoryPath(ref, r.opts.Prefix)
			if len(repoName) > MaxNameLength || !ValidName(repoName) {
				return fmt.Errorf("%s: %s cannot be served: %q is not a repository name a client can ask for", s.name, im.Ref, repoName)
			}
			key := nsName{ns, repoName}
			for _, rp := range []*repository{r.repo(r.byNS, key), r.repoByName(repoName)} {
				addImage(rp, im)
			}
			for _, d := range imageDigests(im) {
				if _, ok := r.blobs[d]; !ok {
					missing = append(missing, MissingBlob{Digest: d.String(), Image: im.Ref, Bundle: s.name})
				}
			}
			if tag, ok := ref.(name.Tag); ok {
				ck := claimKey{ns, repoName, tag.TagStr()}
				if _, ok := claims[ck]; !ok {
					claimOrder = append(claimOrder, ck)
				}
				claims[ck] = append(claims[ck], tagged{digest: im.Digest, mt: im.MediaType, size: im.Size, ref: im.Ref, src: s, created: s.created})
			}
		}
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].Digest < missing[j].Digest })
		return &IncompleteError{Missing: missing}
	}
	claim := func(t tagged) Claim {
		return Claim{Ref: t.ref, Digest: t.digest.String(), Bundle: t.src.name, Created: t.src.index.Created}
	}
	// Per (ns, name): the newest claim wins (claims are oldest first).
	type nameTag struct{ name, tag string }
	byNameClaims := map[nameTag][]tagged{}
	var nameOrder []nameTag
	for _, ck := range claimOrder {
		cs := claims[ck]
		win := cs[len(cs)-1]
		r.byNS[nsName{ck.ns, ck.name}].tags[ck.tag] = win
		if c, same := conflict(ck.name+":"+ck.tag, cs, claim); c != nil {
			r.summary.Conflicts = append(r.summary.Conflicts, *c)
		} else {
			r.summary.Same += same
		}
		nt := nameTag{ck.name, ck.tag}
		if _, ok := byNameClaims[nt]; !ok {
			nameOrder = append(nameOrder, nt)
		}
		byNameClaims[nt] = append(byNameClaims[nt], win)
	}
	// Without ?ns=: the newest of the upstreams' winners.
	for _, nt := range nameOrder {
		cs := byNameClaims[nt]
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].created.Before(cs[j].created) })
		r.byName[nt.name].tags[nt.tag] = cs[len(cs)-1]
		if len(cs) > 1 {
			if c, _ := conflict(nt.name+":"+nt.tag, cs, claim); c != nil {
				c.NameOnly = true
				r.summary.Conflicts = append(r.summary.Conflicts, *c)
			}
		}
	}
	for _, rp := range r.byNS {
		rp.sortTags()
	}
	for n, rp := range r.byName {
		rp.sortTags()
		r.names = append(r.names, n)
	}
	sort.Strings(r.names)

	for _, s := range r.sources {
		bs := BundleSummary{Name: s.name, Created: s.index.Created, Images: len(s.index.Images), Blobs: len(s.index.Blobs), External: len(s.index.External), Bytes: s.vr.Size()}
		if len(s.vols) > 1 || (len(s.vols) == 1 && s.vols[0].Number > 0) {
			bs.Volumes = len(s.vols)
		}
		r.summary.Bundles = append(r.summary.Bundles, bs)
	}
	r.summary.Images = images
	r.summary.Repositories = len(r.names)
	r.summary.Blobs = len(r.blobs)
	for u := range upstreams {
		r.summary.Upstreams = append(r.summary.Upstreams, u)
	}
	sort.Strings(r.summary.Upstreams)
	return nil
}

// conflict returns the Conflict among claims (oldest first, the last
// wins) when they name different images; else nil and how many claims
// repeat the winner's image.
func conflict(served string, cs []tagged, claim func(tagged) Claim) (*Conflict, int) {
	win := cs[len(cs)-1]
	c := &Conflict{Name: served, Served: claim(win)}
	same := 0
	for _, t := range cs[:len(cs)-1] {
		if t.digest == win.digest {
			same++
			continue
		}
		c.Shadowed = append(c.Shadowed, claim(t))
	}
	if len(c.Shadowed) == 0 {
		return nil, same
	}
	return c, same
}

func (r *Registry) repo(m map[nsName]*repository, k nsName) *repository {
	rp, ok := m[k]
	if !ok {
		rp = newRepository()
		m[k] = rp
	}
	return rp
}

func (r *Registry) repoByName(n string) *repository {
	rp, ok := r.byName[n]
	if !ok {
		rp = newRepository()
		r.byName[n] = rp
	}
	return rp
}

func (rp *repository) sortTags() {
	rp.tagList = rp.tagList[:0]
	for t := range rp.tags {
		rp.tagList = append(rp.tagList, t)
	}
	sort.Strings(rp.tagList)
}

// addImage adds what image im is made of to what rp serves.
func addImage(rp *repository, im tarball.Image) {
	rp.manifests[im.Digest] = true
	rp.blobs[im.Digest] = true
	for _, pm := range im.Manifests {
		rp.manifests[pm.Digest] = true
		rp.blobs[pm.Digest] = true
		rp.blobs[pm.Config] = true
		for _, l := range pm.Layers {
			rp.blobs[l] = true
		}
	}
}

// imageDigests lists every blob image im needs: its manifest or index,
// and each carried platform manifest's manifest, config and layers.
func imageDigests(im tarball.Image) []v1.Hash {
	out := []v1.Hash{im.Digest}
	for _, pm := range im.Manifests {
		if pm.Digest != im.Digest {
			out = append(out, pm.Digest)
		}
		out = append(out, pm.Config)
		out = append(out, pm.Layers...)
	}
	return out
}

// upstream names a registry as containerd's ?ns= does: docker.io for
// Docker Hub, host[:port] otherwise.
func upstream(reg name.Registry) string {
	s := reg.RegistryStr()
	if s == name.DefaultRegistry {
		return manifests.DockerHub
	}
	return s
}

// normalizeNS normalizes a ?ns= value; "" when it names no registry.
func normalizeNS(ns string) string {
	if ns == "" || len(ns) > MaxNameLength {
		return ""
	}
	reg, err := name.NewRegistry(ns, name.StrictValidation)
	if err != nil {
		return ""
	}
	if s := reg.RegistryStr(); s == "registry-1.docker.io" {
		return manifests.DockerHub
	}
	return upstream(reg)
}

// lookup returns the repository a request names: by (ns, name) when the
// request says ns and that upstream has the name, else by name.
func (r *Registry) lookup(ns, repoName string) *repository {
	if ns = normalizeNS(ns); ns != "" {
		if rp, ok := r.byNS[nsName{ns, repoName}]; ok {
			return rp
		}
	}
	return r.byName[repoName]
}
