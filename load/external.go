package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A delta bundle (bundle create --have/--base) lists under bundle.json's
// "external" the layers it references but does not carry: the target must
// hold them already. Before a registry or an OCI layout receives anything,
// CheckExternal makes sure it does; a docker daemon is refused (see
// DeltaToDaemonError).

// ExternalNeeds returns, for each external blob the images use, the
// references that use it; nil when the images need none (a delta bundle
// whose selected images are all carried loads anywhere).
func ExternalNeeds(b *Bundle, images []Chosen) map[v1.Hash][]string {
	var out map[v1.Hash][]string
	for _, im := range images {
		for _, d := range im.Blobs() {
			if b.Has(d) {
				continue
			}
			if _, ext := b.Index.External[d]; !ext {
				continue
			}
			if out == nil {
				out = map[v1.Hash][]string{}
			}
			out[d] = append(out[d], im.Ref)
		}
	}
	return out
}

// MissingBlob is an external blob that the target lacks.
type MissingBlob struct {
	Digest v1.Hash `json:"digest"`
	Size   int64   `json:"size"`
	// Where names where it was looked for: a repository, a directory.
	Where  string   `json:"where"`
	Images []string `json:"images"`
}

// MissingExternalError says the target lacks blobs that a delta bundle
// does not carry; nothing was loaded.
type MissingExternalError struct {
	Target string
	Blobs  []MissingBlob
}

func (e *MissingExternalError) Error() string {
	var bytes int64
	seen := map[v1.Hash]bool{}
	where := map[string]bool{}
	for _, m := range e.Blobs {
		where[m.Where] = true
		if !seen[m.Digest] {
			seen[m.Digest] = true
			bytes += m.Size
		}
	}
	n := len(seen)
	in := ""
	if len(where) > 1 {
		in = fmt.Sprintf(" in %d repositories", len(where))
	}
	first := ""
	if len(e.Blobs) > 0 {
		first = fmt.Sprintf(": %s (%d bytes, used by %s)", e.Blobs[0].Digest, e.Blobs[0].Size, strings.Join(e.Blobs[0].Images, ", "))
		if len(e.Blobs) > 1 {
			first += " and more"
		}
	}
	return fmt.Sprintf("%s lacks %d %s (%d bytes)%s that this delta bundle does not carry; nothing was loaded%s", e.Target, n, plural(n, "blob", "blobs"), bytes, in, first)
}

// DeltaToDaemonError refuses to load a delta bundle's images that need
// external layers into a docker daemon.
type DeltaToDaemonError struct {
	Target string
	Blobs  int // external blobs the images need
	Images []string
}

func (e *DeltaToDaemonError) Error() string {
	return fmt.Sprintf("%s cannot load a delta bundle: %s %s %d %s the bundle does not carry, and docker load takes only whole images (a layer it lacks in the tar is an error, and bundle cannot see which layers the daemon holds by their registry digests)",
		e.Target, strings.Join(e.Images, ", "), plural(len(e.Images), "needs", "need"), e.Blobs, plural(e.Blobs, "layer", "layers"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ExternalChecker is a target that can tell which external blobs of a
// delta bundle it lacks. Registry and Layout are.
type ExternalChecker interface {
	MissingExternal(ctx context.Context, b *Bundle, images []Chosen) ([]MissingBlob, error)
}

// CheckExternal makes sure the target holds every external blob the
// images need, writing nothing: a *MissingExternalError lists those it
// lacks, a *DeltaToDaemonError refuses a docker daemon.
func CheckExternal(ctx context.Context, t Target, b *Bundle, images []Chosen) error {
	needs := ExternalNeeds(b, images)
	if len(needs) == 0 {
		return nil
	}
	ec, ok := t.(ExternalChecker)
	if !ok {
		seen := map[string]bool{}
		var refs []string
		for _, rs := range needs {
			for _, r := range rs {
				if !seen[r] {
					seen[r] = true
					refs = append(refs, r)
				}
			}
		}
		sort.Strings(refs)
		return &DeltaToDaemonError{Target: t.String(), Blobs: len(needs), Images: refs}
	}
	missing, err := ec.MissingExternal(ctx, b, images)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingExternalError{Target: t.String(), Blobs: missing}
	}
	return nil
}

func sortMissing(m []MissingBlob) {
	sort.Slice(m, func(i, j int) bool {
		if m[i].Where != m[j].Where {
			return m[i].Where < m[j].Where
		}
		return m[i].Digest.String() < m[j].Digest.String()
	})
}

// MissingExternal stats each external blob the images need in the
// layout's blobs/sha256 (the size must match; its bytes are hashed when
// the load reaches it, as every blob already there is).
func (l *Layout) MissingExternal(ctx context.Context, b *Bundle, images []Chosen) ([]MissingBlob, error) {
	var out []MissingBlob
	root, err := l.openRoot()
	if err != nil {
		return nil, err
	}
	if root != nil {
		defer root.Close()
	}
	for d, refs := range ExternalNeeds(b, images) {
		size := b.Index.External[d].Size
		ok, err := statBlob(root, d, size)
		if err != nil {
			return nil, fmt.Errorf("checking blob %s: %w", d, err)
		}
		if ok {
			continue
		}
		out = append(out, MissingBlob{Digest: d, Size: size, Where: l.dir, Images: refs})
	}
	sortMissing(out)
	return out, nil
}

// MissingExternal checks (HEAD) that each repository an image goes to
// has the external blobs it needs, or that another repository of this load
// has it to mount from.
func (r *Registry) MissingExternal(ctx context.Context, b *Bundle, images []Chosen) ([]MissingBlob, error) {
	_, missing, err := r.externalSources(ctx, b, images)
	return missing, err
}

// externalSources finds, for each (repository, external blob) that the
// images need, whether the repository has the blob or which repository of
// this load to mount it from; what is found nowhere is missing.
func (r *Registry) externalSources(ctx context.Context, b *Bundle, images []Chosen) (map[repoBlob]name.Repository, []MissingBlob, error) {
	needs := ExternalNeeds(b, images)
	if len(needs) == 0 {
		return nil, nil, nil
	}
	plan, err := r.plan(images)
	if err != nil {
		return nil, nil, err
	}
	s := r.newSession(ctx, b, nil, false)
	var repos []name.Repository
	seenRepo := map[string]bool{}
	wanted := map[repoBlob][]string{}
	var order []repoBlob
	for _, ri := range plan {
		repo := ri.ref.Context()
		if !seenRepo[repo.String()] {
			seenRepo[repo.String()] = true
			repos = append(repos, repo)
		}
		for _, d := range ri.Blobs() {
			if _, ext := needs[d]; !ext {
				continue
			}
			rb := repoBlob{repo, d}
			if _, ok := wanted[rb]; !ok {
				order = append(order, rb)
			}
			wanted[rb] = append(wanted[rb], ri.Ref)
		}
	}
	has := map[repoBlob]bool{}
	head := func(rb repoBlob) (bool, error) {
		if ok, done := has[rb]; done {
			return ok, nil
		}
		ok, err := s.headBlob(ctx, rb.repo, rb.d)
		if err != nil {
			return false, err
		}
		has[rb] = ok
		return ok, nil
	}
	from := map[repoBlob]name.Repository{}
	var missing []MissingBlob
	for _, rb := range order {
		ok, err := head(rb)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			continue
		}
		found := false
		for _, other := range repos {
			if other.String() == rb.repo.String() {
				continue
			}
			ok, err := head(repoBlob{other, rb.d})
			if err != nil {
				return nil, nil, err
			}
			if ok {
				from[rb] = other
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, MissingBlob{Digest: rb.d, Size: b.Index.External[rb.d].Size, Where: rb.repo.String(), Images: wanted[rb]})
		}
	}
	sortMissing(missing)
	return from, missing, nil
}

// externalLayer is an external blob as a v1.Layer for a mount: a registry
// that does not mount it asks for its bytes, which the bundle lacks.
type externalLayer struct {
	d    v1.Hash
	size int64
	mt   types.MediaType
	repo string
}

func (l *externalLayer) Digest() (v1.Hash, error) { return l.d, nil }
func (l *externalLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("an external blob has no diffID here")
}
func (l *externalLayer) Size() (int64, error) { return l.size, nil }
func (l *externalLayer) MediaType() (types.MediaType, error) {
	if l.mt == "" {
		return types.OCILayer, nil
	}
	return l.mt, nil
}

// errNotMounted is wrapped by the error of a mount the registry did not
// make; it is not worth retrying.
var errNotMounted = errors.New("the registry did not mount it")

func (l *externalLayer) Compressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("blob %s is not in the bundle (a delta bundle's external blob): %w from %s", l.d, errNotMounted, l.repo)
}
func (l *externalLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// checkExternalFirst runs before a registry load writes anything: it
// refuses a delta bundle whose external blobs the registry lacks, and
// returns where to mount those that are in another repository.
func (r *Registry) checkExternalFirst(ctx context.Context, b *Bundle, images []Chosen) (map[repoBlob]name.Repository, error) {
	from, missing, err := r.externalSources(ctx, b, images)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, &MissingExternalError{Target: r.String(), Blobs: missing}
	}
	return from, nil
}

// useExternal tells the session where to mount external blobs from (and
// asks for pull scope there).
func (s *session) useExternal(from map[repoBlob]name.Repository) {
	s.extFrom = from
	for rb, q := range from {
		key := rb.repo.String()
		dup := false
		for _, x := range s.mountFrom[key] {
			dup = dup || x.String() == q.String()
		}
		if !dup {
			s.mountFrom[key] = append(s.mountFrom[key], q)
		}
	}
}

// mountExternal makes an external blob present in repo by mounting it from
// have (a repository of this load that received or holds it) or from where
// checkExternalFirst found it.
func (s *session) mountExternal(ctx context.Context, d v1.Hash, repo name.Repository, have *name.Repository) error {
	src := have
	if src == nil {
		if q, ok := s.extFrom[repoBlob{repo, d}]; ok {
			src = &q
		}
	}
	if src == nil {
		return fmt.Errorf("blob %s is not in the bundle (a delta bundle's external blob) and %s lacks it: load the bundle it was made against first", d, repo)
	}
	e := s.b.Index.External[d]
	l := &remote.MountableLayer{Layer: &externalLayer{d: d, size: e.Size, mt: e.MediaType, repo: src.String()}, Reference: src.Digest(d.String())}
	if err := s.retry(ctx, fmt.Sprintf("mounting blob %s into %s from %s", d, repo, src), func() error {
		c, err := s.conn(repo)
		if err != nil {
			return err
		}
		return c.pusher.Upload(ctx, repo, l)
	}); err != nil {
		return err
	}
	s.blobsMounted.Add(1)
	return nil
}
