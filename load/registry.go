package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
}

// NewRegistry makes a registry target from "HOST[:PORT][/PREFIX]".
func NewRegistry(spec string, opts Options) (*Registry, error) {
	spec = strings.TrimSuffix(spec, "/")
	hostStr, prefix, _ := strings.Cut(spec, "/")
	if hostStr == "" {
		return nil, &SpecError{Spec: "docker://" + spec, Reason: "no registry host"}
	}
	r := &Registry{prefix: prefix, insecure: slices.Contains(opts.Insecure, hostStr), opts: opts}
	var nopts []name.Option
	if r.insecure {
		nopts = append(nopts, name.Insecure)
	}
	host, err := name.NewRegistry(hostStr, append(nopts, name.StrictValidation)...)
	if err != nil {
		return nil, &SpecError{Spec: "docker://" + spec, Reason: err.Error()}
	}
	r.host = host
	if prefix != "" {
		if _, err := name.NewRepository(hostStr+"/"+prefix+"/x", append(nopts, name.StrictValidation)...); err != nil {
			return nil, &SpecError{Spec: "docker://" + spec, Reason: fmt.Sprintf("prefix %q: %v", prefix, err)}
		}
	}
	if r.opts.Jobs <= 0 {
		r.opts.Jobs = 4
	}
	if r.opts.Keychain == nil {
		r.opts.Keychain = authn.DefaultKeychain
	}
	if r.opts.Retry.Attempts <= 0 {
		r.opts.Retry = fetch.DefaultRetryPolicy
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
	path := ref.Context().RepositoryStr()
	if prefix != "" {
		path = prefix + "/" + path
	}
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

func (r *Registry) rewrite(im Image) (name.Reference, error) {
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
	Image
	ref    name.Reference // in the target
	want   v1.Hash        // what ref names once loaded
	wantMT types.MediaType
	result ImageResult
}

func (r *Registry) plan(images []Image) ([]*regImage, error) {
	var out []*regImage
	for _, im := range images {
		ref, err := r.rewrite(im)
		if err != nil {
			return nil, err
		}
		ri := &regImage{Image: im, ref: ref, want: im.Digest, wantMT: im.MediaType}
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

// session is one Check or Load: its connections and counters.
type session struct {
	r     *Registry
	ctx   context.Context
	p     Progress
	b     *Bundle
	base  http.RoundTripper
	write bool
	// extra pull scopes per repository (the repositories blobs are mounted
	// from)
	mountFrom map[string][]name.Repository
	// where to mount a delta bundle's external blobs from, for the
	// repositories that lack them (external.go)
	extFrom map[repoBlob]name.Repository

	mu    sync.Mutex
	conns map[string]*conn

	blobsSent, blobsPresent, blobsMounted, manifestsSent atomic.Int64
	bytesSent                                            atomic.Int64
}

type conn struct {
	once   sync.Once
	repo   name.Repository
	rt     http.RoundTripper
	client *http.Client
	pusher *remote.Pusher
	err    error
}

func (r *Registry) newSession(ctx context.Context, b *Bundle, p Progress, write bool) *session {
	if p == nil {
		p = r.opts.Progress
	}
	s := &session{r: r, ctx: ctx, p: orNop(p), b: b, write: write, conns: map[string]*conn{}, mountFrom: map[string][]name.Repository{}}
	s.base = noReplay{fetch.NewRetryTransport(r.opts.Retry, r.insecure, s.p.Retry)}
	return s
}

// noReplay keeps the retrying transport from sending a blob upload's PATCH
// again: a PATCH cut short may have left part of its body in the upload
// session, and the same bytes sent again would be appended after it. A
// failed PATCH fails the upload, which session.retry starts again with a
// new session.
type noReplay struct{ inner http.RoundTripper }

func (n noReplay) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && r.GetBody != nil {
		r = r.Clone(r.Context())
		r.GetBody = nil
	}
	return n.inner.RoundTrip(r)
}

// conn returns the authenticated connection to repo, made once: one token
// per repository, with push scope when loading (and pull scope on the
// repositories it mounts from).
func (s *session) conn(repo name.Repository) (*conn, error) {
	s.mu.Lock()
	c, ok := s.conns[repo.String()]
	if !ok {
		c = &conn{repo: repo}
		s.conns[repo.String()] = c
	}
	s.mu.Unlock()
	c.once.Do(func() {
		auth, err := authn.Resolve(s.ctx, s.r.opts.Keychain, repo)
		if err != nil {
			c.err = fmt.Errorf("finding credentials for %s: %w", repo.RegistryStr(), err)
			return
		}
		scopes := []string{repo.Scope(transport.PullScope)}
		if s.write {
			scopes = []string{repo.Scope(transport.PushScope)}
			for _, from := range s.mountFrom[repo.String()] {
				scopes = append(scopes, from.Scope(transport.PullScope))
			}
		}
		c.rt, err = transport.NewWithContext(s.ctx, repo.Registry, auth, s.base, scopes)
		if err != nil {
			c.err = fmt.Errorf("connecting to %s: %w", repo.RegistryStr(), describe(err))
			return
		}
		c.client = &http.Client{Transport: c.rt}
		c.pusher, err = remote.NewPusher(remote.WithTransport(c.rt),
			remote.WithRetryPredicate(func(error) bool { return false }), // retries are ours
			remote.WithJobs(s.r.opts.Jobs))
		if err != nil {
			c.err = err
		}
	})
	return c, c.err
}

// Ping checks that the registry answers (GET /v2/, and the token
// handshake it asks for).
func (r *Registry) Ping(ctx context.Context) error {
	auth, err := authn.Resolve(ctx, r.opts.Keychain, r.host)
	if err != nil {
		return fmt.Errorf("finding credentials for %s: %w", r.host.RegistryStr(), err)
	}
	var notify func(string, int, string, time.Duration)
	if r.opts.Progress != nil {
		notify = r.opts.Progress.Retry
	}
	base := fetch.NewRetryTransport(fetch.RetryPolicy{Attempts: 2, Base: r.opts.Retry.Base, Max: r.opts.Retry.Max}, r.insecure, notify)
	if _, err := transport.NewWithContext(ctx, r.host, auth, base, nil); err != nil {
		return fmt.Errorf("connecting to %s: %w", r.host.RegistryStr(), describe(err))
	}
	return nil
}

// headBlob reports whether repo has blob d.
func (s *session) headBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	c, err := s.conn(repo)
	if err != nil {
		return false, err
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + d.String()}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("checking blob %s in %s: %w", d, repo, err)
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusNotFound); err != nil {
		return false, fmt.Errorf("checking blob %s in %s: %w", d, repo, describe(err))
	}
	return resp.StatusCode == http.StatusOK, nil
}

// headManifest returns the digest ref names in the registry, or a zero
// hash when it names nothing.
func (s *session) headManifest(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	c, err := s.conn(ref.Context())
	if err != nil {
		return v1.Hash{}, err
	}
	desc, err := remote.Head(ref, remote.WithTransport(c.rt), remote.WithContext(ctx))
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return v1.Hash{}, nil
		}
		return v1.Hash{}, fmt.Errorf("checking %s: %w", ref, describe(err))
	}
	return desc.Digest, nil
}

// Check says which images the registry holds under their rewritten
// references, and how many of the others' blobs it lacks.
func (r *Registry) Check(ctx context.Context, b *Bundle, images []Image) (*Result, error) {
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
func (r *Registry) Holds(ctx context.Context, b *Bundle, images []Image) ([]bool, error) {
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
func (r *Registry) Load(ctx context.Context, b *Bundle, images []Image, p Progress) (*Result, error) {
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

func orMT(mt types.MediaType, b *Bundle, d v1.Hash) types.MediaType {
	if mt != "" {
		return mt
	}
	if bl, ok := b.Index.Blobs[d]; ok && bl.MediaType != "" {
		return bl.MediaType
	}
	return types.DockerManifestSchema2
}

// pushBlob makes blob d present in every one of repos.
func (s *session) pushBlob(ctx context.Context, d v1.Hash, repos []name.Repository) error {
	var have *name.Repository
	for _, repo := range repos {
		ok, err := s.headBlob(ctx, repo, d)
		if err != nil {
			return err
		}
		if ok {
			s.blobsPresent.Add(1)
			have = &repo
			continue
		}
		if !s.b.Has(d) {
			if err := s.mountExternal(ctx, d, repo, have); err != nil {
				return err
			}
			have = &repo
			continue
		}
		bl := s.b.Index.Blobs[d]
		layer := &bundleLayer{b: s.b, d: d, size: s.b.Size(d), mt: bl.MediaType, diffID: bl.DiffID, s: s}
		var l v1.Layer = layer
		if have != nil {
			l = &remote.MountableLayer{Layer: layer, Reference: have.Digest(d.String())}
		}
		if err := s.retry(ctx, fmt.Sprintf("uploading blob %s to %s", d, repo), func() error {
			c, err := s.conn(repo)
			if err != nil {
				return err
			}
			layer.opened.Store(false)
			return c.pusher.Upload(ctx, repo, l)
		}); err != nil {
			return err
		}
		switch {
		case layer.opened.Load():
			s.blobsSent.Add(1)
		case have != nil:
			s.blobsMounted.Add(1)
		default:
			s.blobsPresent.Add(1)
		}
		have = &repo
	}
	return nil
}

// putManifest PUTs manifest d (read from the bundle, as it is) under ref.
func (s *session) putManifest(ctx context.Context, ref name.Reference, d v1.Hash, mt types.MediaType) error {
	raw, err := s.b.ReadBlob(d, tarball.MaxManifestSize)
	if err != nil {
		return err
	}
	return s.retry(ctx, fmt.Sprintf("pushing manifest %s to %s", d, ref), func() error {
		c, err := s.conn(ref.Context())
		if err != nil {
			return err
		}
		if err := c.pusher.Put(ctx, ref, rawManifest{raw: raw, mt: mt}); err != nil {
			return err
		}
		s.manifestsSent.Add(1)
		return nil
	})
}

// retry runs f until it succeeds, fails for good, or the policy's attempts
// are spent. The transport retries single requests; this retries whole
// operations (an upload whose session broke).
func (s *session) retry(ctx context.Context, what string, f func() error) error {
	policy := s.r.opts.Retry
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ce *ChangedError
		if errors.As(err, &ce) {
			return err
		}
		if attempt+1 >= policy.Attempts || !retryable(err) {
			return fmt.Errorf("%s: %w", what, describe(err))
		}
		d := policy.Backoff(attempt)
		s.p.Retry(what, attempt+1, oneLine(describe(err).Error()), d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// retryable says whether an operation that failed with err is worth
// another try: connection trouble and server errors, not refusals.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNotMounted) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode >= 500, te.StatusCode == http.StatusTooManyRequests,
			te.StatusCode == http.StatusRequestTimeout, te.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			return true
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.BlobUploadInvalidErrorCode, transport.BlobUploadUnknownErrorCode,
				transport.DigestInvalidErrorCode, transport.SizeInvalidErrorCode:
				// The upload went wrong on the way (our bytes were
				// checked): a new upload may well succeed.
				return true
			}
		}
		return false
	}
	return true // network errors and broken bodies
}

// describe turns go-containerregistry's transport errors, and the
// net/http errors of requests that got no answer, into one line: the
// method, the URL without its query (an upload URL's query is a long
// opaque state token), and what went wrong.
func describe(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Err != nil {
			u, _, _ := strings.Cut(ue.URL, "?")
			return &registryError{msg: strings.ToUpper(ue.Op) + " " + u + ": " + ue.Err.Error(), err: err}
		}
		return err
	}
	msg := fetch.RegistryMessage(te)
	if te.Request != nil {
		u := te.Request.URL.String()
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		msg = te.Request.Method + " " + u + ": " + msg
	}
	switch te.StatusCode {
	case http.StatusUnauthorized:
		msg = "authentication failed (check docker login / DOCKER_CONFIG): " + msg
	case http.StatusForbidden:
		msg = "access denied: " + msg
	}
	return &registryError{msg: msg, err: te}
}

type registryError struct {
	msg string
	err error // a *transport.Error or a *url.Error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// rawManifest is a manifest or index pushed as the bundle holds it.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// bundleLayer is a blob of the bundle as a v1.Layer: Compressed returns the
// bundle's bytes as they are (whatever the blob is: a layer or a config),
// checked against the digest as they are read.
type bundleLayer struct {
	b      *Bundle
	d      v1.Hash
	size   int64
	mt     types.MediaType
	diffID *v1.Hash
	s      *session
	opened atomic.Bool
}

func (l *bundleLayer) Digest() (v1.Hash, error) { return l.d, nil }
func (l *bundleLayer) DiffID() (v1.Hash, error) {
	if l.diffID == nil {
		return v1.Hash{}, fmt.Errorf("blob %s has no diffID in bundle.json", l.d)
	}
	return *l.diffID, nil
}
func (l *bundleLayer) Size() (int64, error) { return l.size, nil }
func (l *bundleLayer) MediaType() (types.MediaType, error) {
	if l.mt == "" {
		return types.OCILayer, nil
	}
	return l.mt, nil
}
func (l *bundleLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("bundle load sends blobs as they are; it never decompresses them")
}
func (l *bundleLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.b.OpenBlob(l.d)
	if err != nil {
		return nil, err
	}
	l.opened.Store(true)
	return &countingReader{rc: rc, fn: func(n int64) {
		l.s.bytesSent.Add(n)
		l.s.p.Sent(n)
	}}, nil
}

type countingReader struct {
	rc io.ReadCloser
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }
