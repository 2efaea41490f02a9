package load

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// targetCase is one implementation of Target under the conformance suite.
type targetCase struct {
	name string
	// fresh returns a target with nothing in it (its own prefix, directory
	// or images).
	fresh func(t *testing.T) Target
	// names returns what the target names im with, found without the
	// Target's own code where possible ("" for nothing).
	names func(t *testing.T, tg Target, im Chosen) string
	// want is what names should return once im is loaded.
	want func(im Chosen) string
}

func registryCase(name string, host func(t *testing.T) string) targetCase {
	return targetCase{
		name: name,
		fresh: func(t *testing.T) Target {
			r, err := NewRegistry(host(t)+"/"+testenv.Unique("mirror"), Options{Jobs: 3})
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		names: func(t *testing.T, tg Target, im Chosen) string {
			ref, err := tg.(*Registry).rewrite(im)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Head(ref)
			if err != nil {
				return ""
			}
			return desc.Digest.String()
		},
		want: func(im Chosen) string {
			if im.Complete {
				return im.Digest.String()
			}
			return im.Primary.Digest.String()
		},
	}
}

var (
	memRegOnce sync.Once
	memRegHost string
)

// memRegistry is go-containerregistry's in-memory registry, shared by the
// tests of this package.
func memRegistry(t *testing.T) string {
	memRegOnce.Do(func() {
		s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		memRegHost = strings.TrimPrefix(s.URL, "http://")
	})
	return memRegHost
}

// realRegistry is the test binary's shared CNCF distribution registry.
func realRegistry(t *testing.T) string { return testenv.SharedRegistry(t).Host }

func targetCases() []targetCase {
	return []targetCase{
		registryCase("registry/in-memory", memRegistry),
		registryCase("registry/distribution", realRegistry),
		{
			name: "layout",
			fresh: func(t *testing.T) Target {
				l, err := NewLayout(t.TempDir()+"/oci", Options{Jobs: 3})
				if err != nil {
					t.Fatal(err)
				}
				return l
			},
			names: func(t *testing.T, tg Target, im Chosen) string {
				li, err := layoutIndexOf(tg.(*Layout))
				if err != nil {
					t.Fatal(err)
				}
				d, ok := li.lookup(im.Ref)
				if !ok {
					return ""
				}
				// Every blob the entry needs is there and intact.
				data, mans := layoutBlobs(im)
				for _, h := range append(data, mans...) {
					if ok, err := blobIntact(tg.(*Layout), h); err != nil || !ok {
						t.Errorf("%s: blob %s not intact in the layout (%v)", im.Ref, h, err)
					}
				}
				return d.String()
			},
			want: func(im Chosen) string { return im.Digest.String() },
		},
		{
			name: "daemon",
			fresh: func(t *testing.T) Target {
				d := testenv.SharedDockerd(t)
				tg, err := NewDaemon(Options{DockerHost: d.Host})
				if err != nil {
					t.Fatal(err)
				}
				return tg
			},
			names: func(t *testing.T, tg Target, im Chosen) string {
				d := tg.(*Daemon)
				id, _, err := d.present(t.Context(), im, false)
				if err != nil {
					t.Fatal(err)
				}
				if !im.Tagged() {
					// An untagged image is found by its ID.
					id, _ = d.inspect(t.Context(), im.Primary.Config.String())
				}
				return id
			},
			want: func(im Chosen) string { return im.Primary.Config.String() },
		},
	}
}

type recorder struct {
	mu      sync.Mutex
	done    []ImageResult
	sent    int64
	retries int
	planned int
}

func (r *recorder) Planned(images, _ int, _ int64) { r.mu.Lock(); r.planned = images; r.mu.Unlock() }
func (r *recorder) Sent(n int64)                   { r.mu.Lock(); r.sent += n; r.mu.Unlock() }
func (r *recorder) Done(ir ImageResult)            { r.mu.Lock(); r.done = append(r.done, ir); r.mu.Unlock() }
func (r *recorder) Retry(string, int, string, time.Duration) {
	r.mu.Lock()
	r.retries++
	r.mu.Unlock()
}

// The conformance suite: every Target loads, skips what it has, reports
// what it did, and names nothing when a blob changed after verification.
func TestTargetConformance(t *testing.T) {
	for _, tc := range targetCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("load check reload", func(t *testing.T) {
				tg := tc.fresh(t)
				images, _ := standardImages(t, "example.com/"+testenv.Unique("team"))
				fx := writeBundle(t, t.TempDir(), images)
				b, sel := openFixture(t, fx, Selection{})
				ctx := context.Background()
				if err := tg.Ping(ctx); err != nil {
					t.Fatalf("Ping: %v", err)
				}

				before, err := tg.Check(ctx, b, sel)
				if err != nil {
					t.Fatal(err)
				}
				if n := before.Count(StatusMissing); n != len(sel) {
					t.Errorf("Check before loading: %d missing, want %d: %s", n, len(sel), mustJSON(t, before.Images))
				}
				if before.BlobsSent == 0 || before.BytesSent == 0 {
					t.Errorf("Check before loading says nothing to send: %+v", before.Stats)
				}
				for _, im := range sel {
					if got := tc.names(t, tg, im); got != "" {
						t.Errorf("%s named %s before the load", im.Ref, got)
					}
				}

				res, err := tg.Load(ctx, b, sel, nil)
				if err != nil {
					t.Fatal(err)
				}
				if n := res.Count(StatusLoaded); n != len(sel) {
					t.Errorf("Load: %d loaded, want %d: %s", n, len(sel), mustJSON(t, res.Images))
				}
				if res.BytesSent == 0 {
					t.Errorf("Load sent no bytes: %+v", res.Stats)
				}
				for i, im := range sel {
					if got, want := tc.names(t, tg, im), tc.want(im); got != want {
						t.Errorf("%s: the target names %q, want %s", im.Ref, got, want)
					}
					if res.Images[i].Ref != im.Ref || res.Images[i].Digest.String() != tc.want(im) {
						t.Errorf("result %d: %+v, want ref %s digest %s", i, res.Images[i], im.Ref, tc.want(im))
					}
				}

				after, err := tg.Check(ctx, b, sel)
				if err != nil {
					t.Fatal(err)
				}
				if n := after.Count(StatusPresent); n != len(sel) {
					t.Errorf("Check after loading: %d present, want %d: %s", n, len(sel), mustJSON(t, after.Images))
				}

				again, err := tg.Load(ctx, b, sel, nil)
				if err != nil {
					t.Fatal(err)
				}
				if n := again.Count(StatusSkipped); n != len(sel) {
					t.Errorf("second Load: %d skipped, want %d: %s", n, len(sel), mustJSON(t, again.Images))
				}
				if again.BlobsSent != 0 || again.BytesSent != 0 || again.ManifestsSent != 0 {
					t.Errorf("second Load sent something: %+v", again.Stats)
				}
			})

			t.Run("partial index", func(t *testing.T) {
				tg := tc.fresh(t)
				fx := writeBundle(t, t.TempDir(), []testImage{
					{ref: "example.com/" + testenv.Unique("team") + "/multi:2", index: newIndex(t, "linux/amd64", "linux/arm64/v8"), keep: []int{1}},
				})
				b, sel := openFixture(t, fx, Selection{})
				if len(sel) != 1 || sel[0].Complete || sel[0].IndexManifests != 2 {
					t.Fatalf("selection: %+v", sel)
				}
				res, err := tg.Load(context.Background(), b, sel, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := tc.names(t, tg, sel[0]), tc.want(sel[0]); got != want {
					t.Errorf("the target names %q, want %s", got, want)
				}
				if _, isReg := tg.(*Registry); isReg && !strings.Contains(res.Images[0].Note, "1 of the 2 platforms") {
					t.Errorf("no note on the partial index: %+v", res.Images[0])
				}
			})

			t.Run("changed after verification", func(t *testing.T) {
				tg := tc.fresh(t)
				images, _ := standardImages(t, "example.com/"+testenv.Unique("changed"))
				fx := writeBundle(t, t.TempDir(), images[:2])
				b, sel := openFixture(t, fx, Selection{})
				flipByteOf(t, fx.path, b, firstLayer(fx))
				_, err := tg.Load(context.Background(), b, sel, nil)
				var ce *ChangedError
				if !errors.As(err, &ce) {
					t.Fatalf("Load of a changed bundle: %v, want a *ChangedError", err)
				}
				for _, im := range sel {
					if got := tc.names(t, tg, im); got != "" {
						t.Errorf("%s is named %s after a failed load", im.Ref, got)
					}
				}
			})
		})
	}
}

// TestMain stops the registry and dockerd the tests started.
func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// Ping fails, saying why, for a target that cannot be reached or written.
func TestPingFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	for _, tt := range []struct{ spec, want string }{
		{"docker://127.0.0.1:1/x", "connection refused"},
		{"oci:" + file + "/sub", "not a directory"},
	} {
		tg, err := ParseTarget(tt.spec, Options{Access: fetch.Access{Retry: fastRetry}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Ping %s: %v, want an error saying %q", tt.spec, err, tt.want)
		}
	}
	d, _ := NewDaemon(Options{DockerHost: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err := d.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot reach the docker daemon") {
		t.Errorf("Ping of a missing daemon: %v", err)
	}
}
