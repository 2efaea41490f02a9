package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/serve"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// servedImage is a seeded image as the bundle names it and as the server
// serves it.
type servedImage struct {
	testenv.SeededImage
	upstream string // the reference in the bundle: docker.io/seed/app-a:1
	path     string // the repository served: seed/app-a
}

// servedBundle makes a bundle of the seeded images named as Docker Hub
// images (fetched from the test registry as their mirror, as an
// air-gapped site's online side would), plus one under the test
// registry's own name, every platform kept, and serves it.
func servedBundle(t *testing.T) (*serveProc, []servedImage, string) {
	t.Helper()
	_, seeded := testenv.SharedSeeded(t)
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "platforms: [all]\nmirrors:\n  docker.io: %s\nimages:\n", seeded.Host)
	var images []servedImage
	for _, n := range []string{testenv.ImageAppA, testenv.ImageAppB, testenv.ImageMulti, testenv.ImageOCI, testenv.ImageHello} {
		im := seeded.Find(t, n)
		images = append(images, servedImage{SeededImage: im, upstream: "docker.io/seed/" + n + ":1", path: "seed/" + n})
	}
	c := seeded.Find(t, testenv.ImageAppC)
	images = append(images, servedImage{SeededImage: c, upstream: c.Ref, path: "seed/app-c"})
	for _, im := range images {
		fmt.Fprintf(&b, "  - %s\n", im.upstream)
	}
	yaml := filepath.Join(dir, "images.yaml")
	if err := os.WriteFile(yaml, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "images.tar")
	mustBundle(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache"))
	return startServe(t, "-i", out), images, out
}

// Real clients pull every image from bundle serve with the registry's
// digests, the multi-arch index included: go-containerregistry (crane),
// skopeo, podman (directly and through --print-config podman), docker
// (Engine 20.10) and ctr through --print-config containerd's hosts.toml
// in mirror mode (?ns=docker.io); the pulled app runs.
func TestServeRealClients(t *testing.T) {
	testenv.Acceptance(t)
	p, images, bundlePath := servedBundle(t)
	ref := func(im servedImage) string { return p.host + "/" + im.path + ":1" }

	t.Run("crane", func(t *testing.T) {
		for _, im := range images {
			r, err := name.ParseReference(ref(im))
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(r, remote.WithAuth(authn.Anonymous), remote.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			if desc.Digest != im.Digest || desc.MediaType != im.MediaType {
				t.Errorf("%s: %s %s, the registry served %s %s", r, desc.Digest, desc.MediaType, im.Digest, im.MediaType)
			}
			if desc.MediaType.IsIndex() {
				idx, err := desc.ImageIndex()
				if err == nil {
					err = validate.Index(idx)
				}
				if err != nil {
					t.Errorf("%s: %v", r, err)
				}
				continue
			}
			img, err := desc.Image()
			if err == nil {
				err = validate.Image(img)
			}
			if err != nil {
				t.Errorf("%s: %v", r, err)
			}
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		for _, im := range images {
			dest := t.TempDir()
			command(t, nil, "skopeo", "copy", "-q", "--all", "--insecure-policy", "--src-tls-verify=false", "docker://"+ref(im), "dir:"+dest)
			if got := fileDigest(t, filepath.Join(dest, "manifest.json")); got != im.Digest.String() {
				t.Errorf("skopeo copy %s: manifest %s, the registry served %s", ref(im), got, im.Digest)
			}
			for _, child := range im.Manifests {
				if _, err := os.Stat(filepath.Join(dest, child.Digest.Hex+".manifest.json")); err != nil {
					t.Errorf("skopeo copy --all %s: no %s manifest: %v", ref(im), child.Platforms, err)
				}
			}
		}
	})

	t.Run("podman", func(t *testing.T) {
		store := t.TempDir()
		podman := func(env []string, args ...string) string {
			return command(t, env, "podman", append([]string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}, args...)...)
		}
		t.Cleanup(func() {
			_, _ = execQuiet("podman", "--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs", "rmi", "-af")
		})
		for _, im := range images {
			if im.MediaType.IsIndex() {
				continue // podman pulls the host's platform of an index; the index digest is checked below
			}
			podman(nil, "pull", "-q", "--tls-verify=false", ref(im))
			if got := strings.TrimSpace(podman(nil, "image", "inspect", "--format", "{{.Digest}}", ref(im))); got != im.Digest.String() {
				t.Errorf("podman pull %s: digest %s, the registry served %s", ref(im), got, im.Digest)
			}
		}
		multi := images[2]
		podman(nil, "pull", "-q", "--tls-verify=false", ref(multi))
		if got := podman(nil, "image", "inspect", "--format", "{{json .RepoDigests}}", ref(multi)); !strings.Contains(got, multi.Digest.String()) {
			t.Errorf("podman pull %s: RepoDigests %s, want the index %s", ref(multi), got, multi.Digest)
		}
		// Through the mirror that --print-config podman writes: the
		// image by its Docker Hub name.
		conf := filepath.Join(t.TempDir(), "registries.conf")
		cfg := mustBundle(t, "serve", "-i", bundlePath, "--addr", p.host, "--print-config", "podman")
		if err := os.WriteFile(conf, []byte("unqualified-search-registries = []\n"+cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		app := images[1]
		before := len(p.requests())
		podman([]string{"CONTAINERS_REGISTRIES_CONF=" + conf}, "pull", "-q", app.upstream)
		if got := strings.TrimSpace(podman(nil, "image", "inspect", "--format", "{{.Digest}}", app.upstream)); got != app.Digest.String() {
			t.Errorf("podman pull %s through the mirror: digest %s, want %s", app.upstream, got, app.Digest)
		}
		if !requested(p.requests()[before:], "/v2/seed/app-b/manifests/1") {
			t.Errorf("podman pull %s did not go through bundle serve", app.upstream)
		}
	})

	t.Run("docker", func(t *testing.T) {
		d := testenv.SharedDockerd(t)
		for _, im := range images {
			d.Docker(t, "pull", "-q", ref(im))
			t.Cleanup(func() { _, _ = execQuiet("docker", "-H", d.Host, "rmi", "-f", ref(im)) })
			got := d.Docker(t, "image", "inspect", "--format", "{{json .RepoDigests}}", ref(im))
			if !strings.Contains(got, p.host+"/"+im.path+"@"+im.Digest.String()) {
				t.Errorf("docker pull %s: RepoDigests %s, want %s", ref(im), strings.TrimSpace(got), im.Digest)
			}
		}
		hello := images[4]
		if out := d.Docker(t, "run", "--rm", "--network", "none", ref(hello)); strings.TrimSpace(out) != testenv.HelloOutput {
			t.Errorf("docker run %s: %q, want %q", ref(hello), out, testenv.HelloOutput)
		}
	})

	t.Run("ctr", func(t *testing.T) {
		d := testenv.SharedDockerd(t)
		testenv.Require(t, "ctr")
		// The hosts.toml files that --print-config containerd writes,
		// under a hosts dir of the test's own.
		out := mustBundle(t, "serve", "-i", bundlePath, "--addr", p.host, "--print-config", "containerd", "--json")
		var cfg struct {
			Files []serve.ConfigFile `json:"files"`
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatal(err)
		}
		hosts := t.TempDir()
		for _, f := range cfg.Files {
			rel, ok := strings.CutPrefix(f.Path, "/etc/containerd/certs.d/")
			if !ok {
				t.Fatalf("--print-config containerd: %s", f.Path)
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(hosts, rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(hosts, rel), []byte(f.Content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(filepath.Join(hosts, "docker.io", "hosts.toml")); err != nil {
			t.Fatalf("no hosts.toml for docker.io: %v", err)
		}
		ns := fmt.Sprintf("bundle-serve-%d", time.Now().UnixNano())
		ctr := func(args ...string) string {
			return command(t, nil, "ctr", append([]string{"--address", d.ContainerdSocket, "-n", ns}, args...)...)
		}
		var pulled []string
		t.Cleanup(func() {
			for _, r := range pulled {
				_, _ = execQuiet("ctr", "--address", d.ContainerdSocket, "-n", ns, "images", "rm", "--sync", r)
			}
			_, _ = execQuiet("ctr", "--address", d.ContainerdSocket, "namespaces", "rm", ns)
		})
		before := len(p.requests())
		for _, im := range images {
			if !strings.HasPrefix(im.upstream, "docker.io/") {
				continue
			}
			ctr("images", "pull", "--hosts-dir", hosts, "--all-platforms", im.upstream)
			pulled = append(pulled, im.upstream)
		}
		ls := ctr("images", "ls")
		for _, im := range images {
			if !strings.HasPrefix(im.upstream, "docker.io/") {
				continue
			}
			if !strings.Contains(ls, im.upstream) || !lineHas(ls, im.upstream, im.Digest.String()) {
				t.Errorf("ctr images pull %s: ctr images ls says\n%s\nwant digest %s", im.upstream, ls, im.Digest)
			}
		}
		mirrored, all := 0, p.requests()[before:]
		for _, a := range all {
			if strings.Contains(a.Path, "?ns=docker.io") {
				mirrored++
			}
		}
		if mirrored == 0 || mirrored != len(all) {
			t.Errorf("ctr sent %d of %d requests with ?ns=docker.io: %+v", mirrored, len(all), all)
		}
		t.Logf("ctr: %d requests in mirror mode (?ns=docker.io)", mirrored)
	})

	if code := p.stop(t); code != 0 {
		t.Errorf("bundle serve: exit %d after SIGTERM; stderr:\n%s", code, p.stderr.String())
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// requested says whether the access log has a request for path (its
// query aside).
func requested(log []serve.Access, path string) bool {
	for _, a := range log {
		if p, _, _ := strings.Cut(a.Path, "?"); p == path && a.Status == 200 {
			return true
		}
	}
	return false
}

// lineHas says whether a line of out holds every one of words.
func lineHas(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}
