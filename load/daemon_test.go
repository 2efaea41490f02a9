package load

import (
	"archive/tar"
	"context"
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

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fakeEngine answers the Engine API calls a load makes, like a daemon with
// the classic image store (image ID = config digest, names from
// manifest.json) or the containerd image store (image ID = the digest
// index.json names, names from its annotations).
type fakeEngine struct {
	containerd bool
	fail       string // an errorDetail message POST /images/load answers with

	mu     sync.Mutex
	images map[string]string // name → image ID
	loads  int
	sent   map[string]bool // entries of the last tar
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	case r.URL.Path == "/images/load" && r.Method == http.MethodPost:
		f.loads++
		f.sent = map[string]bool{}
		var manifest []tarball.DockerManifestEntry
		var index v1.IndexManifest
		tr := tar.NewReader(r.Body)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			f.sent[h.Name] = true
			switch h.Name {
			case tarball.DockerManifest:
				json.NewDecoder(tr).Decode(&manifest)
			case tarball.OCIIndexFile:
				json.NewDecoder(tr).Decode(&index)
			}
		}
		io.Copy(io.Discard, r.Body)
		enc := json.NewEncoder(w)
		if f.fail != "" {
			enc.Encode(map[string]any{"errorDetail": map[string]string{"message": f.fail}, "error": f.fail})
			return
		}
		if f.containerd {
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
		for _, e := range manifest {
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
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func fakeDaemon(t *testing.T, f *fakeEngine) *Daemon {
	f.images = map[string]string{}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	d, err := NewDaemon(Options{DockerHost: "tcp://" + strings.TrimPrefix(s.URL, "http://")})
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
			if got := f.sent[tarball.BlobPath(arm.Config)]; got != containerd {
				t.Errorf("the arm64 config was sent: %v, want %v", got, containerd)
			}
			again, err := d.Load(context.Background(), b, sel, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.Count(StatusSkipped) != len(sel) || f.loads != 1 {
				t.Errorf("second load: %d skipped, %d POSTs; want %d and 1", again.Count(StatusSkipped), f.loads, len(sel))
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
	dd := realDockerd(t)
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
	images, _ := standardImages(t, "example.com/"+uniq("tcp"))
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
