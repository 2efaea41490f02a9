package main

// Reliability of bundle load (issue 5, load side): registry faults injected
// by testenv.FaultProxy (and, for what it cannot do to a request body, by
// uploadMangler below) in front of a real registry while load pushes; a
// load interrupted midway; a fault loop that runs longer with BUNDLE_LONG;
// then (TestHostile*) hostile bundles (testdata/hostile), bundles whose
// bundle.json lies, and archives of other tools, refused by every target
// with nothing written. docs/RELIABILITY.md maps each fault to its test.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// faultBundle is a bundle of app-a, app-b (single platform, a shared base
// layer) and multi (an index, both platforms), made once per test binary
// from the shared registry.
var faultBundle struct {
	once   sync.Once
	path   string
	idx    *tarball.Index
	seeded *testenv.Seeded
	err    error
}

func loadFaultBundle(t *testing.T) (string, *tarball.Index, *testenv.Seeded) {
	t.Helper()
	_, seeded := testenv.SharedSeeded(t)
	faultBundle.once.Do(func() {
		dir, err := testenv.SharedDir("bundle-loadfault-")
		if err != nil {
			faultBundle.err = err
			return
		}
		var y strings.Builder
		y.WriteString("platforms: [linux/amd64, linux/arm64]\nimages:\n")
		for _, n := range []string{testenv.ImageAppA, testenv.ImageAppB, testenv.ImageMulti} {
			im, _ := seeded.Lookup(n)
			fmt.Fprintf(&y, "  - %s\n", im.Ref)
		}
		yaml := filepath.Join(dir, "images.yaml")
		if err := os.WriteFile(yaml, []byte(y.String()), 0o644); err != nil {
			faultBundle.err = err
			return
		}
		out := filepath.Join(dir, "images.tar")
		if _, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache")); code != 0 {
			faultBundle.err = fmt.Errorf("bundle create: exit %d: %s", code, stderr)
			return
		}
		faultBundle.path, faultBundle.seeded = out, seeded
	})
	if faultBundle.err != nil {
		t.Fatal(faultBundle.err)
	}
	if faultBundle.idx == nil {
		faultBundle.idx = readIndex(t, faultBundle.path)
	}
	return faultBundle.path, faultBundle.idx, faultBundle.seeded
}

// regGet sends a request to the registry itself (not through any proxy).
func regGet(t *testing.T, method, u string, accept ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, body, resp.Header
}

var manifestTypes = []string{string(types.DockerManifestSchema2), string(types.DockerManifestList), string(types.OCIManifestSchema1), string(types.OCIImageIndex)}

// registryTags asks the registry directly for every repository and its
// tags.
func registryTags(t *testing.T, reg *testenv.Registry) map[string][]string {
	t.Helper()
	var repos []string
	next := "/v2/_catalog?n=1000"
	for next != "" {
		code, body, hdr := regGet(t, http.MethodGet, reg.URL+next)
		if code != http.StatusOK {
			t.Fatalf("catalog: %d %s", code, body)
		}
		var cat struct{ Repositories []string }
		if err := json.Unmarshal(body, &cat); err != nil {
			t.Fatal(err)
		}
		repos = append(repos, cat.Repositories...)
		// Link: </v2/_catalog?last=…&n=1000>; rel="next"
		next = ""
		if l := hdr.Get("Link"); strings.HasPrefix(l, "<") {
			next, _, _ = strings.Cut(l[1:], ">")
		}
	}
	out := map[string][]string{}
	for _, repo := range repos {
		code, body, _ := regGet(t, http.MethodGet, reg.URL+"/v2/"+repo+"/tags/list")
		var tl struct{ Tags []string }
		if code == http.StatusOK {
			_ = json.Unmarshal(body, &tl)
		}
		out[repo] = tl.Tags
	}
	return out
}

// checkNoIncompleteTags proves, asking the registry itself, that every tag
// it holds names a complete image: for an index every child manifest, for
// every manifest its config and every layer, present in the repository.
// It returns the tags ("repo:tag") and the digest each names.
func checkNoIncompleteTags(t *testing.T, reg *testenv.Registry) map[string]string {
	t.Helper()
	named := map[string]string{}
	for repo, tags := range registryTags(t, reg) {
		for _, tag := range tags {
			d := checkComplete(t, reg, repo, tag, 0)
			named[repo+":"+tag] = d
		}
	}
	return named
}

// checkComplete checks that repo's manifest ref and all it references are
// there, and returns its digest.
func checkComplete(t *testing.T, reg *testenv.Registry, repo, ref string, depth int) string {
	t.Helper()
	code, body, hdr := regGet(t, http.MethodGet, reg.URL+"/v2/"+repo+"/manifests/"+ref, manifestTypes...)
	if code != http.StatusOK {
		t.Errorf("%s:%s is named but its manifest is not there (%d): an incomplete image", repo, ref, code)
		return ""
	}
	var m struct {
		MediaType string
		Config    v1.Descriptor
		Layers    []v1.Descriptor
		Manifests []v1.Descriptor
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("%s:%s: %v", repo, ref, err)
		return ""
	}
	mt := types.MediaType(hdr.Get("Content-Type"))
	if mt.IsIndex() && depth == 0 {
		for _, c := range m.Manifests {
			checkComplete(t, reg, repo, c.Digest.String(), depth+1)
		}
	} else {
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if code, _, _ := regGet(t, http.MethodHead, reg.URL+"/v2/"+repo+"/blobs/"+b.Digest.String()); code != http.StatusOK {
				t.Errorf("%s:%s names a manifest whose blob %s is missing (%d): an incomplete image", repo, ref, b.Digest, code)
			}
		}
	}
	return hdr.Get("Docker-Content-Digest")
}

// checkLoadedAt checks that every image of idx is in reg under prefix with
// the digest bundle.json records (every index here is complete).
func checkLoadedAt(t *testing.T, reg *testenv.Registry, prefix string, idx *tarball.Index) {
	t.Helper()
	named := checkNoIncompleteTags(t, reg)
	for _, im := range idx.Images {
		ref, err := load.RewriteRef(mustRef(t, im.Ref), mustRegistry(t, reg.Host), prefix)
		if err != nil {
			t.Fatal(err)
		}
		key := ref.Context().RepositoryStr() + ":" + ref.Identifier()
		if got := named[key]; got != im.Digest.String() {
			t.Errorf("%s names %q in the registry; bundle.json records %s", key, got, im.Digest)
		}
	}
}

// tagsUnder returns the tags of the repositories under prefix.
func tagsUnder(t *testing.T, reg *testenv.Registry, prefix string) []string {
	t.Helper()
	var out []string
	for repo, tags := range registryTags(t, reg) {
		if strings.HasPrefix(repo, prefix+"/") {
			for _, tag := range tags {
				out = append(out, repo+":"+tag)
			}
		}
	}
	return out
}

// uploadMangler acts, in a reverse proxy on 127.0.0.1 (for what
// FaultProxy cannot do), on the request bodies of blob uploads (PATCH):
// it trickles them at a set rate (a slow link, or a registry that reads
// slowly) or flips one byte in them.
type uploadMangler struct {
	*testenv.ReverseProxy
	rate      atomic.Int64 // bytes a second of PATCH bodies; 0: as fast as they come
	corrupt   atomic.Int64 // PATCH bodies still to corrupt; < 0: every one
	corrupted atomic.Int64 // PATCH bodies corrupted
	patched   atomic.Int64 // PATCH body bytes passed on
}

func startMangler(t *testing.T, upstream string) *uploadMangler {
	t.Helper()
	m := &uploadMangler{}
	m.ReverseProxy = testenv.StartReverseProxy(t, upstream, testenv.ProxyHooks{Request: m.mangle})
	return m
}

func (m *uploadMangler) mangle(_ *testenv.ReverseProxy, _ http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.Body != nil {
		var body io.Reader = r.Body
		if n := m.corrupt.Load(); n != 0 && (n < 0 || m.corrupt.CompareAndSwap(n, n-1)) {
			m.corrupted.Add(1)
			body = testenv.FlipReader(body, 10, 0)
		}
		body = &trickle{r: body, rate: m.rate.Load(), done: r.Context().Done(), count: &m.patched}
		r.Body = io.NopCloser(body)
	}
	return false
}

// trickle passes at most rate bytes a second (all of them when rate is 0),
// stopping when done closes.
type trickle struct {
	r     io.Reader
	rate  int64
	done  <-chan struct{}
	count *atomic.Int64
}

func (s *trickle) Read(p []byte) (int, error) {
	if s.rate > 0 {
		const tick = 50 * time.Millisecond
		chunk := max(int(s.rate*int64(tick)/int64(time.Second)), 1)
		if len(p) > chunk {
			p = p[:chunk]
		}
		select {
		case <-time.After(tick):
		case <-s.done:
			return 0, io.ErrUnexpectedEOF
		}
	}
	n, err := s.r.Read(p)
	s.count.Add(int64(n))
	return n, err
}

// loadFaults are the images and blobs the fault tests aim at.
type loadFaults struct {
	bundle string
	idx    *tarball.Index
	shared v1.Hash // the base layer of app-a and app-b
	arm    v1.Hash // multi's linux/arm64/v8 manifest
	refs   map[string]string
}

func newLoadFaults(t *testing.T) *loadFaults {
	path, idx, seeded := loadFaultBundle(t)
	f := &loadFaults{bundle: path, idx: idx, shared: seeded.SharedLayer, refs: map[string]string{}}
	multi := seeded.Find(t, testenv.ImageMulti)
	for _, m := range multi.Manifests {
		if strings.HasPrefix(strings.Join(m.Platforms, ","), "linux/arm64") {
			f.arm = m.Digest
		}
	}
	if f.arm.Hex == "" {
		t.Fatal("no linux/arm64 manifest in the seeded index")
	}
	for _, im := range idx.Images {
		for _, n := range []string{testenv.ImageAppA, testenv.ImageAppB, testenv.ImageMulti} {
			if strings.Contains(im.Ref, "/seed/"+n+":") {
				f.refs[n] = im.Ref
			}
		}
	}
	return f
}

// Transient registry faults while load pushes: load finishes, every tag in
// the target names the digest bundle.json records (and a complete image),
// and the --json summary and the progress lines say how many retries it
// took.
func TestReliabilityLoadTransientFaults(t *testing.T) {
	testenv.Acceptance(t)
	f := newLoadFaults(t)
	reg := testenv.StartRegistry(t)
	plain := testenv.StartFaultProxy(t, reg.Host)
	bearer := testenv.StartFaultProxy(t, reg.Host, testenv.WithBearerAuth())
	mangler := startMangler(t, reg.Host)
	tests := []struct {
		name      string
		bearer    bool
		faults    []testenv.Fault
		rate      int64 // mangler: trickle uploads
		corrupt   int64 // mangler: corrupt this many uploads
		noRetries bool
		extra     int // retries allowed beyond one per fault
		minTime   time.Duration
	}{
		{name: "connection reset mid-upload", faults: []testenv.Fault{{Mode: testenv.FaultReset, Kind: testenv.KindUpload, Method: "PATCH", After: -1, Times: 2}}},
		// The registry committed the blob, the answer never came: the PUT
		// is retried on the spent session (404), then the upload, which
		// finds the blob there.
		{name: "connection reset after the upload is committed", extra: 1, faults: []testenv.Fault{{Mode: testenv.FaultReset, Kind: testenv.KindUpload, Method: "PUT", Times: 1}}},
		{name: "500, 502 and 503", faults: []testenv.Fault{
			{Mode: testenv.FaultStatus, Status: 500, Kind: testenv.KindUpload, Method: "POST", Times: 1},
			{Mode: testenv.FaultStatus, Status: 502, Kind: testenv.KindManifest, Method: "PUT", Times: 1},
			{Mode: testenv.FaultStatus, Status: 503, Kind: testenv.KindBlob, Method: "HEAD", Times: 2},
		}},
		{name: "429 with Retry-After", minTime: time.Second,
			faults: []testenv.Fault{{Mode: testenv.FaultTooManyRequests, RetryAfter: time.Second, Kind: testenv.KindUpload, Method: "POST", Times: 1}}},
		{name: "manifest PUT reset before the registry has it", faults: []testenv.Fault{{Mode: testenv.FaultReset, Kind: testenv.KindManifest, Method: "PUT", After: -1, Times: 1}}},
		{name: "manifest PUT reset after the registry stored it", faults: []testenv.Fault{{Mode: testenv.FaultReset, Kind: testenv.KindManifest, Method: "PUT", Times: 1}}},
		{name: "slow upload (256 KiB/s)", rate: 256 << 10, noRetries: true},
		{name: "upload corrupted on the way, once", corrupt: 1},
		{name: "slow token endpoint", bearer: true, noRetries: true,
			faults: []testenv.Fault{{Mode: testenv.FaultSlow, Rate: 1 << 10, Kind: testenv.KindToken}}},
		{name: "token endpoint fails once (500)", bearer: true,
			faults: []testenv.Fault{{Mode: testenv.FaultStatus, Status: 500, Kind: testenv.KindToken, Times: 1}}},
		{name: "token endpoint fails once (reset mid-body)", bearer: true,
			faults: []testenv.Fault{{Mode: testenv.FaultReset, Kind: testenv.KindToken, Times: 1}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plain
			if tt.bearer {
				p = bearer
			}
			host := p.Host
			p.ClearFaults()
			t.Cleanup(p.ClearFaults)
			mangler.corrupted.Store(0)
			var rules []*testenv.FaultRule
			for _, fl := range tt.faults {
				rules = append(rules, p.Inject(fl))
			}
			if tt.rate > 0 || tt.corrupt > 0 {
				host = mangler.Host
				mangler.rate.Store(tt.rate)
				mangler.corrupt.Store(tt.corrupt)
				t.Cleanup(func() { mangler.rate.Store(0); mangler.corrupt.Store(0) })
			}
			prefix := fmt.Sprintf("t%d", i)
			start := time.Now()
			stdout, stderr, code := bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+host+"/"+prefix)
			took := time.Since(start)
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			hits := int(mangler.corrupted.Load())
			for _, r := range rules {
				hits += r.Hits()
			}
			if hits == 0 && tt.rate == 0 {
				t.Fatal("no fault was injected")
			}
			res := jsonResult[bundle.LoadResult](t, stdout)
			if res.Loaded != len(f.idx.Images) {
				t.Errorf("%d images loaded, want %d", res.Loaded, len(f.idx.Images))
			}
			checkLoadedAt(t, reg, prefix, f.idx)
			want := int64(hits)
			if tt.noRetries {
				want = 0
			}
			if res.Retries < want || res.Retries > want+int64(tt.extra) {
				t.Errorf("--json reports %d retries; %d faults were injected (%d more allowed)", res.Retries, hits, tt.extra)
			}
			if n := retryLines(stderr); n != res.Retries {
				t.Errorf("stderr has %d retry lines, --json says %d:\n%s", n, res.Retries, stderr)
			}
			if took < tt.minTime {
				t.Errorf("took %s; Retry-After asked for %s", took, tt.minTime)
			}
			t.Logf("%d faults, %d retries, %s", hits, res.Retries, took.Round(time.Millisecond))
		})
	}

	t.Run("human summary", func(t *testing.T) {
		plain.ClearFaults()
		t.Cleanup(plain.ClearFaults)
		plain.Inject(testenv.Fault{Mode: testenv.FaultStatus, Status: 503, Kind: testenv.KindBlob, Method: "HEAD", Times: 2})
		_, stderr, code := bundleCLI(t, "load", "-i", f.bundle, "--to", "docker://"+plain.Host+"/human")
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "loaded 3 images") || !strings.Contains(last, "2 retries") {
			t.Errorf("last line %q, want the summary with \"2 retries\"", last)
		}
	})

	t.Run("no fault, no retry", func(t *testing.T) {
		for _, p := range []*testenv.FaultProxy{plain, bearer} {
			p.ClearFaults()
			stdout, stderr, code := bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+p.Host+"/clean"+strconv.FormatBool(p == bearer))
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			if res := jsonResult[bundle.LoadResult](t, stdout); res.Retries != 0 || retryLines(stderr) != 0 {
				t.Errorf("%d retries without a fault:\n%s", res.Retries, stderr)
			}
		}
	})
}

// Persistent registry faults while load pushes: one error line naming the
// image and the blob or manifest, exit 1, and no tag in the registry that
// names an incomplete image (the registry is asked directly). The same
// command without the fault then finishes the job.
func TestReliabilityLoadPersistentFaults(t *testing.T) {
	testenv.Acceptance(t)
	f := newLoadFaults(t)
	reg := testenv.StartRegistry(t)
	p := testenv.StartFaultProxy(t, reg.Host)
	mangler := startMangler(t, reg.Host)
	appA, appB, multi := f.refs[testenv.ImageAppA], f.refs[testenv.ImageAppB], f.refs[testenv.ImageMulti]
	tests := []struct {
		name    string
		fault   *testenv.Fault
		corrupt bool     // mangler: corrupt every upload
		images  []string // one of them must be named
		want    []string // fragments of the error
		notTag  []string // images that must have no tag
	}{
		{name: "503 on every HEAD of the shared layer",
			fault:  &testenv.Fault{Mode: testenv.FaultStatus, Status: 503, Kind: testenv.KindBlob, Method: "HEAD", Digest: f.shared.String()},
			images: []string{appA, appB}, want: []string{f.shared.String(), "503"}, notTag: []string{appA, appB}},
		{name: "reset on every upload",
			fault:  &testenv.Fault{Mode: testenv.FaultReset, Kind: testenv.KindUpload, Method: "PATCH", After: -1},
			images: []string{appA, appB, multi}, want: []string{"uploading blob sha256:", "connection reset"}, notTag: []string{appA, appB, multi}},
		{name: "500 on every upload commit",
			fault:  &testenv.Fault{Mode: testenv.FaultStatus, Status: 500, Kind: testenv.KindUpload, Method: "PUT"},
			images: []string{appA, appB, multi}, want: []string{"uploading blob sha256:", "500"}, notTag: []string{appA, appB, multi}},
		{name: "every upload corrupted on the way", corrupt: true,
			images: []string{appA, appB, multi}, want: []string{"uploading blob sha256:", "DIGEST_INVALID"}, notTag: []string{appA, appB, multi}},
		{name: "500 on the arm64 manifest of the index",
			fault:  &testenv.Fault{Mode: testenv.FaultStatus, Status: 500, Kind: testenv.KindManifest, Method: "PUT", Digest: f.arm.String()},
			images: []string{multi}, want: []string{"pushing manifest " + f.arm.String(), "500"}, notTag: []string{multi}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := p.Host
			var rule *testenv.FaultRule
			if tt.fault != nil {
				p.ClearFaults()
				t.Cleanup(p.ClearFaults)
				rule = p.Inject(*tt.fault)
			}
			if tt.corrupt {
				host = mangler.Host
				mangler.corrupt.Store(-1)
				mangler.corrupted.Store(0)
				t.Cleanup(func() { mangler.corrupt.Store(0) })
			}
			prefix := fmt.Sprintf("p%d", i)
			start := time.Now()
			_, stderr, code := bundleCLI(t, "load", "-q", "-i", f.bundle, "--to", "docker://"+host+"/"+prefix, "--retries", "3")
			took := time.Since(start)
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			if (rule != nil && rule.Hits() == 0) || (tt.corrupt && mangler.corrupted.Load() == 0) {
				t.Fatal("the fault was never injected")
			}
			msg := strings.TrimSpace(stderr)
			if !strings.HasPrefix(msg, "bundle: error: ") || strings.Contains(msg, "\n") {
				t.Errorf("want one 'bundle: error:' line, got:\n%s", stderr)
			}
			named := false
			for _, im := range tt.images {
				named = named || strings.Contains(msg, im)
			}
			if !named || !strings.Contains(msg, "image") {
				t.Errorf("the error names none of the images %v:\n%s", tt.images, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the error lacks %q:\n%s", w, msg)
				}
			}
			checkNoIncompleteTags(t, reg)
			tags := tagsUnder(t, reg, prefix)
			for _, im := range tt.notTag {
				ref, _ := load.RewriteRef(mustRef(t, im), mustRegistry(t, reg.Host), prefix)
				key := ref.Context().RepositoryStr() + ":" + ref.Identifier()
				for _, tag := range tags {
					if tag == key {
						t.Errorf("%s is tagged after the failed load", key)
					}
				}
			}
			t.Logf("%s (%s; tags left: %v)", msg, took.Round(time.Millisecond), tags)

			// Without the fault, the same command finishes the job.
			p.ClearFaults()
			mangler.corrupt.Store(0)
			stdout, stderr, code := bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+host+"/"+prefix)
			if code != 0 {
				t.Fatalf("re-run: exit %d; stderr:\n%s", code, stderr)
			}
			res := jsonResult[bundle.LoadResult](t, stdout)
			checkLoadedAt(t, reg, prefix, f.idx)
			t.Logf("re-run: %d loaded, %d skipped, %d blobs sent, %d present", res.Loaded, res.Skipped, res.BlobsSent, res.BlobsPresent)
		})
	}
}

// SIGINT while load pushes: exit 130 within moments, "interrupted", no
// tag in the registry; the same command then finishes the job.
func TestReliabilityLoadSIGINT(t *testing.T) {
	testenv.Acceptance(t)
	f := newLoadFaults(t)
	reg := testenv.StartRegistry(t)
	mangler := startMangler(t, reg.Host)
	mangler.rate.Store(64 << 10)
	c := startBundle(t, "load", "-i", f.bundle, "--to", "docker://"+mangler.Host+"/int")
	waitFor(t, 20*time.Second, "the uploads to be under way", func() bool {
		return c.exited() || mangler.patched.Load() >= 64<<10
	})
	if c.exited() {
		t.Fatalf("load ended before the interrupt: %s", c.stderr.String())
	}
	interruptAndExpect130(t, c)
	checkNoIncompleteTags(t, reg)
	if tags := tagsUnder(t, reg, "int"); len(tags) != 0 {
		t.Errorf("tags after an interrupted load: %v", tags)
	}
	mangler.rate.Store(0)
	stdout, stderr, code2 := bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+mangler.Host+"/int")
	if code2 != 0 {
		t.Fatalf("re-run: exit %d; stderr:\n%s", code2, stderr)
	}
	checkLoadedAt(t, reg, "int", f.idx)
	res := jsonResult[bundle.LoadResult](t, stdout)
	t.Logf("after SIGINT the re-run sent %d blobs, found %d present", res.BlobsSent, res.BlobsPresent)
}

// longRun says how long the long local mode runs: BUNDLE_LONG=1 (10
// minutes) or a duration (BUNDLE_LONG=30m); 0 when it is off (CI).
func longRun(t *testing.T) time.Duration {
	v := os.Getenv("BUNDLE_LONG")
	switch v {
	case "", "0", "false":
		return 0
	case "1", "true":
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("BUNDLE_LONG=%q: want 1 or a duration", v)
	}
	return d
}

// The fault loop: rounds of loads, each with a random mix of transient
// faults (it must finish with the bundle's digests and at least one retry
// per fault) or, one round in four, a persistent fault (it must fail with
// no incomplete image tagged, and the next load without faults finishes).
// CI runs a few rounds; BUNDLE_LONG runs it for minutes
// (BUNDLE_SEED=N replays a run).
func TestReliabilityLoadFaultLoop(t *testing.T) {
	testenv.Acceptance(t)
	f := newLoadFaults(t)
	reg := testenv.StartRegistry(t)
	plain := testenv.StartFaultProxy(t, reg.Host, testenv.WithLifetime(3*time.Hour), testenv.WithMaxRequests(1<<30))
	rounds, budget := 4, longRun(t)
	if budget > 0 {
		rounds = 1 << 30
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BUNDLE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d (BUNDLE_SEED=%d replays it), %d rounds or %s", seed, seed, rounds, budget)
	transient := func() testenv.Fault {
		kinds := []struct {
			kind   testenv.RequestKind
			method string
		}{{testenv.KindUpload, "POST"}, {testenv.KindUpload, "PATCH"}, {testenv.KindManifest, "PUT"}, {testenv.KindBlob, "HEAD"}, {testenv.KindManifest, "HEAD"}}
		k := kinds[rng.IntN(len(kinds))]
		fl := testenv.Fault{Kind: k.kind, Method: k.method, Times: 1 + rng.IntN(2)}
		switch rng.IntN(4) {
		case 0:
			fl.Mode, fl.After = testenv.FaultReset, -1
		case 1:
			fl.Mode, fl.Status = testenv.FaultStatus, []int{500, 502, 503}[rng.IntN(3)]
		case 2:
			fl.Mode, fl.RetryAfter = testenv.FaultTooManyRequests, time.Second
			fl.Times = 1
		default:
			fl.Mode = testenv.FaultReset // after the registry answered
		}
		return fl
	}
	start := time.Now()
	var nFaults, nTransient, nRetries, nOK, nFailed int
	for round := 0; round < rounds && (budget == 0 || time.Since(start) < budget); round++ {
		prefix := fmt.Sprintf("r%d", round)
		plain.ClearFaults()
		persistent := round%4 == 3
		var rules []*testenv.FaultRule
		if persistent {
			fl := transient()
			fl.Times = 0
			if fl.Mode == testenv.FaultTooManyRequests {
				fl.Mode, fl.Status = testenv.FaultStatus, 503
			}
			rules = append(rules, plain.Inject(fl))
		} else {
			// At most 4 faults in all: they could all hit one request,
			// which has 6 attempts.
			for range 1 + rng.IntN(2) {
				rules = append(rules, plain.Inject(transient()))
			}
		}
		var desc []string
		for _, r := range rules {
			desc = append(desc, fmt.Sprintf("%s %s %s×%d", r.Mode, r.Method, r.Kind, r.Times))
		}
		retries := "6"
		if persistent {
			retries = "3"
		}
		stdout, stderr, code := bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+plain.Host+"/"+prefix, "--retries", retries)
		// net/http itself sends a HEAD again, unseen, when the connection
		// it reused was reset: such a fault may cost no retry of ours.
		hits, silent := 0, 0
		for _, r := range rules {
			hits += r.Hits()
			if r.Mode == testenv.FaultReset && r.Method == http.MethodHead {
				silent += r.Hits()
			}
		}
		nFaults += hits
		checkNoIncompleteTags(t, reg)
		if persistent && hits > 0 {
			if code == 0 {
				t.Errorf("round %d (%v): a persistent fault hit %d times, yet exit 0", round, desc, hits)
			}
			nFailed++
			plain.ClearFaults()
			stdout, stderr, code = bundleCLI(t, "load", "--json", "-i", f.bundle, "--to", "docker://"+plain.Host+"/"+prefix)
		}
		if code != 0 {
			t.Fatalf("round %d (%v, %d hits): exit %d; stderr:\n%s", round, desc, hits, code, stderr)
		}
		res := jsonResult[bundle.LoadResult](t, stdout)
		if !persistent && res.Retries < int64(hits-silent) {
			t.Errorf("round %d (%v): %d faults, %d retries reported", round, desc, hits, res.Retries)
		}
		if !persistent {
			nTransient += hits
			nRetries += int(res.Retries)
		}
		nOK++
		checkLoadedAt(t, reg, prefix, f.idx)
		if t.Failed() {
			t.Fatalf("round %d (%v) failed; seed %d", round, desc, seed)
		}
	}
	t.Logf("%d rounds in %s: %d faults injected; transient rounds: %d faults, %d retries reported; %d persistent faults failed a load as they should, each finished by a re-run",
		nOK, time.Since(start).Round(time.Second), nFaults, nTransient, nRetries, nFailed)
}

// ---- Hostile and lying bundles, and archives of other tools ----

var updateHostile = flag.Bool("update-hostile", false, "rewrite the fixtures in testdata/hostile")

const hostileDir = "testdata/hostile"

// hostileFixture is a bundle file in testdata/hostile: a small valid bundle
// with one hostile entry (or a decompression bomb), and what the refusal
// must say.
type hostileFixture struct {
	name string
	why  string // in the finding
	deep bool   // verify finds it only with --deep
	data func(t *testing.T) []byte
}

func hostileBase(t *testing.T) *bundletest.Bundle {
	t.Helper()
	return bundletest.Single(t, "docker.io/library/hostile:1", 512, 2, 7)
}

// withEntry returns the base bundle with e inserted after manifest.json,
// before the blobs.
func withEntry(t *testing.T, e bundletest.Entry) []byte {
	b := hostileBase(t)
	i := b.Find(tarball.DockerManifest) + 1
	b.Entries = append(append(append([]bundletest.Entry(nil), b.Entries[:i]...), e), b.Entries[i:]...)
	data, _ := b.Bytes()
	return data
}

func hostileFixtures() []hostileFixture {
	hexID := strings.Repeat("ab", 32)
	return []hostileFixture{
		{name: "dotdot.tar", why: `".."`, data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "../../bundle-hostile-dotdot", Data: []byte("evil\n")})
		}},
		{name: "dotdot-in-blobs.tar", why: `".."`, data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "blobs/sha256/../../../bundle-hostile-dotdot", Data: []byte("evil\n")})
		}},
		{name: "absolute.tar", why: "absolute", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "/tmp/bundle-hostile-absolute", Data: []byte("evil\n")})
		}},
		{name: "symlink.tar", why: "symlink", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "blobs/sha256/" + hexID, Type: tar.TypeSymlink, Linkname: "/etc/passwd"})
		}},
		// blobs/sha256 itself a link out of the tree: an extracting loader
		// would write every blob after it into /tmp/bundle-hostile-dir.
		{name: "symlink-dir.tar", why: "symlink", data: func(t *testing.T) []byte {
			b := hostileBase(t)
			b.Entries[b.Find(tarball.BlobsSHA256Dir)] = bundletest.Entry{Name: "blobs/sha256", Type: tar.TypeSymlink, Linkname: "/tmp/bundle-hostile-dir"}
			data, _ := b.Bytes()
			return data
		}},
		{name: "hardlink.tar", why: "hardlink", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "blobs/sha256/" + hexID, Type: tar.TypeLink, Linkname: "/etc/passwd"})
		}},
		{name: "device.tar", why: "device", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: "blobs/sha256/" + hexID, Type: tar.TypeChar})
		}},
		// A second copy of a layer with other bytes, at the end: a loader
		// that takes the last copy loads what was never verified.
		{name: "duplicate-blob.tar", why: "duplicate", data: func(t *testing.T) []byte {
			b := hostileBase(t)
			layer := tarball.BlobPath(b.Index.Images[0].Manifests[0].Layers[0])
			evil := bytes.Clone(b.Entries[b.Find(layer)].Data)
			evil[len(evil)/2] ^= 0xff
			b.Entries = append(b.Entries, bundletest.Entry{Name: layer, Data: evil})
			data, _ := b.Bytes()
			return data
		}},
		{name: "duplicate-bundle-json.tar", why: "duplicate", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":1,"images":[],"blobs":{}}`)})
		}},
		{name: "duplicate-manifest-json.tar", why: "duplicate", data: func(t *testing.T) []byte {
			return withEntry(t, bundletest.Entry{Name: tarball.DockerManifest, Data: []byte(`[]`)})
		}},
		// Every entry consistent, but the reference pinned to one image's
		// digest is another image: a load would publish the lie under the
		// pinned name.
		{name: "pinned-digest-lie.tar", why: "pins", data: func(t *testing.T) []byte {
			d, err := bundletest.MustImage(t, 512, 1, "linux/amd64", 8).Digest()
			if err != nil {
				t.Fatal(err)
			}
			b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/library/hostile@" + d.String(), Image: bundletest.MustImage(t, 512, 2, "linux/amd64", 7)})
			data, _ := b.Bytes()
			return data
		}},
		// A reference load cannot parse, sharing its image and manifest.json
		// entry with a good one, named alike in index.json.
		{name: "bad-reference.tar", why: "does not parse", data: func(t *testing.T) []byte {
			const bad = "../../etc:1"
			b := hostileBase(t)
			b.Index.Images = append(b.Index.Images, b.Index.Images[0])
			b.Index.Images[1].Ref = bad
			if err := b.SetIndex(); err != nil {
				t.Fatal(err)
			}
			i := b.Find(tarball.OCIIndexFile)
			var ix v1.IndexManifest
			if err := json.Unmarshal(b.Entries[i].Data, &ix); err != nil {
				t.Fatal(err)
			}
			d := ix.Manifests[0]
			d.Annotations = map[string]string{tarball.AnnotationRefName: bad, tarball.AnnotationContainerdName: bad}
			ix.Manifests = append(ix.Manifests, d)
			b.Entries[i].Data, _ = json.Marshal(ix)
			data, _ := b.Bytes()
			return data
		}},
		// Only the headers: the reader refuses the size before reading.
		{name: "oversized-bundle-json.tar", why: "over the limit", data: func(t *testing.T) []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: tarball.IndexFile, Mode: 0o644, Size: tarball.MaxIndexSize + 1, Typeflag: tar.TypeReg})
			tw.Flush()
			return buf.Bytes()
		}},
		{name: "oversized-manifest-json.tar", why: "over the limit", data: func(t *testing.T) []byte {
			b := hostileBase(t)
			valid, off := b.Bytes()
			var buf bytes.Buffer
			buf.Write(valid[:off[tarball.DockerManifest]-512])
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: tarball.DockerManifest, Mode: 0o644, Size: tarball.MaxDockerManifestSize + 1, Typeflag: tar.TypeReg})
			tw.Flush()
			return buf.Bytes()
		}},
		// A layer of 256 MiB of zeros in about 256 KiB, with its true
		// digest and diffID: only decompressing it tells.
		{name: "gzip-bomb-layer.tar", why: "decompression bomb", deep: true, data: func(t *testing.T) []byte {
			gz, diffID := bundletest.ZeroTarGz(t, 256<<20)
			img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: bundletest.GzipLayer(gz, diffID)})
			if err != nil {
				t.Fatal(err)
			}
			if img, err = bundletest.WithPlatform(img, "linux/amd64"); err != nil {
				t.Fatal(err)
			}
			data, _ := bundletest.Must(t, bundletest.Ref{Name: "docker.io/library/bomb:1", Image: img}).Bytes()
			return data
		}},
		// A gzip-compressed bundle whose tar holds 256 MiB of zeros in a
		// blob entry: load would spool all of it to $TMPDIR.
		{name: "gzip-bomb-bundle.tar.gz", why: "decompression bomb", data: func(t *testing.T) []byte {
			b := hostileBase(t)
			var gz bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
			tw := tar.NewWriter(zw)
			for _, e := range b.Entries {
				if strings.HasPrefix(e.Name, tarball.BlobsSHA256Dir) && e.Name != tarball.BlobsSHA256Dir {
					break
				}
				hdr := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
				if e.Type == tar.TypeDir {
					hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
				}
				tw.WriteHeader(hdr)
				tw.Write(e.Data)
			}
			const n = 256 << 20
			tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + hexID, Mode: 0o644, Size: n, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
			io.CopyN(tw, bundletest.Zeros, n)
			tw.Close()
			zw.Close()
			return gz.Bytes()
		}},
	}
}

// TestHostileFixtures checks that the fixtures in testdata/hostile are
// there; with -update-hostile it writes them first.
func TestHostileFixtures(t *testing.T) {
	for _, fx := range hostileFixtures() {
		path := filepath.Join(hostileDir, fx.name)
		if *updateHostile {
			if err := os.MkdirAll(hostileDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, fx.data(t), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%v (go test -run TestHostileFixtures -update-hostile .)", err)
		}
	}
}

// noCrash fails the test if output shows a panic or a stack trace.
func noCrash(t *testing.T, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, "goroutine ") || strings.Contains(o, "panic") || strings.Contains(o, ".go:") {
			t.Errorf("a panic or stack trace:\n%s", o)
		}
	}
}

// treeState is every path under dir with its mode, size and sha256 (nil
// when dir does not exist).
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	if _, err := os.Lstat(dir); err != nil {
		return nil
	}
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out[p] = "error: " + err.Error()
			return nil
		}
		fi, _ := d.Info()
		s := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			s += " " + sha256Hex(b)
		}
		out[p] = s
		return nil
	})
	return out
}

// dockerImages lists the daemon's image IDs, dangling ones included.
func dockerImages(t *testing.T, d *testenv.Dockerd) string {
	t.Helper()
	ids := strings.Fields(d.Docker(t, "images", "-a", "-q", "--no-trunc"))
	sort.Strings(ids)
	return strings.Join(ids, " ")
}

// hostileTargets are the three targets, each with the check that nothing
// was written to it.
type hostileTargets struct {
	reg      *testenv.Registry
	d        *testenv.Dockerd
	images   string // docker images before
	ociNew   string // an OCI layout that does not exist
	ociOld   string // an OCI layout with one image
	ociState map[string]string
	watch    map[string]map[string]string // dirs that must stay as they are
}

func newHostileTargets(t *testing.T) *hostileTargets {
	t.Helper()
	h := &hostileTargets{reg: testenv.StartRegistry(t), d: testenv.SharedDockerd(t)}
	h.images = dockerImages(t, h.d)
	t.Cleanup(func() {
		// Should a test fail and let an image in, the next tests must not
		// see it.
		out, _ := h.d.Command(context.Background(), "images", "-a", "-q", "--no-trunc").Output()
		for _, id := range strings.Fields(string(out)) {
			if !strings.Contains(h.images, id) {
				_, _ = h.d.Command(context.Background(), "rmi", "-f", id).CombinedOutput()
			}
		}
	})
	dir := t.TempDir()
	h.ociNew = filepath.Join(dir, "new", "oci")
	h.ociOld = filepath.Join(dir, "old")
	// A layout with another image in it, made by load itself.
	data, _ := bundletest.Single(t, "docker.io/library/other:1", 256, 1, 99).Bytes()
	src := filepath.Join(dir, "other.tar")
	os.WriteFile(src, data, 0o644)
	mustBundle(t, "load", "-q", "-i", src, "--to", "oci:"+h.ociOld)
	h.ociState = treeState(t, h.ociOld)
	return h
}

// check proves nothing was written: the registry's catalog is empty, the
// layouts are as they were, docker has the same images, the watched dirs
// are empty, and the paths the hostile entries name do not exist.
func (h *hostileTargets) check(t *testing.T) {
	t.Helper()
	if tags := registryTags(t, h.reg); len(tags) != 0 {
		t.Errorf("the registry has repositories: %v", tags)
	}
	if _, err := os.Lstat(h.ociNew); err == nil {
		t.Errorf("%s was created", h.ociNew)
	}
	if _, err := os.Lstat(filepath.Dir(h.ociNew)); err == nil {
		t.Errorf("%s was created", filepath.Dir(h.ociNew))
	}
	if got := treeState(t, h.ociOld); fmt.Sprint(got) != fmt.Sprint(h.ociState) {
		t.Errorf("the existing layout changed:\n%v\nwas\n%v", got, h.ociState)
	}
	if got := dockerImages(t, h.d); got != h.images {
		t.Errorf("docker images changed: %s, was %s", got, h.images)
	}
	for dir, was := range h.watch {
		if got := treeState(t, dir); fmt.Sprint(got) != fmt.Sprint(was) {
			t.Errorf("%s changed:\n%v\nwas\n%v", dir, got, was)
		}
	}
	for _, p := range []string{"/tmp/bundle-hostile-absolute", "/tmp/bundle-hostile-dir", "/tmp/bundle-hostile-dotdot"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// Every hostile case of the verify issue is refused by load for every
// target (registry, OCI layout, docker), from a file, from a gzip copy
// and from stdin: exit 3, the finding named, and nothing written anywhere:
// not to the target, not in $TMPDIR once load has ended, not in the
// working directory, not at the paths the entries name.
func TestHostileLoad(t *testing.T) {
	testenv.Acceptance(t)
	h := newHostileTargets(t)
	base := t.TempDir()
	work, tmp, files := filepath.Join(base, "work", "cwd"), filepath.Join(base, "tmp"), filepath.Join(base, "files")
	for _, d := range []string{work, tmp, files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/tmp/bundle-hostile-absolute", "/tmp/bundle-hostile-dir", "/tmp/bundle-hostile-dotdot"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists before the test", p)
		}
	}
	// The working directory (and its parent, for ../ entries) and $TMPDIR
	// must be as they are now after every load.
	h.watch = map[string]map[string]string{}
	for _, d := range []string{filepath.Dir(work), tmp} {
		h.watch[d] = treeState(t, d)
	}
	t.Chdir(work)
	t.Setenv("TMPDIR", tmp)

	targets := []struct{ name, to string }{
		{"registry", "docker://" + h.reg.Host + "/hostile"},
		{"oci new", "oci:" + h.ociNew},
		{"oci new --key", "oci:" + h.ociNew}, // a local target: cheap to run with --key
		{"oci existing", "oci:" + h.ociOld},
		{"docker", "docker"},
	}
	t.Setenv("DOCKER_HOST", h.d.Host)
	abs := func(p string) string { a, _ := filepath.Abs(filepath.Join(startDir, p)); return a }
	// With --key too: the hostile bundle is refused for what it is, not
	// only for being unsigned.
	_, pubPEM, err := bundletest.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(files, "cosign.pub")
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, fx := range hostileFixtures() {
		t.Run(fx.name, func(t *testing.T) {
			path := abs(filepath.Join(hostileDir, fx.name))
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -run TestHostileFixtures -update-hostile .)", err)
			}
			// bundle verify refuses it too (the bomb layer with --deep).
			args := []string{"verify", "-i", path}
			if fx.deep {
				args = append(args, "--deep")
			}
			stdout, stderr, code := bundleCLI(t, args...)
			if code != exitCorrupt || !strings.Contains(stderr+stdout, fx.why) {
				t.Errorf("verify: exit %d, want %d and %q:\n%s%s", code, exitCorrupt, fx.why, stdout, stderr)
			}
			stdout, stderr, code = bundleCLI(t, append(args, "--key", pub)...)
			if code != exitCorrupt || !strings.Contains(stderr+stdout, fx.why) {
				t.Errorf("verify --key: exit %d, want %d and %q:\n%s%s", code, exitCorrupt, fx.why, stdout, stderr)
			}
			inputs := []struct{ name, path string }{{"file", path}}
			if !strings.HasSuffix(fx.name, ".gz") {
				gz := filepath.Join(files, fx.name+".gz")
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(raw)
				zw.Close()
				os.WriteFile(gz, buf.Bytes(), 0o644)
				inputs = append(inputs, struct{ name, path string }{"gzip", gz}, struct{ name, path string }{"stdin", path})
			}
			for _, in := range inputs {
				for _, tg := range targets {
					if in.name != "file" && !strings.HasPrefix(tg.name, "oci new") {
						continue // the spool path once is enough
					}
					start := time.Now()
					var stdout, stderr string
					var code int
					keyArgs := []string{}
					if strings.HasSuffix(tg.name, "--key") {
						keyArgs = []string{"--key", pub}
					}
					if in.name == "stdin" {
						stdout, stderr, code = bundleCLIStdin(t, in.path, append([]string{"load", "-i", "-", "--to", tg.to}, keyArgs...)...)
					} else {
						stdout, stderr, code = bundleCLI(t, append([]string{"load", "-i", in.path, "--to", tg.to}, keyArgs...)...)
					}
					took := time.Since(start)
					if code != exitCorrupt {
						t.Errorf("%s → %s: exit %d, want %d:\n%s%s", in.name, tg.name, code, exitCorrupt, stdout, stderr)
					}
					for _, w := range []string{fx.why, "nothing was loaded", "bundle: error: "} {
						if !strings.Contains(stderr, w) {
							t.Errorf("%s → %s: stderr lacks %q:\n%s", in.name, tg.name, w, stderr)
						}
					}
					noCrash(t, stdout, stderr)
					h.check(t)
					t.Logf("%s → %s: refused in %s", in.name, tg.name, took.Round(time.Millisecond))
				}
			}
			if t.Failed() {
				t.Logf("stderr of the last load:\n%s", stderr)
			}
		})
	}

	// A config over its size limit (4 MiB): generated here, not kept as a
	// fixture.
	t.Run("oversized config", func(t *testing.T) {
		b := hostileBase(t)
		pm := &b.Index.Images[0].Manifests[0]
		i := b.Find(tarball.BlobPath(pm.Config))
		big := append(bytes.TrimSuffix(b.Entries[i].Data, []byte("}")), []byte(`,"x":"`+strings.Repeat("a", tarball.MaxConfigSize)+`"}`)...)
		d := bundletest.Digest(big)
		b.Entries[i] = bundletest.Entry{Name: tarball.BlobPath(d), Data: big}
		b.Index.Blobs[d] = tarball.Blob{Size: int64(len(big)), MediaType: b.Index.Blobs[pm.Config].MediaType}
		delete(b.Index.Blobs, pm.Config)
		pm.Config = d
		if err := b.SetIndex(); err != nil {
			t.Fatal(err)
		}
		data, _ := b.Bytes()
		path := filepath.Join(files, "oversized-config.tar")
		os.WriteFile(path, data, 0o644)
		for _, tg := range targets {
			stdout, stderr, code := bundleCLI(t, "load", "-i", path, "--to", tg.to)
			if code != exitCorrupt || !strings.Contains(stderr, "over") || !strings.Contains(stderr, tarball.BlobPath(d)) {
				t.Errorf("%s: exit %d, want %d naming the config %s as over its limit:\n%s%s", tg.name, code, exitCorrupt, d, stdout, stderr)
			}
			noCrash(t, stdout, stderr)
			h.check(t)
		}
	})
}

// startDir is the package directory, where the test binary starts.
var startDir, _ = os.Getwd()

// lyingBase is a bundle of a single-platform image (Docker media types)
// and a two-platform OCI index.
func lyingBase(t *testing.T) *bundletest.Bundle {
	t.Helper()
	return bundletest.Must(t,
		bundletest.Ref{Name: "docker.io/library/liar:1", Image: bundletest.MustImage(t, 512, 2, "linux/amd64", 11)},
		bundletest.Ref{Name: "docker.io/library/multi:1", Index: bundletest.MustIndex(t, 256, 1, 12, "linux/amd64", "linux/arm64/v8")},
	)
}

// A bundle whose bundle.json lies (sizes, digests, platforms, media types),
// everything else as create wrote it: verify and load (every target)
// refuse it, exit 3, naming the entry that shows the lie and the image;
// nothing is written.
func TestHostileLies(t *testing.T) {
	testenv.Acceptance(t)
	h := newHostileTargets(t)
	t.Setenv("DOCKER_HOST", h.d.Host)
	dir := t.TempDir()
	single := func(b *bundletest.Bundle) *tarball.Image { return &b.Index.Images[0] }
	multi := func(b *bundletest.Bundle) *tarball.Image { return &b.Index.Images[1] }
	layerPath := func(b *bundletest.Bundle) string { return tarball.BlobPath(single(b).Manifests[0].Layers[0]) }
	manifestPath := func(b *bundletest.Bundle) string { return tarball.BlobPath(single(b).Digest) }
	tests := []struct {
		name  string
		lie   func(b *bundletest.Bundle)
		entry func(b *bundletest.Bundle) string // named in the finding
		image string
	}{
		{"a blob's size", func(b *bundletest.Bundle) {
			l := single(b).Manifests[0].Layers[0]
			bl := b.Index.Blobs[l]
			bl.Size++
			b.Index.Blobs[l] = bl
		}, layerPath, "liar:1"},
		{"an image's size", func(b *bundletest.Bundle) {
			single(b).Size++
			single(b).Manifests[0].Size++
		}, func(*bundletest.Bundle) string { return tarball.IndexFile }, "liar:1"},
		{"an image's digest (another manifest's)", func(b *bundletest.Bundle) {
			single(b).Digest = multi(b).Manifests[0].Digest
		}, func(*bundletest.Bundle) string { return tarball.IndexFile }, "liar:1"},
		{"a layer's digest", func(b *bundletest.Bundle) {
			pm := &single(b).Manifests[0]
			pm.Layers[0], pm.Layers[1] = pm.Layers[1], pm.Layers[0]
		}, manifestPath, "liar:1"},
		{"a config's digest", func(b *bundletest.Bundle) {
			single(b).Manifests[0].Config = multi(b).Manifests[0].Config
		}, manifestPath, "liar:1"},
		{"the platform of a single-platform image", func(b *bundletest.Bundle) {
			single(b).Manifests[0].Platform = "linux/arm64"
		}, func(b *bundletest.Bundle) string { return tarball.BlobPath(single(b).Manifests[0].Config) }, "liar:1"},
		{"the platform of an index's manifest", func(b *bundletest.Bundle) {
			multi(b).Manifests[1].Platform = "linux/s390x"
		}, func(b *bundletest.Bundle) string { return tarball.BlobPath(multi(b).Digest) }, "multi:1"},
		{"the platforms of an index's manifests swapped", func(b *bundletest.Bundle) {
			m := multi(b).Manifests
			m[0].Platform, m[1].Platform = m[1].Platform, m[0].Platform
		}, func(b *bundletest.Bundle) string { return tarball.BlobPath(multi(b).Digest) }, "multi:1"},
		{"a manifest's media type (everywhere in bundle.json)", func(b *bundletest.Bundle) {
			im := single(b)
			im.MediaType, im.Manifests[0].MediaType = types.OCIManifestSchema1, types.OCIManifestSchema1
			bl := b.Index.Blobs[im.Digest]
			bl.MediaType = types.OCIManifestSchema1
			b.Index.Blobs[im.Digest] = bl
		}, manifestPath, "liar:1"},
		{"a layer's media type", func(b *bundletest.Bundle) {
			l := single(b).Manifests[0].Layers[0]
			bl := b.Index.Blobs[l]
			bl.MediaType = types.OCILayerZStd
			b.Index.Blobs[l] = bl
		}, layerPath, "liar:1"},
		{"an index's media type (everywhere in bundle.json)", func(b *bundletest.Bundle) {
			im := multi(b)
			im.MediaType = types.DockerManifestList
			bl := b.Index.Blobs[im.Digest]
			bl.MediaType = types.DockerManifestList
			b.Index.Blobs[im.Digest] = bl
		}, func(b *bundletest.Bundle) string { return tarball.BlobPath(multi(b).Digest) }, "multi:1"},
		{"a manifest said to be an index", func(b *bundletest.Bundle) {
			im := single(b)
			im.MediaType = types.OCIImageIndex
			bl := b.Index.Blobs[im.Digest]
			bl.MediaType = types.OCIImageIndex
			b.Index.Blobs[im.Digest] = bl
		}, manifestPath, "liar:1"},
		{"a layer's diffID", func(b *bundletest.Bundle) {
			l := single(b).Manifests[0].Layers[0]
			bl := b.Index.Blobs[l]
			other := b.Index.Blobs[single(b).Manifests[0].Layers[1]].DiffID
			bl.DiffID = other
			b.Index.Blobs[l] = bl
		}, layerPath, "liar:1"},
	}
	// The liar signs its lies: with --key the signature verifies, and the
	// bundle is refused all the same.
	privPEM, pubPEM, err := bundletest.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := sign.ParsePrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, pubPEM, 0o644)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := lyingBase(t)
			tt.lie(b)
			if err := b.SetIndex(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sign(key); err != nil {
				t.Fatal(err)
			}
			entry := tt.entry(b)
			data, _ := b.Bytes()
			path := filepath.Join(dir, fmt.Sprintf("lie-%d.tar", i))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			runs := [][]string{{"verify", "-i", path}, {"verify", "-i", path, "--key", pub}}
			for _, to := range []string{"docker://" + h.reg.Host + "/lies", "oci:" + h.ociNew, "oci:" + h.ociOld, "docker"} {
				runs = append(runs, []string{"load", "-i", path, "--to", to})
			}
			runs = append(runs, []string{"load", "-i", path, "--to", "oci:" + h.ociNew, "--key", pub})
			for _, args := range runs {
				stdout, stderr, code := bundleCLI(t, args...)
				if code != exitCorrupt {
					t.Errorf("bundle %s: exit %d, want %d:\n%s%s", strings.Join(args, " "), code, exitCorrupt, stdout, stderr)
				}
				found := false
				for _, l := range strings.Split(stdout+stderr, "\n") {
					found = found || (strings.Contains(l, entry+": ") && strings.Contains(l, tt.image))
				}
				if !found {
					t.Errorf("bundle %s: no finding names %s and %s:\n%s%s", args[0], entry, tt.image, stdout, stderr)
				}
				noCrash(t, stdout, stderr)
				h.check(t)
				if args[0] == "verify" {
					t.Logf("%s", strings.TrimSpace(stdout+stderr))
				}
			}
		})
	}
}

// Archives made by other tools: a docker save tarball (from the test
// dockerd), a crane pull tarball (go-containerregistry's
// tarball.MultiRefWriteToFile, what crane pull writes), an OCI layout
// archive (skopeo copy to oci-archive:), each also gzip-compressed.
// verify, list and load (every target) refuse each with exit 3 and "not
// a bundle file (looks like …)", a hint, and no stack trace; nothing is
// written.
func TestHostileOtherTools(t *testing.T) {
	testenv.Acceptance(t)
	_, seeded := testenv.SharedSeeded(t)
	h := newHostileTargets(t)
	d := h.d
	dir := t.TempDir()
	hello := seeded.Find(t, testenv.ImageHello).Ref
	appA := seeded.Find(t, testenv.ImageAppA).Ref

	dockerSave := filepath.Join(dir, "docker-save.tar")
	d.Docker(t, "pull", "-q", hello)
	d.Docker(t, "save", "-o", dockerSave, hello)
	d.Docker(t, "rmi", hello)
	h.images = dockerImages(t, d)

	crane := filepath.Join(dir, "crane-pull.tar")
	ref := mustRef(t, appA)
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcrtarball.MultiRefWriteToFile(crane, map[name.Reference]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}

	ociArchive := filepath.Join(dir, "oci-archive.tar")
	command(t, nil, "skopeo", "copy", "-q", "--src-tls-verify=false", "docker://"+appA, "oci-archive:"+ociArchive+":app-a")

	files := []struct{ path, looks string }{
		{dockerSave, "a docker save archive"},
		{crane, "a docker save archive"},
		{ociArchive, "an OCI image layout archive"},
	}
	for _, f := range files[:3] {
		raw, _ := os.ReadFile(f.path)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		gz := f.path + ".gz"
		os.WriteFile(gz, buf.Bytes(), 0o644)
		files = append(files, struct{ path, looks string }{gz, f.looks})
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	h.watch = map[string]map[string]string{tmp: treeState(t, tmp)}
	t.Setenv("TMPDIR", tmp)
	t.Setenv("DOCKER_HOST", d.Host)
	for _, f := range files {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			want := "not a bundle file (looks like " + f.looks + ")"
			runs := [][]string{{"verify", "-i", f.path}, {"verify", "--deep", "--json", "-i", f.path}, {"list", "-i", f.path}, {"list", "--json", "-i", f.path}}
			for _, to := range []string{"docker://" + h.reg.Host + "/other", "oci:" + h.ociNew, "oci:" + h.ociOld, "docker"} {
				runs = append(runs, []string{"load", "-i", f.path, "--to", to})
			}
			for _, args := range runs {
				stdout, stderr, code := bundleCLI(t, args...)
				if code != exitCorrupt {
					t.Errorf("bundle %s: exit %d, want %d:\n%s%s", strings.Join(args, " "), code, exitCorrupt, stdout, stderr)
				}
				if !strings.Contains(stdout+stderr, want) || !strings.Contains(stderr, "bundle: hint: ") {
					t.Errorf("bundle %s: no %q with a hint:\n%s%s", strings.Join(args, " "), want, stdout, stderr)
				}
				noCrash(t, stdout, stderr)
				h.check(t)
			}
			_, stderr, _ := bundleCLI(t, "load", "-i", f.path, "--to", "oci:"+h.ociNew)
			t.Logf("%s", strings.TrimSpace(stderr))
		})
	}
}

// The reference fixtures (a pinned digest that is another image, a
// reference that does not parse) are refused by every command that reads
// a bundle, bundle.json alone (list, inventory) or all of it (verify):
// exit 3, naming the reference. TestHostileLoad proves every load target
// refuses them with nothing written.
func TestHostileReferences(t *testing.T) {
	for _, fx := range []struct{ name, why, ref string }{
		{"pinned-digest-lie.tar", "pins", "docker.io/library/hostile@sha256:"},
		{"bad-reference.tar", "does not parse", "../../etc:1"},
	} {
		t.Run(fx.name, func(t *testing.T) {
			path := filepath.Join(hostileDir, fx.name)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("%v (go test -run TestHostileFixtures -update-hostile .)", err)
			}
			out := filepath.Join(t.TempDir(), "have.json")
			for _, args := range [][]string{
				{"verify", "-i", path},
				{"verify", "--deep", "-i", path},
				{"list", "-i", path},
				{"inventory", "--from", path, "-o", out},
			} {
				stdout, stderr, code := bundleCLI(t, args...)
				if code != exitCorrupt {
					t.Errorf("bundle %s: exit %d, want %d:\n%s%s", strings.Join(args, " "), code, exitCorrupt, stdout, stderr)
				}
				if !strings.Contains(stdout+stderr, fx.why) || !strings.Contains(stdout+stderr, fx.ref) {
					t.Errorf("bundle %s: output does not say %q of %s:\n%s%s", strings.Join(args, " "), fx.why, fx.ref, stdout, stderr)
				}
				noCrash(t, stdout, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("inventory wrote %s", out)
			}
		})
	}
}
