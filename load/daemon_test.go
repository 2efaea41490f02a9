package load

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fakeEngine answers the Engine API calls a load makes, like a daemon with
// the classic image store (image ID = config digest, names from
// manifest.json or POST /images/{id}/tag) or the containerd image store
// (image ID = the digest index.json names, names from its annotations).
//
// The classic store does what docker load does: it reads the whole tar
// first (a tar that breaks off loads nothing), then for each manifest.json
// entry and each layer whose chain ID it lacks, reads the layer file
// (gunzipping it when it is gzip) and checks it against the config's
// diff_ids.
type fakeEngine struct {
	containerd bool
	fail       string // an errorDetail message POST /images/load answers with

	mu         sync.Mutex
	images     map[string]string // name → image ID
	chains     map[v1.Hash]bool  // the classic store's layer store
	loads      int               // POST /images/load requests
	failed     int               // … that broke off or failed
	tags       int               // POST /images/{id}/tag requests
	sent       map[string]bool   // entries of every tar
	sentCount  map[string]int    // how many tars carried each entry
	layerFiles map[string]int    // layer files read, by entry name
	gzipLayers int               // of those, gzip-compressed
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/images/load" && r.Method == http.MethodPost {
		// Read the tar before taking the lock, as parallel loads do.
		files, err := readTar(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.loads++
		if err != nil {
			f.failed++
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f.load(w, files)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/_ping":
		w.Write([]byte("OK"))
	case r.URL.Path == "/info":
		status := [][2]string{{"Backing Filesystem", "extfs"}}
		if f.containerd {
			status = append(status, [2]string{"driver-type", containerdSnapshotter})
		}
		json.NewEncoder(w).Encode(map[string]any{"ServerVersion": "fake", "DriverStatus": status})
	case strings.HasPrefix(r.URL.Path, "/images/") && strings.HasSuffix(r.URL.Path, "/json"):
		n := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/images/"), "/json")
		id, ok := f.images[n]
		if !ok {
			for _, v := range f.images {
				if v == n {
					id, ok = v, true
				}
			}
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such image: %s"}`, n)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"Id": id})
	case strings.HasPrefix(r.URL.Path, "/images/") && strings.HasSuffix(r.URL.Path, "/tag") && r.Method == http.MethodPost:
		f.tags++
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/images/"), "/tag")
		if _, ok := f.images[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such image: %s"}`, id)
			return
		}
		f.images[r.URL.Query().Get("repo")+":"+r.URL.Query().Get("tag")] = id
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// tarFile is an entry of a tar sent to the fake: its content when small,
// and the sha256 of what it decompresses to (of itself if not gzip).
type tarFile struct {
	data   []byte
	gzip   bool
	diffID v1.Hash
}

func readTar(r io.Reader) (map[string]tarFile, error) {
	files := map[string]tarFile{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		br := bufio.NewReader(tr)
		var tf tarFile
		var src io.Reader = br
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, err
			}
			tf.gzip, src = true, zr
		}
		var keep bytes.Buffer
		sum := sha256.New()
		if _, err := io.Copy(io.MultiWriter(sum, &limitedBuffer{&keep, 1 << 20}), src); err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, err
		}
		tf.data = keep.Bytes()
		tf.diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum.Sum(nil))}
		files[h.Name] = tf
	}
}

type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.b.Len() < l.n {
		l.b.Write(p[:min(len(p), l.n-l.b.Len())])
	}
	return len(p), nil
}

// load loads the images of a tar read whole.
func (f *fakeEngine) load(w http.ResponseWriter, files map[string]tarFile) {
	for n := range files {
		f.sent[n] = true
		f.sentCount[n]++
	}
	enc := json.NewEncoder(w)
	if f.fail != "" {
		enc.Encode(map[string]any{"errorDetail": map[string]string{"message": f.fail}, "error": f.fail})
		return
	}
	if f.containerd {
		var index v1.IndexManifest
		json.Unmarshal(files[tarball.OCIIndexFile].data, &index)
		for _, d := range index.Manifests {
			ref, _ := manifests.ParseReference(d.Annotations[tarball.AnnotationRefName])
			n := manifests.FamiliarName(ref)
			if _, isDigest := ref.(interface{ DigestStr() string }); isDigest {
				n = manifests.FullName(ref)
			}
			f.images[n] = d.Digest.String()
			enc.Encode(map[string]string{"stream": "Loaded image: " + n + "\n"})
		}
		return
	}
	var manifest []tarball.DockerManifestEntry
	if err := json.Unmarshal(files[tarball.DockerManifest].data, &manifest); err != nil {
		enc.Encode(map[string]any{"errorDetail": map[string]string{"message": "manifest.json: " + err.Error()}})
		return
	}
	for _, e := range manifest {
		var cf v1.ConfigFile
		if err := json.Unmarshal(files[e.Config].data, &cf); err != nil {
			enc.Encode(map[string]any{"errorDetail": map[string]string{"message": e.Config + ": " + err.Error()}})
			return
		}
		var chain v1.Hash
		for i, d := range cf.RootFS.DiffIDs {
			if i == 0 {
				chain = d
			} else {
				sum := sha256.Sum256([]byte(chain.String() + " " + d.String()))
				chain = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
			}
			if f.chains[chain] {
				continue
			}
			lf, ok := files[e.Layers[i]]
			if !ok {
				enc.Encode(map[string]any{"errorDetail": map[string]string{"message": "open " + e.Layers[i] + ": no such file or directory"}})
				return
			}
			f.layerFiles[e.Layers[i]]++
			if lf.gzip {
				f.gzipLayers++
			}
			if lf.diffID != d {
				enc.Encode(map[string]any{"errorDetail": map[string]string{"message": fmt.Sprintf("invalid diffID for layer %d: expected %q, got %q", i, d, lf.diffID)}})
				return
			}
			f.chains[chain] = true
		}
		id := "sha256:" + strings.TrimPrefix(e.Config, tarball.BlobsSHA256Dir)
		f.images[id] = id
		for _, tag := range e.RepoTags {
			f.images[tag] = id
			enc.Encode(map[string]string{"stream": "Loaded image: " + tag + "\n"})
		}
		if len(e.RepoTags) == 0 {
			enc.Encode(map[string]string{"stream": "Loaded image ID: " + id + "\n"})
		}
	}
}

func fakeDaemon(t *testing.T, f *fakeEngine) *Daemon {
	return fakeDaemonJobs(t, f, 0)
}

// fakeDaemonJobs is fakeDaemon with Options.Jobs set (streams = jobs/2).
func fakeDaemonJobs(t *testing.T, f *fakeEngine, jobs int) *Daemon {
	return fakeDaemonHandler(t, f, f, jobs)
}

// fakeDaemonHandler serves h, which wraps f.
func fakeDaemonHandler(t *testing.T, h http.Handler, f *fakeEngine, jobs int) *Daemon {
	f.images = map[string]string{}
	f.chains = map[v1.Hash]bool{}
	f.sent = map[string]bool{}
	f.sentCount = map[string]int{}
	f.layerFiles = map[string]int{}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	d, err := NewDaemon(Options{DockerHost: "tcp://" + strings.TrimPrefix(s.URL, "http://"), Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDaemonStores(t *testing.T) {
	for _, containerd := range []bool{false, true} {
		t.Run(fmt.Sprintf("containerd=%v", containerd), func(t *testing.T) {
			f := &fakeEngine{containerd: containerd}
			d := fakeDaemon(t, f)
			images, _ := standardImages(t, "example.com/fake")
			fx := writeBundle(t, t.TempDir(), images)
			b, sel := openFixture(t, fx, Selection{})
			res, err := d.Load(context.Background(), b, sel, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, im := range sel {
				want := im.Primary.Config
				if containerd {
					want = im.Digest
				}
				if r := res.Images[i]; r.Status != StatusLoaded || r.Digest != want {
					t.Errorf("%s: %s %s, want loaded %s", im.Ref, r.Status, r.Digest, want)
				}
			}
			// The classic store gets one platform of the index; the
			// containerd store gets every platform the bundle carries.
			multi := sel[3]
			arm := multi.Manifests[1]
			f.mu.Lock()
			if got := f.sent[tarball.BlobPath(arm.Config)]; got != containerd {
				t.Errorf("the arm64 config was sent: %v, want %v", got, containerd)
			}
			loads := f.loads
			f.mu.Unlock()
			again, err := d.Load(context.Background(), b, sel, nil)
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if again.Count(StatusSkipped) != len(sel) || f.loads != loads {
				t.Errorf("second load: %d skipped, %d POSTs; want %d and none", again.Count(StatusSkipped), f.loads-loads, len(sel))
			}
		})
	}
}

// An error in the daemon's message stream is an error, not a warning.
func TestDaemonError(t *testing.T) {
	f := &fakeEngine{fail: "open /var/lib/docker/tmp/x: no space left on device"}
	d := fakeDaemon(t, f)
	images, _ := standardImages(t, "example.com/fail")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, sel := openFixture(t, fx, Selection{})
	_, err := d.Load(context.Background(), b, sel, nil)
	var de *DaemonError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("Load: %v, want the daemon's error", err)
	}
}

// DOCKER_HOST=tcp://… reaches a real daemon too (through a TCP forwarder
// to its socket here).
func TestDaemonTCP(t *testing.T) {
	dd := testenv.SharedDockerd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", dd.Socket)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	d, err := NewDaemon(Options{DockerHost: "tcp://" + l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	images, _ := standardImages(t, "example.com/"+testenv.Unique("tcp"))
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, sel := openFixture(t, fx, Selection{})
	res, err := d.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images[0].Status != StatusLoaded || res.Images[0].Digest != sel[0].Primary.Config {
		t.Errorf("over tcp: %+v", res.Images[0])
	}
}
