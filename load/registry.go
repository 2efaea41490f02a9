package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Registry loads images into a registry through the OCI distribution API.
//
// Blobs are pushed as the bundle holds them (never re-compressed), so the
// registry computes the digests bundle.json records. Order: every layer and
// config (HEAD first; a blob already uploaded to another repository of the
// same registry is mounted from there), then platform manifests, then
// indexes, then the tags, so a tag never names an image with parts
// missing. Each image's reference is rewritten under the target (see
// RewriteRef).
//
// A multi-arch index is pushed only when every manifest it lists is
// loaded: CNCF distribution refuses an index whose children are missing.
// Otherwise the loaded platform manifests are pushed by digest and the tag
// names Image.Primary, whose digest is not the source index's; the image's
// Note says so.
type Registry struct {
	host     name.Registry
	prefix   string
	insecure bool
	opts     Options
	tls      *tls.Config // the host's (fetch.Access.TLSFor), or skip-verify when insecure
}

// ParseRegistrySpec parses what follows docker:// in a registry spec,
// "HOST[:PORT][/PREFIX]", for every command that names a registry: the
// host, the prefix its repositories sit under, and whether the host is one
// of insecure (reached over plain http). Errors are *SpecError.
func ParseRegistrySpec(spec string, insecure []string) (host name.Registry, prefix string, isInsecure bool, err error) {
	spec = strings.TrimSuffix(spec, "/")
	hostStr, prefix, _ := strings.Cut(spec, "/")
	if hostStr == "" {
		return name.Registry{}, "", false, &SpecError{Spec: "docker://" + spec, Reason: "no registry host"}
	}
	isInsecure = slices.Contains(insecure, hostStr)
	var nopts []name.Option
	if isInsecure {
		nopts = append(nopts, name.Insecure)
	}
	host, err = name.NewRegistry(hostStr, append(nopts, name.StrictValidation)...)
	if err != nil {
		return name.Registry{}, "", false, &SpecError{Spec: "docker://" + spec, Reason: err.Error()}
	}
	if prefix != "" {
		if _, err := name.NewRepository(hostStr+"/"+prefix+"/x", append(nopts, name.StrictValidation)...); err != nil {
			return name.Registry{}, "", false, &SpecError{Spec: "docker://" + spec, Reason: fmt.Sprintf("prefix %q: %v", prefix, err)}
		}
	}
	return host, prefix, isInsecure, nil
}

// NewRegistry makes a registry target from "HOST[:PORT][/PREFIX]".
func NewRegistry(spec string, opts Options) (*Registry, error) {
	host, prefix, insecure, err := ParseRegistrySpec(spec, opts.Insecure)
	if err != nil {
		return nil, err
	}
	r := &Registry{host: host, prefix: prefix, insecure: insecure, opts: opts}
	if r.opts.Jobs <= 0 {
		r.opts.Jobs = 4
	}
	r.opts.Access = opts.Access.WithDefaults()
	if insecure {
		r.tls = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
	} else if r.tls, err = r.opts.Access.TLSFor(host.RegistryStr()); err != nil {
		return nil, fmt.Errorf("TLS for %s: %w", host.RegistryStr(), err)
	}
	return r, nil
}

func (r *Registry) String() string {
	if r.prefix == "" {
		return "registry " + r.host.RegistryStr()
	}
	return "registry " + r.host.RegistryStr() + "/" + r.prefix
}

// RewriteRef names a bundle's reference in a registry: the source
// registry's host is dropped, the repository path is put under prefix, the
// tag or digest is kept.
//
//	docker.io/library/debian:bookworm  → HOST/PREFIX/library/debian:bookworm
//	ghcr.io/acme/api:1                 → HOST/PREFIX/acme/api:1
//	quay.io/x/y@sha256:…               → HOST/PREFIX/x/y@sha256:…
//
// With no prefix the path is kept as it is (HOST/library/debian:bookworm).
// Two sources with the same path on different registries land in the same
// repository; load them into different prefixes.
func RewriteRef(ref name.Reference, host name.Registry, prefix string) (name.Reference, error) {
	path := RepositoryPath(ref, prefix)
	var opts []name.Option
	if host.Scheme() == "http" {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(host.RegistryStr()+"/"+path, opts...)
	if err != nil {
		return nil, fmt.Errorf("naming %s in %s: %w", ref, host.RegistryStr(), err)
	}
	if d, ok := ref.(name.Digest); ok {
		return repo.Digest(d.DigestStr()), nil
	}
	return repo.Tag(ref.Identifier()), nil
}

// RepositoryPath is the repository a bundle's reference takes in a
// registry that holds it under prefix (RewriteRef's rule without the
// host): the source registry's host dropped, the path put under prefix.
// bundle serve names what it serves by the same rule.
//
//	docker.io/library/debian:bookworm, ""   → library/debian
//	ghcr.io/acme/api:1, "mirror"           → mirror/acme/api
func RepositoryPath(ref name.Reference, prefix string) string {
	path := ref.Context().RepositoryStr()
	if prefix != "" {
		path = prefix + "/" + path
	}
	return path
}

func (r *Registry) rewrite(im Chosen) (name.Reference, error) {
	ref, err := RewriteRef(im.Name, r.host, r.prefix)
	if err != nil {
		return nil, err
	}
	if r.insecure {
		// Keep the Insecure option on the repository for the transport.
		repo, err := name.NewRepository(ref.Context().Name(), name.Insecure)
		if err != nil {
			return nil, err
		}
		if d, ok := ref.(name.Digest); ok {
			return repo.Digest(d.DigestStr()), nil
		}
		return repo.Tag(ref.Identifier()), nil
	}
	return ref, nil
}

// regImage is one image on its way into the registry.
type regImage struct {
	Chosen
	ref    name.Reference // in the target
	want   v1.Hash        // what ref names once loaded
	wantMT types.MediaType
	result ImageResult
}

func (r *Registry) plan(images []Chosen) ([]*regImage, error) {
	var out []*regImage
	for _, im := range images {
		ref, err := r.rewrite(im)
		if err != nil {
			return nil, err
		}
		ri := &regImage{Chosen: im, ref: ref, want: im.Digest, wantMT: im.MediaType}
		ri.result = ImageResult{Ref: im.Ref, Target: ref.String(), Platforms: im.Platforms()}
		if !im.Complete {
			ri.want, ri.wantMT = im.Primary.Digest, im.Primary.MediaType
			ri.result.Platforms = []string{im.Primary.Platform}
			if im.Primary.MediaType == "" {
				ri.wantMT = types.DockerManifestSchema2
			}
			verb := "names"
			if !im.Tagged() {
				verb = "is"
			}
			ri.result.Note = fmt.Sprintf("the bundle loads %d of the %d platforms of index %s, and the registry refuses an index whose manifests are missing: %s %s the %s manifest %s, not the source's index digest",
				len(im.Manifests), im.IndexManifests, im.Digest, ref, verb, im.Primary.Platform, im.Primary.Digest)
			if len(im.Manifests) > 1 {
				var others []string
				for _, m := range im.Manifests {
					if m.Digest != im.Primary.Digest {
						others = append(others, m.Platform+" "+ref.Context().Digest(m.Digest.String()).String())
					}
				}
				ri.result.Note += "; the other platforms are pushed by digest: " + strings.Join(others, ", ")
			}
			if !im.Tagged() {
				// A digest reference names the index; in the target it
				// names the primary manifest.
				ri.ref = ref.Context().Digest(im.Primary.Digest.String())
				ri.result.Target = ri.ref.String()
			}
		}
		ri.result.Digest = ri.want
		out = append(out, ri)
	}
	return out, nil
}

// Check says which images the registry holds under their rewritten
// references, and how many of the others' blobs it lacks.
func (r *Registry) Check(ctx context.Context, b *Bundle, images []Chosen) (*Result, error) {
	plan, err := r.plan(images)
	if err != nil {
		return nil, err
	}
	s := r.newSession(ctx, b, nil, false)
	res := &Result{Target: r.String()}
	checked := map[string]bool{}
	missing := map[v1.Hash]bool{} // counted once, however many repositories lack it
	for _, ri := range plan {
		have, err := s.headManifest(ctx, ri.ref)
		if err != nil {
			return nil, err
		}
		ri.result.Status = StatusMissing
		if have == ri.want {
			ri.result.Status = StatusPresent
		} else if have != (v1.Hash{}) {
			ri.result.Replaces = have.String()
		}
		if ri.result.Status == StatusMissing {
			for _, d := range ri.Blobs() {
				key := ri.ref.Context().String() + "@" + d.String()
				if checked[key] {
					continue
				}
				checked[key] = true
				ok, err := s.headBlob(ctx, ri.ref.Context(), d)
				if err != nil {
					return nil, err
				}
				switch {
				case ok:
					res.BlobsPresent++
				case !missing[d]:
					missing[d] = true
					res.BlobsSent++
					res.BytesSent += blobSize(b, d)
				}
			}
		}
		res.Images = append(res.Images, ri.result)
	}
	return res, nil
}

// Holds asks, for each image, whether its rewritten reference names the
// bundle's digest (a manifest HEAD each, Jobs at a time).
func (r *Registry) Holds(ctx context.Context, b *Bundle, images []Chosen) ([]bool, error) {
	plan, err := r.plan(images)
	if err != nil {
		return nil, err
	}
	s := r.newSession(ctx, b, nil, false)
	out := make([]bool, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, r.opts.Jobs))
	for i, ri := range plan {
		g.Go(func() error {
			have, err := s.headManifest(gctx, ri.ref)
			out[i] = err == nil && have == ri.want
			return err
		})
	}
	return out, g.Wait()
}

func blobSize(b *Bundle, d v1.Hash) int64 {
	if bl, ok := b.Index.Blobs[d]; ok {
		return bl.Size
	}
	return b.Index.External[d].Size
}

// repoBlob is one blob that one repository needs.
type repoBlob struct {
	repo name.Repository
	d    v1.Hash
}

// Load pushes the images the registry does not hold under their rewritten
// references.
func (r *Registry) Load(ctx context.Context, b *Bundle, images []Chosen, p Progress) (*Result, error) {
	p = orNop(p)
	plan, err := r.plan(images)
	if err != nil {
		return nil, err
	}
	extFrom, err := r.checkExternalFirst(ctx, b, images) // external.go
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := r.newSession(ctx, b, p, true)
	s.useExternal(extFrom)

	// What each repository needs, and from where a blob can be mounted: the
	// first repository that needs it.
	var todo []*regImage
	var blobsByDigest = map[v1.Hash][]name.Repository{}
	var order []v1.Hash
	seenRB := map[repoBlob]bool{}
	var planBytes int64
	for _, ri := range plan {
		for _, d := range ri.Blobs() {
			rb := repoBlob{ri.ref.Context(), d}
			if seenRB[rb] {
				continue
			}
			seenRB[rb] = true
			if _, ok := blobsByDigest[d]; !ok {
				order = append(order, d)
			}
			blobsByDigest[d] = append(blobsByDigest[d], rb.repo)
		}
	}
	for _, d := range order {
		repos := blobsByDigest[d]
		for _, repo := range repos[1:] {
			if !slices.ContainsFunc(s.mountFrom[repo.String()], func(x name.Repository) bool { return x.String() == repos[0].String() }) {
				s.mountFrom[repo.String()] = append(s.mountFrom[repo.String()], repos[0])
			}
		}
	}

	// Skip the images whose reference names what it would name after the
	// load already.
	res := &Result{Target: r.String()}
	for _, ri := range plan {
		have, err := s.headManifest(ctx, ri.ref)
		if err != nil {
			return nil, err
		}
		if have == ri.want {
			ri.result.Status = StatusSkipped
			p.Done(ri.result)
			continue
		}
		if have != (v1.Hash{}) {
			ri.result.Replaces = have.String()
		}
		todo = append(todo, ri)
	}
	// Only the blobs of images to load.
	need := map[repoBlob]bool{}
	for _, ri := range todo {
		for _, d := range ri.Blobs() {
			need[repoBlob{ri.ref.Context(), d}] = true
		}
	}
	var nblobs int
	for _, d := range order {
		var keep []name.Repository
		for _, repo := range blobsByDigest[d] {
			if need[repoBlob{repo, d}] {
				keep = append(keep, repo)
			}
		}
		blobsByDigest[d] = keep
		if len(keep) > 0 {
			nblobs++
			planBytes += blobSize(b, d)
		}
	}
	p.Planned(len(todo), nblobs, planBytes)

	// The images each blob is part of, to name them in an error.
	users := map[v1.Hash][]string{}
	for _, ri := range todo {
		for _, d := range ri.Blobs() {
			if !slices.Contains(users[d], ri.Ref) {
				users[d] = append(users[d], ri.Ref)
			}
		}
	}

	// 1. Blobs, each digest on one worker: its repositories in turn, the
	// first receiving the bytes, the others mounting from it.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Jobs)
	for _, d := range order {
		repos := blobsByDigest[d]
		if len(repos) == 0 {
			continue
		}
		g.Go(func() error { return imageError(users[d], s.pushBlob(gctx, d, repos)) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// 2. Platform manifests, 3. indexes: each after its children.
	type put struct {
		ref    name.Reference
		d      v1.Hash
		mt     types.MediaType
		images []string // the images it is part of
	}
	var mans, idxs []*put
	seenPut := map[string]*put{}
	add := func(list *[]*put, ref name.Reference, d v1.Hash, mt types.MediaType, image string) {
		pt := seenPut[ref.String()]
		if pt == nil {
			pt = &put{ref: ref, d: d, mt: mt}
			seenPut[ref.String()] = pt
			*list = append(*list, pt)
		}
		if !slices.Contains(pt.images, image) {
			pt.images = append(pt.images, image)
		}
	}
	for _, ri := range todo {
		repo := ri.ref.Context()
		for _, m := range ri.Manifests {
			add(&mans, repo.Digest(m.Digest.String()), m.Digest, orMT(m.MediaType, b, m.Digest), ri.Ref)
		}
		if ri.MediaType.IsIndex() && ri.Complete {
			add(&idxs, repo.Digest(ri.Digest.String()), ri.Digest, ri.MediaType, ri.Ref)
		}
	}
	for _, batch := range [][]*put{mans, idxs} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(r.opts.Jobs)
		for _, pt := range batch {
			g.Go(func() error {
				have, err := s.headManifest(gctx, pt.ref)
				if err != nil || have == pt.d {
					return imageError(pt.images, err)
				}
				return imageError(pt.images, s.putManifest(gctx, pt.ref, pt.d, pt.mt))
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}

	// 4. The tags, last.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Jobs)
	for _, ri := range todo {
		g.Go(func() error {
			if _, isTag := ri.ref.(name.Tag); isTag {
				if err := s.putManifest(gctx, ri.ref, ri.want, ri.wantMT); err != nil {
					return err
				}
			}
			ri.result.Status = StatusLoaded
			p.Done(ri.result)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	for _, ri := range plan {
		res.Images = append(res.Images, ri.result)
	}
	res.BlobsSent = int(s.blobsSent.Load())
	res.BlobsPresent = int(s.blobsPresent.Load())
	res.BlobsMounted = int(s.blobsMounted.Load())
	res.ManifestsSent = int(s.manifestsSent.Load())
	res.BytesSent = s.bytesSent.Load()
	return res, nil
}

// imageError says which images (as the bundle names them) a failed blob
// or manifest is part of. It returns nil for a nil err, and err itself when
// the run was cancelled (a sibling failed first: its error is the one
// reported).
func imageError(images []string, err error) error {
	if err == nil || len(images) == 0 || errors.Is(err, context.Canceled) {
		return err
	}
	what := "image "
	if len(images) > 1 {
		what = "images "
	}
	return fmt.Errorf("%s%s: %w", what, strings.Join(images, ", "), err)
}
