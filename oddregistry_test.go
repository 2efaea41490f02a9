package main

// Issue 11, class 2: create never writes a bundle that its own verify (or
// docker load) rejects. Odd but legal registry answers are pushed to the
// real distribution registry; create must either write a bundle that
// passes verify --deep and loads into the real dockerd, or refuse with one
// clear line naming the entry and write nothing.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// oddImage builds an image of platform p with n random layers of type lt
// (a Docker or OCI manifest, as mt says), its config naming the platform.
func oddImage(t *testing.T, mt types.MediaType, lt types.MediaType, p v1.Platform, n int) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, mt)
	cmt := types.DockerConfigJSON
	if mt == types.OCIManifestSchema1 {
		cmt = types.OCIConfigJSON
	}
	img = mutate.ConfigMediaType(img, cmt)
	for range n {
		l, err := random.Layer(1024, lt)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Entrypoint = []string{"/nothing"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// emptyTarLayer is a gzip layer whose tar holds no file (as docker makes
// for a RUN that changes nothing).
func emptyTarLayer(t *testing.T, mt types.MediaType) v1.Layer {
	t.Helper()
	var tb bytes.Buffer
	if err := tar.NewWriter(&tb).Close(); err != nil {
		t.Fatal(err)
	}
	l, err := ggcrtarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb.Bytes())), nil }, ggcrtarball.WithMediaType(mt))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// attestation is a buildx-style attestation manifest: in-toto layer, a
// config of platform unknown/unknown without diff_ids.
func attestation(t *testing.T) v1.Image {
	t.Helper()
	att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	att = mutate.ConfigMediaType(att, types.OCIConfigJSON)
	att, err := mutate.AppendLayers(att, static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`), "application/vnd.in-toto+json"))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := att.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.RootFS.DiffIDs = "unknown", "unknown", nil
	if att, err = mutate.ConfigFile(att, cf); err != nil {
		t.Fatal(err)
	}
	return att
}

// rawManifest is a manifest pushed exactly as written.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// putArtifact pushes a non-image OCI artifact (as oras push makes one):
// a config blob of configType, one layer of layerType, and artifactType
// when not empty.
func putArtifact(t *testing.T, ref name.Reference, artifactType string, configType, layerType types.MediaType, config, content []byte) {
	t.Helper()
	cl := static.NewLayer(config, configType)
	ll := static.NewLayer(content, layerType)
	for _, l := range []v1.Layer{cl, ll} {
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(l v1.Layer, mt types.MediaType) map[string]any {
		d, _ := l.Digest()
		s, _ := l.Size()
		return map[string]any{"mediaType": mt, "digest": d.String(), "size": s}
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"config":        desc(cl, configType),
		"layers":        []any{desc(ll, layerType)},
	}
	if artifactType != "" {
		m["artifactType"] = artifactType
	}
	raw, _ := json.Marshal(m)
	if err := remote.Put(ref, rawManifest{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}

// mediaTypeProxy is a reverse proxy to a registry that answers every
// manifest request of repositories under prefix with Content-Type ct,
// whatever the body says.
func mediaTypeProxy(t *testing.T, upstream, prefix string, ct types.MediaType) string {
	t.Helper()
	return testenv.StartReverseProxy(t, upstream, testenv.ProxyHooks{
		Response: func(r *http.Response) error {
			if strings.HasPrefix(r.Request.URL.Path, "/v2/"+prefix) && strings.Contains(r.Request.URL.Path, "/manifests/") {
				r.Header.Set("Content-Type", string(ct))
			}
			return nil
		},
	}).Host
}

// oddCase is one odd registry answer and what create must do with it.
type oddCase struct {
	name      string
	ref       string // as images.yaml names it
	platforms string
	refuse    []string // when set: create fails with these fragments
}

// pushOddCases pushes every odd answer to the registry at host and returns
// the cases; mtHost is a proxy to host that lies about Content-Type for
// repositories under odd/ctype-.
func pushOddCases(t *testing.T, host, mtHost string) []oddCase {
	t.Helper()
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	ref := func(repo string) name.Reference {
		r, err := name.ParseReference(host + "/odd/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	writeIndex := func(repo string, mt types.MediaType, adds ...mutate.IndexAddendum) string {
		idx := mutate.IndexMediaType(empty.Index, mt)
		idx = mutate.AppendManifests(idx, adds...)
		r := ref(repo)
		if err := remote.WriteIndex(r, idx); err != nil {
			t.Fatalf("pushing %s: %v", r, err)
		}
		return r.String()
	}
	writeImage := func(repo string, img v1.Image) string {
		r := ref(repo)
		if err := remote.Write(r, img); err != nil {
			t.Fatalf("pushing %s: %v", r, err)
		}
		return r.String()
	}
	plat := func(p v1.Platform) *v1.Platform { return &p }
	// What distribution 2.8 refuses to store, go-containerregistry's
	// registry serves.
	mem := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(mem.Close)
	memRef := func(repo string) name.Reference {
		r, err := name.ParseReference(strings.TrimPrefix(mem.URL, "http://") + "/odd/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	var cases []oddCase
	// One manifest listed twice (distribution accepts it): once as
	// linux/amd64/v2, once as linux/amd64.
	dupImg := oddImage(t, types.DockerManifestSchema2, types.DockerLayer, amd64, 1)
	dup := writeIndex("dup", types.DockerManifestList,
		mutate.IndexAddendum{Add: dupImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v2"}}},
		mutate.IndexAddendum{Add: dupImg, Descriptor: v1.Descriptor{Platform: plat(amd64)}})
	cases = append(cases,
		oddCase{name: "duplicate index entry, all", ref: dup, platforms: "all"},
		oddCase{name: "duplicate index entry, both platforms", ref: dup, platforms: "linux/amd64, linux/amd64/v2"})

	// Children with and without a platform, OCI and Docker manifests mixed
	// in one OCI index, with an attestation manifest.
	mixed := writeIndex("mixed", types.OCIImageIndex,
		mutate.IndexAddendum{Add: oddImage(t, types.DockerManifestSchema2, types.DockerLayer, amd64, 2), Descriptor: v1.Descriptor{Platform: plat(amd64)}},
		mutate.IndexAddendum{Add: oddImage(t, types.OCIManifestSchema1, types.OCILayer, arm64, 1)}, // no platform
		mutate.IndexAddendum{Add: attestation(t), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	cases = append(cases,
		oddCase{name: "mixed index, all", ref: mixed, platforms: "all"},
		oddCase{name: "mixed index, amd64", ref: mixed, platforms: "linux/amd64"})

	// A Docker manifest list whose children are OCI manifests.
	list := writeIndex("list-of-oci", types.DockerManifestList,
		mutate.IndexAddendum{Add: oddImage(t, types.OCIManifestSchema1, types.OCILayer, amd64, 1), Descriptor: v1.Descriptor{Platform: plat(amd64)}},
		mutate.IndexAddendum{Add: oddImage(t, types.OCIManifestSchema1, types.OCILayer, arm64, 1), Descriptor: v1.Descriptor{Platform: plat(arm64)}})
	cases = append(cases, oddCase{name: "docker list of OCI manifests", ref: list, platforms: "all"})

	// Empty layers: an empty tar twice (the same blob twice in one
	// manifest), and an image with no layer at all.
	el := emptyTarLayer(t, types.DockerLayer)
	emptyImg := oddImage(t, types.DockerManifestSchema2, types.DockerLayer, amd64, 1)
	emptyImg, err := mutate.AppendLayers(emptyImg, el, el)
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		oddCase{name: "empty layers", ref: writeImage("empty-layers", emptyImg), platforms: "linux/amd64"},
		oddCase{name: "no layer", ref: writeImage("no-layer", oddImage(t, types.OCIManifestSchema1, types.OCILayer, amd64, 0)), platforms: "linux/amd64"})

	// A foreign (non-distributable) layer, as Windows base images on
	// Docker Hub and MCR have: distribution 2.8 refuses its URLs by
	// default, so go-containerregistry's registry serves this one.
	fimg := oddImage(t, types.DockerManifestSchema2, types.DockerLayer, amd64, 1)
	fl, err := random.Layer(1024, types.DockerForeignLayer)
	if err != nil {
		t.Fatal(err)
	}
	if fimg, err = mutate.Append(fimg, mutate.Addendum{Layer: fl, URLs: []string{"https://example.invalid/layer"}, MediaType: types.DockerForeignLayer}); err != nil {
		t.Fatal(err)
	}
	fref := memRef("foreign")
	if err := remote.Write(fref, fimg); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, oddCase{name: "foreign layer", ref: fref.String(), platforms: "linux/amd64",
		refuse: []string{"odd/foreign:1", "non-distributable"}})

	// A Helm chart pushed as oras push does, and an artifact with
	// artifactType and the empty config: not images.
	helm := ref("helm-chart")
	putArtifact(t, helm, "", "application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
		[]byte(`{"name":"chart","version":"0.1.0","apiVersion":"v2"}`), []byte("not really a chart"))
	cases = append(cases, oddCase{name: "helm chart", ref: helm.String(), platforms: "linux/amd64",
		refuse: []string{"odd/helm-chart:1", ".yaml:3:5", "application/vnd.cncf.helm.config.v1+json", "not an image"}})
	sbom := ref("sbom")
	putArtifact(t, sbom, "application/spdx+json", "application/vnd.oci.empty.v1+json", "application/spdx+json", []byte("{}"), []byte(`{"spdxVersion":"SPDX-2.3"}`))
	cases = append(cases, oddCase{name: "artifact with artifactType", ref: sbom.String(), platforms: "linux/amd64",
		refuse: []string{"odd/sbom:1", ".yaml:3:5", "not an image"}})

	// An index whose descriptor gives its child another media type than
	// the child's own: a contradiction create cannot carry (distribution
	// 2.8 refuses it).
	liar := oddImage(t, types.OCIManifestSchema1, types.OCILayer, amd64, 1)
	lr := memRef("liar-index")
	if err := remote.Write(lr.Context().Tag("child"), liar); err != nil {
		t.Fatal(err)
	}
	lraw, _ := liar.RawManifest()
	ld, _ := liar.Digest()
	iraw, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": []any{
		map[string]any{"mediaType": types.DockerManifestSchema2, "digest": ld.String(), "size": len(lraw), "platform": map[string]string{"os": "linux", "architecture": "amd64"}}}})
	if err := remote.Put(lr, rawManifest{iraw, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, oddCase{name: "index child media type contradicts the child", ref: lr.String(), platforms: "all",
		refuse: []string{"odd/liar-index:1", ld.String(), "gives media type " + string(types.DockerManifestSchema2)}})

	// An attestation manifest on its own (image config, in-toto layer):
	// manifest.json would list it, and docker load would fail.
	cases = append(cases, oddCase{name: "lone attestation manifest", ref: writeImage("lone-attestation", attestation(t)), platforms: "all",
		refuse: []string{"odd/lone-attestation:1", "not a filesystem layer"}})

	// The registry's Content-Type names another media type than the
	// manifest's own mediaType: the body's wins (clients check it).
	ociImg := oddImage(t, types.OCIManifestSchema1, types.OCILayer, amd64, 1)
	writeImage("ctype-oci", ociImg)
	dockerImg := oddImage(t, types.DockerManifestSchema2, types.DockerLayer, amd64, 1)
	writeImage("ctype-docker", dockerImg)
	cases = append(cases,
		oddCase{name: "OCI manifest served as Docker", ref: mtHost + "/odd/ctype-oci:1", platforms: "linux/amd64"},
		oddCase{name: "Docker manifest served as OCI", ref: mtHost + "/odd/ctype-docker:1", platforms: "linux/amd64"})
	return cases
}

// Every odd answer: create writes a bundle that verify --deep passes and
// the real dockerd loads, or refuses it with one line naming the entry and
// writes nothing.
func TestCreateOddRegistryAnswers(t *testing.T) {
	testenv.Acceptance(t)
	reg, _ := testenv.SharedSeeded(t)
	mtHost := mediaTypeProxy(t, reg.Host, "odd/ctype-oci", types.DockerManifestSchema2)
	mtHost2 := mediaTypeProxy(t, reg.Host, "odd/ctype-docker", types.OCIManifestSchema1)
	cases := pushOddCases(t, reg.Host, mtHost)
	for i := range cases {
		if strings.Contains(cases[i].ref, "ctype-docker") {
			cases[i].ref = mtHost2 + strings.TrimPrefix(cases[i].ref, mtHost)
		}
	}
	dir := t.TempDir()
	var loadable []string
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := filepath.Join(dir, fmt.Sprintf("images-%d.yaml", i))
			if err := os.WriteFile(yaml, []byte("platforms: ["+c.platforms+"]\nimages:\n  - "+c.ref+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, fmt.Sprintf("out-%d.tar", i))
			_, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache"))
			if c.refuse != nil {
				msg := strings.TrimSpace(stderr)
				if code != 1 || !strings.HasPrefix(msg, "bundle: error: ") || strings.Count(msg, "\n") > 1 {
					t.Errorf("exit %d, want 1 and one error line; stderr:\n%s", code, stderr)
				}
				for _, w := range c.refuse {
					if !strings.Contains(msg, w) {
						t.Errorf("error lacks %q:\n%s", w, msg)
					}
				}
				if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("output exists after a refusal: %v", err)
				}
				return
			}
			if code != 0 {
				t.Fatalf("create: exit %d:\n%s", code, stderr)
			}
			if o, e, code := bundleCLI(t, "verify", "--deep", "-i", out); code != 0 {
				t.Fatalf("verify --deep of what create wrote: exit %d\n%s%s", code, o, e)
			}
			loadable = append(loadable, out)
		})
	}

	// docker load of every bundle written (each is a docker-loadable set:
	// manifest.json lists the image of the docker platform).
	if len(loadable) == 0 {
		t.Fatal("no bundle written")
	}
	d := testenv.SharedDockerd(t)
	for _, out := range loadable {
		got := d.Docker(t, "load", "-i", out)
		for _, im := range readIndex(t, out).Images {
			tag := manifests.FamiliarName(mustRef(t, im.Ref))
			if !strings.Contains(got, "Loaded image: "+tag) {
				t.Errorf("docker load of %s did not report %s:\n%s", filepath.Base(out), tag, got)
			}
			d.Docker(t, "rmi", "-f", tag)
		}
	}
	t.Logf("%d bundles written, verified and loaded by docker; %d refused", len(loadable), len(cases)-len(loadable))
}
