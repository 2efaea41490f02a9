package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultDockerHost is the daemon's address when DOCKER_HOST is not set.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// containerdSnapshotter is the driver-type that GET /info shows for a
// daemon with the containerd image store (the default of Docker 29).
const containerdSnapshotter = "io.containerd.snapshotter.v1"

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
	d.inflate = decompressLayers(d.local)
	return d, nil
}

// isLoopback reports whether host names this machine's loopback
// interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dockerTLS reads the client certificates the docker CLI would use.
func dockerTLS() (*tls.Config, error) {
	dir := os.Getenv("DOCKER_CERT_PATH")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".docker")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cfg.RootCAs = pool
	}
	if cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err == nil {
		cfg.Certificates = []tls.Certificate{cert}
	}
	if os.Getenv("DOCKER_TLS_VERIFY") == "" {
		cfg.InsecureSkipVerify = true //nolint:gosec // as the docker CLI does without DOCKER_TLS_VERIFY
	}
	return cfg, nil
}

func (d *Daemon) String() string { return "docker daemon " + d.host }

// DaemonError is an error the daemon answered with.
type DaemonError struct {
	Op     string // what was asked: "GET /info", "POST /images/load"
	Status int
	Msg    string
}

func (e *DaemonError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("docker daemon: %s: %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Msg)
	}
	return fmt.Sprintf("docker daemon: %s: %s", e.Op, e.Msg)
}

// call does one API request and decodes a JSON answer into out (unless
// nil). It returns (false, nil) for a 404.
func (d *Daemon) call(ctx context.Context, method, path string, body io.Reader, out any) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return false, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("cannot reach the docker daemon at %s (is it running? set DOCKER_HOST): %w", d.host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if resp.StatusCode/100 != 2 {
		return false, &DaemonError{Op: method + " " + path, Status: resp.StatusCode, Msg: apiMessage(resp.Body)}
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
			return false, fmt.Errorf("docker daemon: %s %s: reading the answer: %w", method, path, err)
		}
	}
	return true, nil
}

func apiMessage(r io.Reader) string {
	data, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(data))
}

// Ping checks that the daemon answers GET /_ping.
func (d *Daemon) Ping(ctx context.Context) error {
	_, err := d.call(ctx, http.MethodGet, "/_ping", nil, nil)
	return err
}

// daemonInfo is what a load needs of GET /info.
type daemonInfo struct {
	ServerVersion string      `json:"ServerVersion"`
	Driver        string      `json:"Driver"`
	DriverStatus  [][2]string `json:"DriverStatus"`
}

func (i daemonInfo) containerdStore() bool {
	for _, kv := range i.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == containerdSnapshotter {
			return true
		}
	}
	return false
}

func (d *Daemon) info(ctx context.Context) (daemonInfo, error) {
	var info daemonInfo
	if _, err := d.call(ctx, http.MethodGet, "/_ping", nil, nil); err != nil {
		return info, err
	}
	if _, err := d.call(ctx, http.MethodGet, "/info", nil, &info); err != nil {
		return info, err
	}
	return info, nil
}

// dockerName is how the daemon names an image: the tag as docker prints it,
// or the full digest reference.
func dockerName(im Image) string {
	if im.Tagged() {
		return manifests.FamiliarName(im.Name)
	}
	return manifests.FullName(im.Name)
}

// expectedIDs are the image IDs the daemon may show for an image loaded
// from the bundle: the config digest of Primary (classic image store), the
// index or manifest digest (containerd image store).
func expectedIDs(im Image, containerd bool) []string {
	if containerd {
		return []string{im.Digest.String(), im.Primary.Config.String()}
	}
	return []string{im.Primary.Config.String()}
}

// inspect returns the image ID the daemon has under name, or "".
func (d *Daemon) inspect(ctx context.Context, name string) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	ok, err := d.call(ctx, http.MethodGet, "/images/"+name+"/json", nil, &out)
	if err != nil || !ok {
		return "", err
	}
	return out.ID, nil
}

// present returns the image's current ID in the daemon (by its name, and
// for a digest reference also by its image ID) and whether it is the one
// expected.
func (d *Daemon) present(ctx context.Context, im Image, containerd bool) (string, bool, error) {
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

func (d *Daemon) result(im Image, containerd bool) ImageResult {
	r := ImageResult{Ref: im.Ref, Target: dockerName(im), Digest: im.Primary.Config, Platforms: []string{im.Primary.Platform}}
	if containerd {
		r.Digest = im.Digest
		r.Platforms = im.Platforms()
	}
	return r
}

// Check says which images the daemon has under their names with the
// expected image ID.
func (d *Daemon) Check(ctx context.Context, b *Bundle, images []Image) (*Result, error) {
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
func (d *Daemon) Holds(ctx context.Context, b *Bundle, images []Image) ([]bool, error) {
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
func (d *Daemon) InflatesLayers(ctx context.Context, b *Bundle, images []Image) (map[v1.Hash]bool, error) {
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
func (d *Daemon) sendBlobs(im Image, containerd bool) []v1.Hash {
	if containerd {
		return im.Blobs()
	}
	return append(append([]v1.Hash(nil), im.Primary.Layers...), im.Primary.Config)
}

// Load sends the daemon the images it lacks in one POST /images/load.
func (d *Daemon) Load(ctx context.Context, b *Bundle, images []Image, p Progress) (*Result, error) {
	p = orNop(p)
	info, err := d.info(ctx)
	if err != nil {
		return nil, err
	}
	cs := info.containerdStore()
	res := &Result{Target: d.String(), Images: make([]ImageResult, len(images))}
	var todo, skipped []Image
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
func (d *Daemon) loadOriginal(ctx context.Context, b *Bundle, todo []Image, p Progress, res *Result) error {
	sub, err := d.subIndex(b, todo, true)
	if err != nil {
		return err
	}
	layout, err := tarball.NewLayout(sub, "")
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
func (d *Daemon) subIndex(b *Bundle, images []Image, containerd bool) (*tarball.Index, error) {
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

// postLoad sends the tar and reads the daemon's JSON message stream. It
// returns the "Loaded image" lines; an error message in the stream is an
// error.
func (d *Daemon) postLoad(ctx context.Context, body io.Reader) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/images/load?quiet=1", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("docker daemon: POST /images/load: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, &DaemonError{Op: "POST /images/load", Status: resp.StatusCode, Msg: apiMessage(resp.Body)}
	}
	var loaded []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return loaded, fmt.Errorf("docker daemon: POST /images/load: reading the answer: %w", err)
		}
		switch {
		case m.ErrorDetail != nil && m.ErrorDetail.Message != "":
			return loaded, &DaemonError{Op: "POST /images/load", Msg: m.ErrorDetail.Message}
		case m.Error != "":
			return loaded, &DaemonError{Op: "POST /images/load", Msg: m.Error}
		}
		for _, line := range strings.Split(m.Stream+m.Status, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "Loaded image") {
				loaded = append(loaded, line)
			}
		}
	}
	return loaded, nil
}

// bundleSource gives tarball.Write the bundle's blobs.
type bundleSource struct{ b *Bundle }

// Open returns verified = true: OpenBlob's reader fails before EOF when the
// bytes are not the blob's.
func (s bundleSource) Open(_ context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	rc, err := s.b.OpenBlob(h)
	return rc, true, err
}
