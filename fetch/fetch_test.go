package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// faults wraps a registry handler and misbehaves on blob GETs as told.
type faults struct {
	next http.Handler
	mu   sync.Mutex
	// plan is consumed one fault per blob GET; "" passes through.
	plan   []string
	ranges []string // Range headers of blob GETs, in order
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		f.next.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.ranges = append(f.ranges, r.Header.Get("Range"))
	mode := ""
	if len(f.plan) > 0 {
		mode, f.plan = f.plan[0], f.plan[1:]
	}
	f.mu.Unlock()
	switch mode {
	case "429":
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	case "503":
		w.WriteHeader(http.StatusServiceUnavailable)
	case "reset", "corrupt":
		rec := httptest.NewRecorder()
		f.next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if mode == "corrupt" {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0xff
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		}
		// Send half the body, then cut the connection.
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		testenv.ResetConnection(w)
	default:
		f.next.ServeHTTP(w, r)
	}
}

func pushBlob(t *testing.T, host string, data []byte) (name.Repository, v1.Descriptor) {
	t.Helper()
	repo, err := name.NewRepository(host + "/test/blob")
	if err != nil {
		t.Fatal(err)
	}
	l := static.NewLayer(data, types.DockerLayer)
	if err := remote.WriteLayer(repo, l); err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	return repo, v1.Descriptor{Digest: d, Size: int64(len(data)), MediaType: types.DockerLayer}
}

type recorder struct {
	retries atomic.Int64
	bytes   atomic.Int64
	waits   []time.Duration
	mu      sync.Mutex
}

func (r *recorder) Retry(_ string, _ int, _ string, d time.Duration) {
	r.retries.Add(1)
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
}
func (r *recorder) Downloaded(n int64) { r.bytes.Add(n) }

func TestFetchBlobFaults(t *testing.T) {
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	fast := RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Second}
	tests := []struct {
		name       string
		plan       []string
		wantErr    string
		wantRanges []string // Range headers seen, "" for a plain GET
		minWait    time.Duration
	}{
		{name: "clean", plan: nil, wantRanges: []string{""}},
		{name: "429 honours Retry-After", plan: []string{"429"}, wantRanges: []string{"", ""}, minWait: time.Second},
		{name: "503 then ok", plan: []string{"503", "503"}, wantRanges: []string{"", "", ""}},
		// The offset is what arrived before the reset: not known exactly.
		{name: "reset mid-body resumes with Range", plan: []string{"reset"},
			wantRanges: []string{"", fmt.Sprintf("bytes=N-%d", len(data)-1)}},
		{name: "corrupt once is fetched again", plan: []string{"corrupt"}, wantRanges: []string{"", ""}},
		{name: "corrupt always fails", plan: []string{"corrupt", "corrupt", "corrupt", "corrupt"}, wantErr: "digest mismatch"},
		{name: "503 always fails", plan: []string{"503", "503", "503", "503"}, wantErr: "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &faults{next: registry.New(registry.Logger(nilLogger()))}
			srv := httptest.NewServer(f)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			repo, desc := pushBlob(t, host, data)
			f.mu.Lock()
			f.plan = tt.plan
			f.ranges = nil
			f.mu.Unlock()

			cache, err := OpenCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			c := New(Options{Access: Access{Keychain: authn.NewMultiKeychain(), Retry: fast}, Progress: rec, Cache: cache})
			start := time.Now()
			n, err := c.FetchBlob(context.Background(), repo, desc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if cache.Has(desc.Digest, -1) {
					t.Fatal("a blob that failed its checks is in the cache")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !cache.Has(desc.Digest, desc.Size) {
				t.Fatal("blob not in cache")
			}
			got, _ := os.ReadFile(cache.Path(desc.Digest))
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatal("cached blob differs from the pushed one")
			}
			if n < desc.Size {
				t.Errorf("received %d bytes, want at least %d", n, desc.Size)
			}
			f.mu.Lock()
			ranges := slices.Clone(f.ranges)
			f.mu.Unlock()
			for i, r := range ranges {
				// A resume must start past 0 and before the end.
				var a, b int
				if _, err := fmt.Sscanf(r, "bytes=%d-%d", &a, &b); err == nil && a > 0 && a < len(data) {
					ranges[i] = fmt.Sprintf("bytes=N-%d", b)
				}
			}
			if fmt.Sprint(ranges) != fmt.Sprint(tt.wantRanges) {
				t.Errorf("blob GETs with Range %q, want %q", ranges, tt.wantRanges)
			}
			if want := int64(len(tt.plan)); rec.retries.Load() != want || c.Retries() != want {
				t.Errorf("retries reported %d, counted %d, want %d", rec.retries.Load(), c.Retries(), want)
			}
			if el := time.Since(start); el < tt.minWait {
				t.Errorf("took %s, want at least %s (Retry-After)", el, tt.minWait)
			}
			// Nothing left in ingest.
			left, _ := filepath.Glob(filepath.Join(cache.Dir(), "ingest", "*.partial"))
			if len(left) != 0 {
				t.Errorf("partial files left: %v", left)
			}
			// A second fetch is a cache hit.
			if n, err := c.FetchBlob(context.Background(), repo, desc); err != nil || n != 0 {
				t.Errorf("second fetch: %d bytes, %v; want a cache hit", n, err)
			}
		})
	}
}

func TestResumeAcrossRuns(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	f := &faults{next: registry.New(registry.Logger(nilLogger()))}
	srv := httptest.NewServer(f)
	defer srv.Close()
	repo, desc := pushBlob(t, strings.TrimPrefix(srv.URL, "http://"), data)
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A run killed midway left the first 100000 bytes.
	if err := os.WriteFile(cache.partialPath(desc.Digest), data[:100000], 0o644); err != nil {
		t.Fatal(err)
	}
	f.ranges = nil
	c := New(Options{Access: Access{Keychain: authn.NewMultiKeychain()}, Cache: cache})
	n, err := c.FetchBlob(context.Background(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	if want := desc.Size - 100000; n != want {
		t.Errorf("downloaded %d bytes, want %d (only what the partial lacked)", n, want)
	}
	if want := fmt.Sprintf("bytes=100000-%d", desc.Size-1); len(f.ranges) != 1 || f.ranges[0] != want {
		t.Errorf("Range headers %q, want [%q]", f.ranges, want)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{"soon", 0, false},
	} {
		h := http.Header{}
		if tt.v != "" {
			h.Set("Retry-After", tt.v)
		}
		got, ok := retryAfter(h, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSelectManifests(t *testing.T) {
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{
		{MediaType: types.DockerManifestSchema2, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{MediaType: types.DockerManifestSchema2, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}, Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}, Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}},
	}}
	for _, tt := range []struct {
		plats   []string
		want    string
		wantErr string
	}{
		{[]string{"linux/amd64"}, "a", ""},
		{[]string{"linux/arm64"}, "b", ""},
		{[]string{"linux/arm64", "linux/amd64"}, "ab", ""},
		{[]string{"all"}, "abc", ""},
		{[]string{"linux/s390x"}, "", "no manifest for platform linux/s390x (the index has: linux/amd64, linux/arm64/v8)"},
	} {
		got, err := SelectManifests(idx, tt.plats)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%v: err %v, want %q", tt.plats, err, tt.wantErr)
			}
			continue
		}
		var s string
		for _, d := range got {
			s += d.Digest.Hex[:1]
		}
		if err != nil || s != tt.want {
			t.Errorf("%v: got %q, %v; want %q", tt.plats, s, err, tt.want)
		}
	}
}

// An index may list one manifest twice: it is selected once, with the
// platform every entry of it satisfies; entries naming two architectures
// for one manifest are refused.
func TestSelectManifestsDuplicates(t *testing.T) {
	h := func(c string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(c, 64)} }
	d := func(c string, p *v1.Platform) v1.Descriptor {
		return v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: h(c), Size: 100, Platform: p}
	}
	amd64v2 := &v1.Platform{OS: "linux", Architecture: "amd64", Variant: "v2"}
	amd64 := &v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := &v1.Platform{OS: "linux", Architecture: "arm64"}
	for _, tt := range []struct {
		name    string
		idx     []v1.Descriptor
		plats   []string
		want    string // digests' first letters, then each platform
		wantErr string
	}{
		{"twice, all", []v1.Descriptor{d("a", amd64v2), d("a", amd64), d("b", arm64)}, []string{"all"}, "a linux/amd64,b linux/arm64", ""},
		{"twice, both asked", []v1.Descriptor{d("a", amd64v2), d("a", amd64)}, []string{"linux/amd64", "linux/amd64/v2"}, "a linux/amd64", ""},
		{"twice, variant asked", []v1.Descriptor{d("a", amd64v2), d("a", amd64)}, []string{"linux/amd64/v2"}, "a linux/amd64", ""},
		{"twice, once without platform", []v1.Descriptor{d("a", nil), d("a", amd64v2)}, []string{"all"}, "a linux/amd64/v2", ""},
		{"two architectures", []v1.Descriptor{d("a", amd64), d("a", arm64)}, []string{"linux/amd64"}, "",
			"the index lists manifest sha256:" + strings.Repeat("a", 64) + " both as linux/amd64 and as linux/arm64"},
	} {
		got, err := SelectManifests(&v1.IndexManifest{Manifests: tt.idx}, tt.plats)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		var s []string
		for _, g := range got {
			s = append(s, g.Digest.Hex[:1]+" "+PlatformString(g.Platform))
		}
		if err != nil || strings.Join(s, ",") != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, strings.Join(s, ","), err, tt.want)
		}
	}
	// The index itself is not changed.
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{d("a", amd64v2), d("a", amd64)}}
	if _, err := SelectManifests(idx, []string{"all"}); err != nil || idx.Manifests[0].Platform.Variant != "v2" {
		t.Errorf("SelectManifests changed the index: %v, %+v", err, idx.Manifests[0].Platform)
	}
}
