package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultDockerHost is the daemon's address when DOCKER_HOST is not set.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// Daemon loads images into a docker daemon through the Engine API over
// DOCKER_HOST (unix:// or tcp://; DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
// as the docker CLI reads them).
//
// It loads with POST /images/load, as docker load does, only the images
// the daemon lacks: an image the daemon already has under its tag with the
// expected image ID (the config digest of Primary; for the containerd
// store, the digest of the index or manifest) is skipped. Every loaded tag
// is checked afterwards; an error message in the daemon's answer is an
// error.
//
// A daemon with the containerd image store gets one tar in the bundle's
// own format made from the bundle's original blobs (nothing re-encoded),
// with index.json and every selected platform, so that it keeps the
// registry's digests. A daemon with the classic image store (a graphdriver)
// gets the platform that manifest.json names (Image.Primary), with its gzip
// layers decompressed by the load and the images spread over a few
// parallel streams (daemon_classic.go): the image IDs are the same, and the
// daemon, which would decompress each layer on one core, does less.
type Daemon struct {
	host    string
	base    string // URL prefix: http://docker or https://host:port
	client  *http.Client
	streams int  // parallel POST /images/load streams (classic store)
	local   bool // on this machine: a unix socket or loopback
	// inflate: send gzip layers decompressed to a classic store (see
	// decompressLayers).
	inflate bool
}

// NewDaemon makes a daemon target. It does not connect.
func NewDaemon(opts Options) (*Daemon, error) {
	host := opts.DockerHost
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultDockerHost
	}
	// Two jobs per stream: each stream keeps the daemon and one
	// decompressor busy.
	d := &Daemon{host: host, streams: min(max(opts.Jobs/2, 1), maxDaemonStreams)}
	tr := &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // a load answers when it has read the whole tar
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, &SpecError{Spec: "DOCKER_HOST=" + host, Reason: err.Error()}
	}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		if sock == "" {
			sock = u.Opaque
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", sock)
		}
		d.base = "http://docker"
		d.local = true
	case "tcp", "http", "https":
		if u.Host == "" {
			return nil, &SpecError{Spec: "DOCKER_HOST=" + host, Reason: "no host:port"}
		}
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
		scheme := "http"
		if u.Scheme == "https" || os.Getenv("DOCKER_TLS_VERIFY") != "" || os.Getenv("DOCKER_CERT_PATH") != "" {
			cfg, err := dockerTLS()
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
			scheme = "https"
		}
		d.base = scheme + "://" + u.Host
		d.local = isLoopback(u.Hostname())
	default:
		return nil, &SpecError{Spec: "DOCKER_HOST=" + host, Reason: "bundle load talks to unix:// and tcp:// daemons only"}
	}
	d.client = &http.Client{Transport: tr}
	mode := opts.DockerDecompress
	if mode == DecompressAuto {
		mode = decompressEnv()
	}
	d.inflate = decompressLayers(mode, d.local)
	return d, nil
}

func (d *Daemon) String() string { return "docker daemon " + d.host }

// dockerName is how the daemon names an image: the tag as docker prints it,
// or the full digest reference.
func dockerName(im Chosen) string {
	if im.Tagged() {
		return manifests.FamiliarName(im.Name)
	}
	return manifests.FullName(im.Name)
}

// expectedIDs are the image IDs the daemon may show for an image loaded
// from the bundle: the config digest of Primary (classic image store), the
// index or manifest digest (containerd image store).
func expectedIDs(im Chosen, containerd bool) []string {
	if containerd {
		return []string{im.Digest.String(), im.Primary.Config.String()}
	}
	return []string{im.Primary.Config.String()}
}

// present returns the image's current ID in the daemon (by its name, and
// for a digest reference also by its image ID) and whether it is the one
// expected.
func (d *Daemon) present(ctx context.Context, im Chosen, containerd bool) (string, bool, error) {
	want := expectedIDs(im, containerd)
	names := []string{dockerName(im)}
	if !im.Tagged() {
		names = append(names, want...)
	}
	var first string
	for _, n := range names {
		id, err := d.inspect(ctx, n)
		if err != nil {
			return "", false, err
		}
		if slices.Contains(want, id) {
			return id, true, nil
		}
		if first == "" {
			first = id
		}
	}
	return first, false, nil
}

func (d *Daemon) result(im Chosen, containerd bool) ImageResult {
	r := ImageResult{Ref: im.Ref, Target: dockerName(im), Digest: im.Primary.Config, Platforms: []string{im.Primary.Platform}}
	if containerd {
		r.Digest = im.Digest
		r.Platforms = im.Platforms()
	}
	return r
}

// Check says which images the daemon has under their names with the
// expected image ID.
func (d *Daemon) Check(ctx context.Context, b *Bundle, images []Chosen) (*Result, error) {
	info, err := d.info(ctx)
	if err != nil {
		return nil, err
	}
	cs := info.containerdStore()
	res := &Result{Target: d.String()}
	counted := map[v1.Hash]bool{}
	for _, im := range images {
		r := d.result(im, cs)
		id, ok, err := d.present(ctx, im, cs)
		if err != nil {
			return nil, err
		}
		r.Status = StatusMissing
		if ok {
			r.Status = StatusPresent
			r.Digest, _ = v1.NewHash(id)
		} else {
			r.Replaces = id
			for _, h := range d.sendBlobs(im, cs) {
				if !counted[h] {
					counted[h] = true
					res.BlobsSent++
					res.BytesSent += d.sendSize(b, h, cs)
				}
			}
		}
		res.Images = append(res.Images, r)
	}
	return res, nil
}

// Holds says which images the daemon has under their names with the
// expected image ID.
func (d *Daemon) Holds(ctx context.Context, b *Bundle, images []Chosen) ([]bool, error) {
	info, err := d.info(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(images))
	for i, im := range images {
		if _, out[i], err = d.present(ctx, im, info.containerdStore()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// InflatesLayers names the gzip layers of images' docker manifests that
// a load sends decompressed (a graphdriver daemon on this machine with
// cores to spare: inflate). The daemon hashes what it is sent against the
// config's diff_ids; the load enforces the bomb limit as it decompresses.
func (d *Daemon) InflatesLayers(ctx context.Context, b *Bundle, images []Chosen) (map[v1.Hash]bool, error) {
	if !d.inflate {
		return nil, nil
	}
	info, err := d.info(ctx)
	if err != nil || info.containerdStore() {
		return nil, err
	}
	out := map[v1.Hash]bool{}
	for _, im := range images {
		for _, h := range im.Primary.Layers {
			if _, ok := gzipSize(b, h); ok && b.Has(h) {
				out[h] = true
			}
		}
	}
	return out, nil
}

// sendBlobs are the layers and configs a load sends the daemon for im.
func (d *Daemon) sendBlobs(im Chosen, containerd bool) []v1.Hash {
	if containerd {
		return im.Blobs()
	}
	return append(append([]v1.Hash(nil), im.Primary.Layers...), im.Primary.Config)
}

// Load sends the daemon the images it lacks in one POST /images/load.
func (d *Daemon) Load(ctx context.Context, b *Bundle, images []Chosen, p Progress) (*Result, error) {
	p = orNop(p)
	info, err := d.info(ctx)
	if err != nil {
		return nil, err
	}
	cs := info.containerdStore()
	res := &Result{Target: d.String(), Images: make([]ImageResult, len(images))}
	var todo, skipped []Chosen
	for i, im := range images {
		r := d.result(im, cs)
		id, ok, err := d.present(ctx, im, cs)
		if err != nil {
			return nil, err
		}
		if ok {
			r.Status = StatusSkipped
			r.Digest, _ = v1.NewHash(id)
			p.Done(r)
			skipped = append(skipped, im)
		} else {
			r.Replaces = id
			todo = append(todo, im)
		}
		res.Images[i] = r
	}
	if len(todo) == 0 {
		return res, nil
	}
	if cs {
		if err := d.loadOriginal(ctx, b, todo, p, res); err != nil {
			return nil, err
		}
	} else if err := d.loadClassic(ctx, b, todo, skipped, p, res); err != nil {
		return nil, err
	}

	// Check every image the daemon says it loaded.
	for i, im := range images {
		r := &res.Images[i]
		if r.Status == StatusSkipped {
			continue
		}
		id, ok, err := d.present(ctx, im, cs)
		if err != nil {
			return nil, err
		}
		if !ok {
			got := id
			if got == "" {
				got = "no image"
			}
			return nil, fmt.Errorf("docker daemon: after the load, %s is %s, want image ID %s",
				dockerName(im), got, strings.Join(expectedIDs(im, cs), " or "))
		}
		r.Digest, _ = v1.NewHash(id)
		r.Status = StatusLoaded
		p.Done(*r)
	}
	return res, nil
}

// loadOriginal sends todo in one POST /images/load as a tar in the
// bundle's format made from the original blobs (the containerd image
// store, which keeps them and so the registry's digests).
func (d *Daemon) loadOriginal(ctx context.Context, b *Bundle, todo []Chosen, p Progress, res *Result) error {
	sub, err := d.subIndex(b, todo, true)
	if err != nil {
		return err
	}
	layout, err := tarball.NewPlan(sub, "")
	if err != nil {
		return fmt.Errorf("making the tar for the daemon: %w", err)
	}
	var total int64
	for _, h := range layout.Blobs {
		total += sub.Blobs[h].Size
		if sub.Blobs[h].MediaType.IsLayer() || sub.Blobs[h].MediaType.IsConfig() {
			res.BlobsSent++
		} else {
			res.ManifestsSent++
		}
	}
	p.Planned(len(todo), len(layout.Blobs), total)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		err := tarball.Write(ctx, pw, layout, bundleSource{b}, tarball.WriteOptions{Progress: func(n int64) {
			res.BytesSent += n
			p.Sent(n)
		}})
		pw.CloseWithError(err)
		writeErr <- err
	}()
	_, loadErr := d.postLoad(ctx, pr)
	pr.CloseWithError(errors.New("the daemon stopped reading"))
	werr := <-writeErr
	var ce *ChangedError
	switch {
	case errors.As(werr, &ce):
		return werr
	case loadErr != nil:
		return loadErr
	case werr != nil:
		return fmt.Errorf("sending images to the docker daemon: %w", werr)
	}
	return nil
}

// subIndex is the bundle.json of the tar sent to the daemon: the images to
// load, each with Primary first (manifest.json gives docker the first),
// only Primary for the classic store.
func (d *Daemon) subIndex(b *Bundle, images []Chosen, containerd bool) (*tarball.Index, error) {
	sub := &tarball.Index{SchemaVersion: tarball.SchemaVersion, Creator: "bundle load", Blobs: map[v1.Hash]tarball.Blob{}}
	for _, im := range images {
		e := im.Image
		e.Manifests = []tarball.PlatformManifest{im.Primary}
		if containerd {
			for _, m := range im.Manifests {
				if m.Digest != im.Primary.Digest {
					e.Manifests = append(e.Manifests, m)
				}
			}
		}
		hs := []v1.Hash{e.Digest}
		for _, m := range e.Manifests {
			hs = append(append(hs, m.Digest, m.Config), m.Layers...)
		}
		for _, h := range hs {
			bl, ok := b.Index.Blobs[h]
			if !ok || !b.Has(h) {
				return nil, fmt.Errorf("%s uses blob %s, which the bundle does not carry (a delta bundle): a docker daemon needs every blob", im.Ref, h)
			}
			sub.Blobs[h] = bl
		}
		sub.Images = append(sub.Images, e)
	}
	return sub, nil
}

// bundleSource gives tarball.Write the bundle's blobs.
type bundleSource struct{ b *Bundle }

// Open returns verified = true: OpenBlob's reader fails before EOF when the
// bytes are not the blob's.
func (s bundleSource) Open(_ context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	rc, err := s.b.OpenBlob(h)
	return rc, true, err
}
