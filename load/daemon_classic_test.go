package load

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ggcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// sharedImages is a set like the benchmark's: three images on one base
// layer (one with many layers), two with a layer of their own, and an
// untagged one.
func sharedImages(t *testing.T, prefix string) []testImage {
	t.Helper()
	base, err := random.Layer(64<<10, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	return []testImage{
		{ref: prefix + "/many:1", image: newImage(t, "linux/amd64", false, []int64{1 << 10, 2 << 10, 3 << 10, 4 << 10, 5 << 10, 6 << 10}, base)},
		{ref: prefix + "/app-a:1", image: newImage(t, "linux/amd64", false, []int64{3 << 10}, base)},
		{ref: prefix + "/app-b:1", image: newImage(t, "linux/amd64", true, []int64{3 << 10}, base)},
		{ref: prefix + "/solo-a:1", image: newImage(t, "linux/amd64", false, []int64{9 << 10})},
		{ref: prefix + "/solo-b:1", image: newImage(t, "linux/amd64", false, []int64{7 << 10})},
		{ref: prefix + "/multi:1", index: newIndex(t, "linux/amd64", "linux/arm64/v8")},
	}
}

// A classic-store daemon on this machine gets every gzip layer
// decompressed, named by its diffID, each layer once over all the parallel
// streams, and no tag before the end; the image IDs are the config
// digests.
func TestDaemonClassicDecompressed(t *testing.T) {
	for _, tc := range []struct {
		jobs    int
		inflate bool
	}{{1, true}, {4, true}, {8, true}, {4, false}} {
		t.Run(fmt.Sprintf("jobs=%d,decompress=%v", tc.jobs, tc.inflate), func(t *testing.T) {
			f := &fakeEngine{}
			d := fakeDaemonJobs(t, f, tc.jobs)
			if !d.local || d.streams != min(max(tc.jobs/2, 1), maxDaemonStreams) {
				t.Fatalf("daemon: local %v, %d streams", d.local, d.streams)
			}
			d.inflate = tc.inflate
			fx := writeBundle(t, t.TempDir(), sharedImages(t, "example.com/dec"))
			b, sel := openFixture(t, fx, Selection{})
			res, err := d.Load(context.Background(), b, sel, nil)
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			for i, im := range sel {
				if r := res.Images[i]; r.Status != StatusLoaded || r.Digest != im.Primary.Config {
					t.Errorf("%s: %s %s, want loaded %s", im.Ref, r.Status, r.Digest, im.Primary.Config)
				}
				if id := f.images[dockerName(im)]; id != im.Primary.Config.String() {
					t.Errorf("%s names %q, want %s", dockerName(im), id, im.Primary.Config)
				}
			}
			for name, n := range f.layerFiles {
				if n != 1 {
					t.Errorf("layer file %s was read %d times", name, n)
				}
			}
			// Every layer the images use: decompressed under its diffID,
			// or as it is under its digest.
			want := map[string]bool{}
			for _, im := range sel {
				for _, h := range im.Primary.Layers {
					if tc.inflate {
						want[tarball.BlobPath(*fx.index.Blobs[h].DiffID)] = true
					} else {
						want[tarball.BlobPath(h)] = true
					}
				}
			}
			if gz := f.gzipLayers; tc.inflate && gz != 0 || !tc.inflate && gz != len(want) {
				t.Errorf("%d of %d layers were sent gzip-compressed", gz, len(want))
			}
			if len(f.layerFiles) != len(want) {
				t.Errorf("%d layer files read, want %d", len(f.layerFiles), len(want))
			}
			for name := range want {
				if f.layerFiles[name] != 1 {
					t.Errorf("layer %s was not sent", name)
				}
			}
			if d.streams > 1 && f.loads < 2 {
				t.Errorf("%d POST /images/load with %d streams, want several", f.loads, d.streams)
			}
			if f.tags != countTagged(sel) {
				t.Errorf("%d tag requests, want %d", f.tags, countTagged(sel))
			}
		})
	}
}

func countTagged(images []Chosen) int {
	n := 0
	for _, im := range images {
		if im.Tagged() {
			n++
		}
	}
	return n
}

// A daemon reached over the network gets the layers as the bundle holds
// them: decompressed they would be several times the bytes on the wire.
func TestDaemonRemoteKeepsCompressed(t *testing.T) {
	t.Setenv("BUNDLE_DOCKER_DECOMPRESS", "")
	for host, local := range map[string]bool{
		"unix:///run/docker.sock":   true,
		"tcp://127.0.0.1:2375":      true,
		"tcp://localhost:2375":      true,
		"tcp://[::1]:2375":          true,
		"tcp://10.1.2.3:2375":       false,
		"tcp://docker.example:2376": false,
	} {
		d, err := NewDaemon(Options{DockerHost: host, Jobs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if d.local != local {
			t.Errorf("%s: local %v, want %v", host, d.local, local)
		}
		if !local && d.inflate {
			t.Errorf("%s: a remote daemon gets decompressed layers", host)
		}
	}
	// A local daemon gets decompressed layers (the load decompresses them
	// instead of the verify pass); Options.DockerDecompress forces it
	// either way, and so, when that is left at its default, does the
	// environment.
	for _, tc := range []struct {
		mode Decompress
		env  string
		host string
		want bool
	}{
		{DecompressAuto, "", "unix:///run/docker.sock", true},
		{DecompressAuto, "", "tcp://10.1.2.3:2375", false},
		{DecompressAlways, "", "tcp://10.1.2.3:2375", true},
		{DecompressNever, "", "unix:///run/docker.sock", false},
		{DecompressAuto, "1", "tcp://10.1.2.3:2375", true},
		{DecompressAuto, "0", "unix:///run/docker.sock", false},
		{DecompressAlways, "0", "tcp://10.1.2.3:2375", true},
		{DecompressNever, "1", "unix:///run/docker.sock", false},
	} {
		t.Setenv("BUNDLE_DOCKER_DECOMPRESS", tc.env)
		d, err := NewDaemon(Options{DockerHost: tc.host, Jobs: 4, DockerDecompress: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		if d.inflate != tc.want {
			t.Errorf("%s, DockerDecompress %d, BUNDLE_DOCKER_DECOMPRESS=%q: decompress %v, want %v", tc.host, tc.mode, tc.env, d.inflate, tc.want)
		}
	}
	// Through the planner: a remote daemon gets the gzip blob itself.
	fx := writeBundle(t, t.TempDir(), sharedImages(t, "example.com/remote")[:1])
	b, sel := openFixture(t, fx, Selection{})
	for _, inflate := range []bool{false, true} {
		c, err := newClassicPlanner(b, 2, inflate).plan(sel[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range c.layers {
			if l.inflate != inflate || !inflate && (l.entry() != tarball.BlobPath(l.blob) || l.size != b.Size(l.blob)) {
				t.Errorf("inflate=%v: layer %+v", inflate, l)
			}
		}
	}
}

// Layers the daemon holds (those of images skipped as present) are not
// sent again, and an image it holds under another name is only tagged.
func TestDaemonClassicHeldLayers(t *testing.T) {
	f := &fakeEngine{}
	d := fakeDaemonJobs(t, f, 4)
	d.inflate = true
	images := sharedImages(t, "example.com/held")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{Images: []string{"example.com/held/app-a:1"}})
	if _, err := d.Load(context.Background(), b, sel, nil); err != nil {
		t.Fatal(err)
	}
	base := tarball.BlobPath(*fx.index.Blobs[sel[0].Primary.Layers[0]].DiffID)
	f.mu.Lock()
	if f.layerFiles[base] != 1 || f.sentCount[base] != 1 {
		t.Fatalf("base layer sent %d times, read %d times by the first load", f.sentCount[base], f.layerFiles[base])
	}
	f.mu.Unlock()

	// app-a is skipped; app-b and many need the base, which is not sent.
	_, all := openFixture(t, fx, Selection{})
	res, err := d.Load(context.Background(), b, all, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count(StatusSkipped) != 1 || res.Count(StatusLoaded) != len(all)-1 {
		t.Errorf("%d skipped, %d loaded", res.Count(StatusSkipped), res.Count(StatusLoaded))
	}
	f.mu.Lock()
	if f.sentCount[base] != 1 {
		t.Errorf("the base layer was sent again (%d times in all)", f.sentCount[base])
	}

	// solo-a under another name only: tagged, nothing loaded.
	solo := all[3]
	delete(f.images, dockerName(solo))
	f.images["example.com/other/solo:9"] = solo.Primary.Config.String()
	loads, tags := f.loads, f.tags
	f.mu.Unlock()
	res, err = d.Load(context.Background(), b, all, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loads != loads || f.tags != tags+1 || res.Count(StatusLoaded) != 1 {
		t.Errorf("re-tag: %d loads, %d tags, %d loaded; want 0, 1, 1", f.loads-loads, f.tags-tags, res.Count(StatusLoaded))
	}
	if f.images[dockerName(solo)] != solo.Primary.Config.String() {
		t.Errorf("%s not tagged", dockerName(solo))
	}
}

// multiMemberLayer is a gzip layer of two gzip members: its trailer's size
// is the second member's only, so the first guess of its size is wrong.
func multiMemberLayer(t *testing.T) v1.Layer {
	t.Helper()
	raw := randomTar(t, 20<<10)
	// The last member is 1 MiB of zeros (past the tar's end, as a tar
	// may be padded): its trailer's size is a plausible guess for the
	// whole blob, and wrong.
	return gzipMembers(t, raw, make([]byte, 1<<20))
}

// A gzip layer whose trailer gives the wrong size (several members) makes
// the stream carrying it break off, which the daemon loads nothing of, and
// go again with the size learnt.
func TestDaemonClassicSizeRetry(t *testing.T) {
	f := &fakeEngine{}
	d := fakeDaemonJobs(t, f, 4)
	d.inflate = true
	odd := multiMemberLayer(t)
	images := []testImage{
		{ref: "example.com/size/odd:1", image: newImage(t, "linux/amd64", false, []int64{2 << 10}, odd)},
		{ref: "example.com/size/plain:1", image: newImage(t, "linux/amd64", false, []int64{3 << 10})},
		{ref: "example.com/size/odd-b:1", image: newImage(t, "linux/amd64", false, []int64{4 << 10}, odd)},
		{ref: "example.com/size/odd-c:1", image: newImage(t, "linux/amd64", false, []int64{5 << 10}, odd)},
	}
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	res, err := d.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count(StatusLoaded) != len(sel) {
		t.Fatalf("%+v", res.Images)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed < 1 {
		t.Errorf("%d broken-off loads, want 1 or more", f.failed)
	}
	if f.gzipLayers != 0 {
		t.Errorf("%d layers sent compressed, want 0", f.gzipLayers)
	}
}

// gzipSize's guess: the smallest size with the trailer's remainder that
// deflate could have made the blob from.
func TestGzipSizeGuess(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"zeros", make([]byte, 3<<20)},
		{"random", func() []byte {
			l, _ := random.Layer(1<<20, types.DockerLayer)
			rc, _ := l.Uncompressed()
			b, _ := io.ReadAll(rc)
			return b
		}()},
		{"empty", nil},
	} {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(tc.data)
		zw.Close()
		fx := writeBlobBundle(t, dir, tc.name, gz.Bytes())
		b, err := Open(fx)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := v1.SHA256(bytes.NewReader(gz.Bytes()))
		n, ok := gzipSize(b, h)
		if !ok || n != int64(len(tc.data)) {
			t.Errorf("%s: gzipSize %d %v, want %d", tc.name, n, ok, len(tc.data))
		}
		b.Close()
	}
}

// writeBlobBundle writes a bundle file with one layer blob (a minimal
// bundle.json, enough for Open) and returns its path.
func writeBlobBundle(t *testing.T, dir, name string, blob []byte) string {
	t.Helper()
	fx := writeBundle(t, dir, []testImage{{ref: "example.com/blob/" + name + ":1", image: newImage(t, "linux/amd64", false, nil, mustLayer(t, blob))}})
	return fx.path
}

func mustLayer(t *testing.T, data []byte) v1.Layer {
	t.Helper()
	l, err := ggcrtarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, ggcrtarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A blob that changed after the verify pass stops every stream and names
// nothing, even images of other streams that the daemon loaded.
func TestDaemonClassicChangedNamesNothing(t *testing.T) {
	f := &fakeEngine{}
	d := fakeDaemonJobs(t, f, 4)
	d.inflate = true
	images := sharedImages(t, "example.com/chg")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	flipByteOf(t, fx.path, b, sel[4].Primary.Layers[0]) // solo-b's only layer
	_, err := d.Load(context.Background(), b, sel, nil)
	var ce *ChangedError
	if !errors.As(err, &ce) {
		t.Fatalf("Load: %v, want a *ChangedError", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, im := range sel {
		if im.Tagged() && f.images[dockerName(im)] != "" {
			t.Errorf("%s is named after a failed load", dockerName(im))
		}
	}
	if f.tags != 0 {
		t.Errorf("%d tag requests after a failed load", f.tags)
	}
}

// A daemon error in one stream fails the load and names nothing.
func TestDaemonClassicErrorNamesNothing(t *testing.T) {
	f := &fakeEngine{fail: "write /var/lib/docker/tmp/x: no space left on device"}
	d := fakeDaemonJobs(t, f, 4)
	fx := writeBundle(t, t.TempDir(), sharedImages(t, "example.com/err"))
	b, sel := openFixture(t, fx, Selection{})
	_, err := d.Load(context.Background(), b, sel, nil)
	var de *DaemonError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Load: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tags != 0 {
		t.Errorf("%d tag requests after a failed load", f.tags)
	}
}

// The planner: an image carrying a layer that others need goes first and
// alone (the cheapest such); the other batches leave that layer out and
// wait for the first before they end; every image goes once.
func TestClassicPlannerOrder(t *testing.T) {
	fx := writeBundle(t, t.TempDir(), sharedImages(t, "example.com/plan"))
	b, sel := openFixture(t, fx, Selection{})
	pl := newClassicPlanner(b, 2, true)
	for _, im := range sel {
		c, err := pl.plan(im)
		if err != nil {
			t.Fatal(err)
		}
		pl.pending = append(pl.pending, c)
	}
	first := pl.next()
	if got := refs(first); len(got) != 1 || got[0] != "example.com/plan/app-a:1" {
		t.Fatalf("first batch: %v, want app-a alone (the cheapest with the base)", got)
	}
	base := first.images[0].layers[0].chainID
	var rest []*classicBatch
	seen := map[string]bool{"example.com/plan/app-a:1": true}
	for bt := pl.next(); bt != nil; bt = pl.next() {
		rest = append(rest, bt)
		for _, c := range bt.images {
			if seen[c.im.Ref] {
				t.Errorf("%s in two batches", c.im.Ref)
			}
			seen[c.im.Ref] = true
			needsBase := c.layers[0].chainID == base
			if needsBase != bt.wait[base] {
				t.Errorf("%s: needs the base %v, batch waits for it %v", c.im.Ref, needsBase, bt.wait[base])
			}
		}
		if bt.send[base] {
			t.Errorf("batch %v sends the base too", refs(bt))
		}
	}
	if len(seen) != len(sel) {
		t.Errorf("%d images in batches, want %d", len(seen), len(sel))
	}
	// A batch waiting for the base ends once the first batch is in.
	var waiter *classicBatch
	for _, bt := range rest {
		if bt.wait[base] {
			waiter = bt
		}
	}
	if waiter == nil {
		t.Fatal("no batch waits for the base")
	}
	done := make(chan error, 1)
	go func() { done <- pl.waitFor(waiter) }()
	select {
	case err := <-done:
		t.Fatalf("waitFor returned %v before the base was in", err)
	case <-time.After(50 * time.Millisecond):
	}
	pl.done(first, nil)
	if err := <-done; err != nil {
		t.Fatalf("waitFor: %v", err)
	}
	// A batch waiting for a batch that broke off (a wrong size) breaks off
	// too, and both go again.
	pl2 := newClassicPlanner(b, 2, true)
	for _, im := range sel {
		c, _ := pl2.plan(im)
		pl2.pending = append(pl2.pending, c)
	}
	a := pl2.next()
	var w *classicBatch
	for bt := pl2.next(); bt != nil && w == nil; bt = pl2.next() {
		if bt.wait[base] {
			w = bt
		}
	}
	go func() { done <- pl2.waitFor(w) }()
	pl2.done(a, &sizeError{blob: a.images[0].layers[0].blob, used: 1, actual: 2})
	if err := <-done; !errors.Is(err, errWaitLost) {
		t.Fatalf("waitFor after the base's batch broke off: %v", err)
	}
	pl2.done(w, errWaitLost)
	if !slices.Contains(pl2.pending, a.images[0]) || !slices.Contains(pl2.pending, w.images[0]) {
		t.Errorf("the broken-off batches are not pending again")
	}
}

func refs(bt *classicBatch) []string {
	if bt == nil {
		return nil
	}
	var out []string
	for _, c := range bt.images {
		out = append(out, c.im.Ref)
	}
	return out
}

// Memory does not grow with a layer's size: a load holds one read-ahead
// per stream, not a layer.
func TestDaemonClassicMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 48 MiB layer")
	}
	f := &discardEngine{}
	d := fakeDaemonHandler(t, f, &f.fakeEngine, 4)
	d.inflate = true
	fx := writeBundle(t, t.TempDir(), []testImage{{ref: "example.com/mem/big:1", image: newImage(t, "linux/amd64", false, []int64{48 << 20})}})
	fx.blobs = nil
	b, sel := openFixture(t, fx, Selection{})
	runtime.GC()
	stop := make(chan struct{})
	var peak uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		base := uint64(0)
		for i := 0; ; i++ {
			metrics.Read(s)
			v := s[0].Value.Uint64()
			if i == 0 {
				base = v
			}
			if v > base && v-base > peak {
				peak = v - base
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	_, err := d.Load(context.Background(), b, sel, nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bytes < 48<<20 {
		t.Fatalf("the daemon got %d bytes", f.bytes)
	}
	t.Logf("heap grew by %.1f MiB at most", float64(peak)/(1<<20))
	if peak > 16<<20 {
		t.Errorf("heap grew by %d MiB while loading a 48 MiB layer, want under 16", peak>>20)
	}
}

// discardEngine is a classic-store daemon that keeps nothing of a layer:
// it reads the tar as it comes, keeps only small entries (configs,
// manifest.json), and then has every image manifest.json lists.
type discardEngine struct {
	fakeEngine
	bytes int64
}

func (f *discardEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/images/load" {
		f.fakeEngine.ServeHTTP(w, r)
		return
	}
	small := map[string][]byte{}
	tr := tar.NewReader(r.Body)
	var n int64
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Size < 1<<20 {
			small[h.Name], _ = io.ReadAll(tr)
		}
		k, _ := io.Copy(io.Discard, tr)
		n += k
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes += n
	f.loads++
	var manifest []tarball.DockerManifestEntry
	json.Unmarshal(small[tarball.DockerManifest], &manifest)
	for _, e := range manifest {
		id := "sha256:" + strings.TrimPrefix(e.Config, tarball.BlobsSHA256Dir)
		f.images[id] = id
	}
}

// Into a real daemon (the classic store of the test dockerd): every image
// has its config digest as ID and the config's diff_ids as its layers, each
// tag names it, and a second load sends nothing.
func TestDaemonClassicReal(t *testing.T) {
	for _, inflate := range []bool{true, false} {
		t.Run(fmt.Sprintf("decompress=%v", inflate), func(t *testing.T) { testDaemonClassicReal(t, inflate) })
	}
}

func testDaemonClassicReal(t *testing.T, inflate bool) {
	dd := testenv.SharedDockerd(t)
	mode := DecompressNever
	if inflate {
		mode = DecompressAlways
	}
	d, err := NewDaemon(Options{DockerHost: dd.Host, Jobs: 6, DockerDecompress: mode})
	if err != nil {
		t.Fatal(err)
	}
	if d.inflate != inflate {
		t.Fatalf("DockerDecompress %d: decompress %v", mode, d.inflate)
	}
	fx := writeBundle(t, t.TempDir(), sharedImages(t, "example.com/"+testenv.Unique("real")))
	b, sel := openFixture(t, fx, Selection{})
	t.Cleanup(func() {
		for _, im := range sel {
			_, _ = dd.Command(context.Background(), "rmi", "-f", im.Primary.Config.String()).CombinedOutput()
		}
	})
	res, err := d.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, im := range sel {
		if r := res.Images[i]; r.Status != StatusLoaded || r.Digest != im.Primary.Config {
			t.Errorf("%s: %s %s", im.Ref, r.Status, r.Digest)
		}
		var got struct {
			ID       string   `json:"Id"`
			RepoTags []string `json:"RepoTags"`
			RootFS   struct {
				Layers []v1.Hash `json:"Layers"`
			} `json:"RootFS"`
		}
		if _, err := d.call(context.Background(), http.MethodGet, "/images/"+im.Primary.Config.String()+"/json", nil, &got); err != nil {
			t.Fatal(err)
		}
		var want []v1.Hash
		for _, h := range im.Primary.Layers {
			want = append(want, *fx.index.Blobs[h].DiffID)
		}
		if got.ID != im.Primary.Config.String() || fmt.Sprint(got.RootFS.Layers) != fmt.Sprint(want) {
			t.Errorf("%s: ID %s layers %v, want %s %v", im.Ref, got.ID, got.RootFS.Layers, im.Primary.Config, want)
		}
		if im.Tagged() && !slices.Contains(got.RepoTags, dockerName(im)) {
			t.Errorf("%s: tags %v", im.Ref, got.RepoTags)
		}
	}
	again, err := d.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Count(StatusSkipped) != len(sel) || again.BytesSent != 0 {
		t.Errorf("second load: %d skipped, %d bytes sent", again.Count(StatusSkipped), again.BytesSent)
	}
}

// randomTar is an uncompressed layer tar of about n random bytes.
func randomTar(t *testing.T, n int64) []byte {
	t.Helper()
	l, err := random.Layer(n, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gzipMembers is a gzip layer made of one gzip member per part.
func gzipMembers(t *testing.T, parts ...[]byte) v1.Layer {
	t.Helper()
	var gz bytes.Buffer
	for _, part := range parts {
		zw := gzip.NewWriter(&gz)
		zw.Write(part)
		zw.Close()
	}
	data := gz.Bytes()
	l, err := ggcrtarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, ggcrtarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Sending layers decompressed, the load enforces the decompression-bomb
// limit itself (the verify pass leaves those layers to it): a layer over
// the limit is refused before anything is sent when its size is known up
// front (its trailer, or counted when the trailer's guess is implausible),
// and stops the stream, naming nothing, when its trailer lies. A layer
// whose trailer's guess is implausible but that is within the limit loads.
func TestDaemonClassicBombLimit(t *testing.T) {
	old := inflateLimit
	inflateLimit = func(compressed int64) int64 { return 2 << 20 }
	t.Cleanup(func() { inflateLimit = old })
	tarData := randomTar(t, 8<<10)
	for _, tc := range []struct {
		name    string
		layer   v1.Layer
		sending bool // found while sending
		ok      bool
	}{
		{"trailer over the limit", gzipMembers(t, tarData, make([]byte, 4<<20)), false, false},
		{"guess implausible, counted over the limit", gzipMembers(t, tarData, make([]byte, 4<<20), randomTar(t, 4<<10)), false, false},
		{"trailer lies", gzipMembers(t, tarData, make([]byte, 4<<20), make([]byte, 1<<20)), true, false},
		{"guess implausible, within the limit", gzipMembers(t, tarData[:len(tarData)/2], tarData[len(tarData)/2:]), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEngine{}
			d := fakeDaemonJobs(t, f, 2)
			d.inflate = true
			fx := writeBundle(t, t.TempDir(), []testImage{{ref: "example.com/bomb/x:1", image: newImage(t, "linux/amd64", false, []int64{1 << 10}, tc.layer)}})
			b, sel := openFixture(t, fx, Selection{})
			_, err := d.Load(context.Background(), b, sel, nil)
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.ok {
				if err != nil || f.images[dockerName(sel[0])] == "" {
					t.Fatalf("load: %v; image %q", err, f.images[dockerName(sel[0])])
				}
				return
			}
			var be *BombError
			if !errors.As(err, &be) || be.Sending != tc.sending {
				t.Fatalf("load: %v, want a BombError with Sending %v", err, tc.sending)
			}
			if !tc.sending && f.loads != 0 {
				t.Errorf("%d loads sent before the bomb was found, want 0", f.loads)
			}
			if len(f.images) != 0 || f.tags != 0 {
				t.Errorf("images named: %v (%d tags)", f.images, f.tags)
			}
		})
	}
}
