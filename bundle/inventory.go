package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/verify"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// InventoryOptions are the inputs of TakeInventory.
type InventoryOptions struct {
	// From is what to list: docker://HOST[:PORT][/PREFIX] (a registry: the
	// repositories under PREFIX), oci:DIR (an OCI image layout), or a
	// bundle (a file, a split bundle's volume or base name, a glob).
	From string
	// File, for a registry, names the repositories to walk instead of the
	// catalog: those of this manifest file, under PREFIX as bundle load
	// puts them (load.RewriteRef).
	File string
	// Access and Jobs configure a registry walk: how the registry is
	// reached (zero values mean fetch's defaults), how many repositories
	// are walked at once.
	fetch.Access
	Jobs int
	// Created is the inventory's created time (SOURCE_DATE_EPOCH); zero
	// means now.
	Created time.Time
}

// InventoryStats says what TakeInventory walked.
type InventoryStats struct {
	Repositories int `json:"repositories,omitempty"`
	Tags         int `json:"tags,omitempty"`
	Manifests    int `json:"manifests,omitempty"`
	Blobs        int `json:"blobs"`
}

// TakeInventory lists the blobs that From holds, by digest and size: what
// a delta bundle (create --have) may leave out.
//
// A registry has no API that lists blobs, so its inventory is the blobs
// its manifests reference: every tag of every repository under PREFIX (from
// the catalog, or the repositories of File), each index and manifest, each
// config and layer. An OCI layout's is every file of blobs/sha256 (sizes
// from the directory, not hashed: a load hashes every blob it relies on).
// A bundle's is what its bundle.json lists as carried or external.
func TakeInventory(ctx context.Context, opts InventoryOptions) (*Inventory, *InventoryStats, error) {
	inv := &Inventory{SchemaVersion: 1, Kind: InventoryKind, From: opts.From, Blobs: map[v1.Hash]int64{}}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	inv.Created = created.UTC().Format(time.RFC3339)
	st := &InventoryStats{}
	if opts.File != "" && !strings.HasPrefix(opts.From, "docker://") {
		return nil, nil, errors.New("-f names the repositories to walk in a registry; it goes with --from docker://HOST")
	}
	var err error
	switch {
	case strings.HasPrefix(opts.From, "docker://"):
		err = registryInventory(ctx, opts, inv, st)
	case strings.HasPrefix(opts.From, "oci:"):
		err = layoutInventory(strings.TrimPrefix(opts.From, "oci:"), inv)
	case opts.From == "docker" || opts.From == "docker-daemon":
		err = errors.New("a docker daemon keeps no registry digests of its layers to list; take the inventory of the registry or OCI layout that the images were loaded into, or use --base with the last bundle loaded")
	default:
		var idx *indexBlobs
		idx, err = bundleInventory(opts.From)
		if err == nil {
			for d, n := range idx.blobs {
				inv.Blobs[d] = n
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	st.Blobs = len(inv.Blobs)
	return inv, st, nil
}

type indexBlobs struct{ blobs map[v1.Hash]int64 }

func bundleInventory(path string) (*indexBlobs, error) {
	idx, bname, err := ReadBundleIndex(path)
	if err != nil {
		return nil, err
	}
	// What a load of it would refuse is no inventory of a target.
	if err := verify.ReferenceError(idx); err != nil {
		return nil, fmt.Errorf("%s: %w", bname, err)
	}
	out := &indexBlobs{blobs: map[v1.Hash]int64{}}
	for d, b := range idx.Blobs {
		out.blobs[d] = b.Size
	}
	for d, b := range idx.External {
		out.blobs[d] = b.Size
	}
	return out, nil
}

func layoutInventory(dir string, inv *Inventory) error {
	if dir == "" {
		return errors.New("oci: needs a directory (oci:DIR)")
	}
	// Through the layout's root: a blobs/sha256 link out of it is refused.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	defer root.Close()
	if _, err := root.Lstat("oci-layout"); err != nil {
		return fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	var ents []os.DirEntry
	d, err := root.Open("blobs/sha256")
	if err == nil {
		ents, err = d.ReadDir(-1)
		d.Close()
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("listing %s: %w", dir, safefs.Explain(root, "blobs/sha256", err))
	}
	for _, e := range ents {
		h, err := v1.NewHash("sha256:" + e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue // temp files of a load under way, strays
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		inv.Blobs[h] = fi.Size()
	}
	return nil
}

// registryInventory walks the repositories of a registry.
func registryInventory(ctx context.Context, opts InventoryOptions, inv *Inventory, st *InventoryStats) error {
	reg, prefix, insecure, err := load.ParseRegistrySpec(strings.TrimPrefix(opts.From, "docker://"), opts.Insecure)
	if err != nil {
		var se *load.SpecError
		if errors.As(err, &se) {
			return fmt.Errorf("--from %s: %s", opts.From, se.Reason)
		}
		return err
	}
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs()
	}
	ropts, err := opts.Access.RemoteOptions(ctx, reg.RegistryStr(), insecure)
	if err != nil {
		return err
	}

	var repos []string
	if opts.File != "" {
		spec, err := manifests.Load(opts.File)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, e := range spec.Images {
			p := e.Repository.RepositoryStr()
			if prefix != "" {
				p = prefix + "/" + p
			}
			if !seen[p] {
				seen[p] = true
				repos = append(repos, p)
			}
		}
	} else {
		all, err := fetch.Catalog(ctx, reg, ropts...)
		if err != nil {
			return fmt.Errorf("listing the repositories of %s (the registry's catalog): %w; name them with -f images.yaml instead", reg.RegistryStr(), err)
		}
		for _, r := range all {
			if prefix == "" || strings.HasPrefix(r, prefix+"/") {
				repos = append(repos, r)
			}
		}
	}
	st.Repositories = len(repos)

	w := &walker{ropts: ropts, inv: inv, seen: map[v1.Hash]bool{}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for _, p := range repos {
		repo, err := name.NewRepository(reg.RegistryStr()+"/"+p, nopts...)
		if err != nil {
			return fmt.Errorf("repository %s: %w", p, err)
		}
		g.Go(func() error {
			tags, err := fetch.ListTags(gctx, repo, ropts...)
			if err != nil {
				var te *transport.Error
				if errors.As(err, &te) && te.StatusCode == 404 {
					return nil // named by images.yaml, not in the registry
				}
				return fmt.Errorf("listing the tags of %s: %w", repo, err)
			}
			w.addTags(len(tags))
			for _, tag := range tags {
				if err := w.walk(gctx, repo.Tag(tag)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	st.Tags, st.Manifests = w.tags, w.manifests
	return nil
}

// walker adds the blobs of manifests to an inventory, each manifest once.
type walker struct {
	ropts []remote.Option
	mu    sync.Mutex
	inv   *Inventory
	seen  map[v1.Hash]bool // manifests and indexes walked
	tags  int

	manifests int
}

func (w *walker) addTags(n int) {
	w.mu.Lock()
	w.tags += n
	w.mu.Unlock()
}

// first reports whether manifest d is seen for the first time.
func (w *walker) first(d v1.Hash) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[d] {
		return false
	}
	w.seen[d] = true
	w.manifests++
	return true
}

func (w *walker) add(d v1.Hash, size int64) {
	w.mu.Lock()
	w.inv.Blobs[d] = size
	w.mu.Unlock()
}

// walk adds what ref names: an image's config and layers, an index's
// images.
func (w *walker) walk(ctx context.Context, ref name.Reference) error {
	desc, err := remote.Get(ref, append(w.ropts, remote.WithContext(ctx))...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", ref, err)
	}
	if !w.first(desc.Digest) {
		return nil
	}
	switch {
	case desc.MediaType.IsIndex():
		ix, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return fmt.Errorf("parsing the index of %s: %w", ref, err)
		}
		for _, child := range ix.Manifests {
			if !child.MediaType.IsImage() && !child.MediaType.IsIndex() {
				continue // not an image: it has no layers to list
			}
			w.mu.Lock()
			done := w.seen[child.Digest]
			w.mu.Unlock()
			if done {
				continue
			}
			if err := w.walk(ctx, ref.Context().Digest(child.Digest.String())); err != nil {
				return err
			}
		}
	default:
		m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return fmt.Errorf("parsing the manifest of %s: %w", ref, err)
		}
		w.add(m.Config.Digest, m.Config.Size)
		for _, l := range m.Layers {
			w.add(l.Digest, l.Size)
		}
	}
	return nil
}
