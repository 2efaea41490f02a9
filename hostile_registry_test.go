package main

// A hostile or broken registry cannot hang create, load or inventory
// (issue 11, class 4): the real registry behind testenv.FaultProxy in a
// hostile mode, the real binary run under a deadline (the old code ran
// forever in most of these), and each run must end with exit 1, one error
// line naming the registry, the repository and (for a blob) the digest,
// nothing at the output path, and a cache holding only verified blobs.
// docs/RELIABILITY.md lists each mode with its test.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// hostileDeadline is how long one run may take: every case ends in a few
// seconds; the old code was still running at this point.
const hostileDeadline = 60 * time.Second

// runBounded runs the bundle binary and waits for it up to hostileDeadline
// (past it, the child is killed and the test fails).
func runBounded(t *testing.T, args ...string) (stderr string, code int, took time.Duration) {
	t.Helper()
	start := time.Now()
	c := startBundle(t, args...)
	code = c.wait(t, hostileDeadline)
	return c.stderr.String(), code, time.Since(start)
}

// notReadWhole checks that no oversized answer was read in full: the
// client stops at its Content-Length, with what the socket buffers took.
func notReadWhole(t *testing.T, p *testenv.FaultProxy) {
	t.Helper()
	p.WaitIdle(10 * time.Second)
	for _, r := range p.Requests() {
		if r.Fault == testenv.FaultOversize.String() && r.Bytes > 16<<20 {
			t.Errorf("%s %s: %d bytes of an oversized answer were read", r.Method, r.Path, r.Bytes)
		}
	}
}

// oneErrorLine checks that stderr is one "bundle: error:" line holding
// every fragment of want.
func oneErrorLine(t *testing.T, stderr string, want ...string) string {
	t.Helper()
	msg := strings.TrimSpace(stderr)
	if !strings.HasPrefix(msg, "bundle: error: ") || strings.Contains(msg, "\n") {
		t.Errorf("want one 'bundle: error:' line, got:\n%s", stderr)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the error lacks %q:\n%s", w, msg)
		}
	}
	return msg
}

func TestHostileRegistryCreate(t *testing.T) {
	testenv.Acceptance(t)
	s := newFaultSetup(t)
	appA := s.images[0]
	own := s.own().String()
	repoA := strings.Split(strings.TrimPrefix(appA.Ref, s.proxy.Host+"/"), ":")[0] // seed/app-a
	tests := []struct {
		name  string
		fault testenv.Fault
		regex bool     // images.yaml names app-a by a tag regex (create lists its tags)
		want  []string // besides the registry and the repository
		stall string   // --stall-timeout
	}{
		{name: "redirect loop on a manifest", fault: testenv.Fault{Mode: testenv.FaultRedirectLoop, Kind: testenv.KindManifest},
			want: []string{"stopped after 10 redirects"}},
		{name: "redirect loop on a layer", fault: testenv.Fault{Mode: testenv.FaultRedirectLoop, Digest: own},
			want: []string{own, "stopped after 10 redirects"}},
		{name: "200 ignoring Range with half the layer", fault: testenv.Fault{Mode: testenv.FaultIgnoreRange, Digest: own},
			want: []string{own, "unexpected EOF"}},
		{name: "tag list linking to itself", regex: true, fault: testenv.Fault{Mode: testenv.FaultLinkLoop, Kind: testenv.KindTags},
			want: []string{"listing tags", "links to a page already read"}},
		{name: "oversized manifest (64 MiB)", fault: testenv.Fault{Mode: testenv.FaultOversize, Kind: testenv.KindManifest, Method: "GET"},
			want: []string{"over the limit of 4194304"}},
		{name: "layer longer than its descriptor", fault: testenv.Fault{Mode: testenv.FaultLonger, Digest: own},
			want: []string{own, "size mismatch"}},
		// A byte every 2 s never leaves 3 s without a byte: "no byte for
		// --stall-timeout" would wait for ever; fewer than 64 KiB in 3 s is
		// a stall.
		{name: "layer dripping 1 byte every 2 s", stall: "3s", fault: testenv.Fault{Mode: testenv.FaultDrip, Digest: own},
			want: []string{own, "stalled"}},
		{name: "manifest dripping 1 byte every 2 s", stall: "3s", fault: testenv.Fault{Mode: testenv.FaultDrip, Kind: testenv.KindManifest, Method: "GET"},
			want: []string{"stalled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.proxy.ClearFaults()
			t.Cleanup(s.proxy.ClearFaults)
			s.proxy.WaitIdle(5 * time.Second)
			s.proxy.ResetCounts()
			rule := s.proxy.Inject(tt.fault)
			dir := t.TempDir()
			out := filepath.Join(dir, "images.tar")
			cache := filepath.Join(dir, "cache")
			yaml := s.yaml(t, dir)
			if tt.regex {
				tag := strings.Split(appA.Ref, ":")[2]
				y := fmt.Sprintf("platforms: [linux/amd64]\nimages:\n  - name: %s/%s\n    tags: {regex: '^%s$'}\n", s.proxy.Host, repoA, tag)
				if err := os.WriteFile(yaml, []byte(y), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			stall := tt.stall
			if stall == "" {
				stall = "1s"
			}
			stderr, code, took := runBounded(t, "create", "-q", "-f", yaml, "-o", out, "--cache", cache, "--retries", "2", "--stall-timeout", stall)
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			if rule.Hits() == 0 {
				t.Fatal("the fault was never injected")
			}
			msg := oneErrorLine(t, stderr, append([]string{s.proxy.Host + "/seed/"}, tt.want...)...)
			notReadWhole(t, s.proxy)
			noOutput(t, out)
			if inCache := checkCache(t, cache); tt.fault.Digest != "" && inCache[tt.fault.Digest] {
				t.Errorf("blob %s is in the cache after failing", tt.fault.Digest)
			}
			t.Logf("%s (%d requests hit, %s)", msg, rule.Hits(), took.Round(time.Millisecond))
		})
	}
}

func TestHostileRegistryLoad(t *testing.T) {
	testenv.Acceptance(t)
	f := newLoadFaults(t)
	reg := testenv.StartRegistry(t)
	p := testenv.StartFaultProxy(t, reg.Host)
	tests := []struct {
		name  string
		fault testenv.Fault
		want  []string
	}{
		{"redirect loop on every upload start", testenv.Fault{Mode: testenv.FaultRedirectLoop, Kind: testenv.KindUpload, Method: "POST"},
			[]string{"uploading blob sha256:", "stopped after 10 redirects"}},
		{"redirect loop on a manifest HEAD", testenv.Fault{Mode: testenv.FaultRedirectLoop, Kind: testenv.KindManifest, Method: "HEAD"},
			[]string{"stopped after 10 redirects"}},
		{"registry reading uploads 1 byte every 2 s", testenv.Fault{Mode: testenv.FaultDrip, Kind: testenv.KindUpload, Method: "PATCH"},
			[]string{"uploading blob sha256:", "stalled"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.ClearFaults()
			t.Cleanup(p.ClearFaults)
			rule := p.Inject(tt.fault)
			prefix := fmt.Sprintf("h%d", i)
			stderr, code, took := runBounded(t, "load", "-q", "-i", f.bundle, "--to", "docker://"+p.Host+"/"+prefix, "--retries", "2", "--stall-timeout", "3s")
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			if rule.Hits() == 0 {
				t.Fatal("the fault was never injected")
			}
			msg := oneErrorLine(t, stderr, append([]string{p.Host, prefix + "/seed/"}, tt.want...)...)
			// Every upload (or manifest check) fails, and tags go last:
			// no tag at all, and none naming an incomplete image.
			checkNoIncompleteTags(t, reg)
			tags := tagsUnder(t, reg, prefix)
			if len(tags) > 0 {
				t.Errorf("tags after the failed load: %v", tags)
			}
			t.Logf("%s (%d requests hit, %s; tags: %v)", msg, rule.Hits(), took.Round(time.Millisecond), tags)
		})
	}
}

func TestHostileRegistryInventory(t *testing.T) {
	testenv.Acceptance(t)
	reg, seeded := testenv.SharedSeeded(t)
	p := testenv.StartFaultProxy(t, reg.Host)
	appA := seeded.Find(t, testenv.ImageAppA)
	tests := []struct {
		name  string
		fault testenv.Fault
		want  []string
	}{
		{"tag list linking to itself", testenv.Fault{Mode: testenv.FaultLinkLoop, Kind: testenv.KindTags},
			[]string{"listing the tags of " + p.Host + "/seed/", "links to a page already read"}},
		{"catalog linking to itself", testenv.Fault{Mode: testenv.FaultLinkLoop, Kind: testenv.KindOther},
			[]string{"catalog", "links to a page already read"}},
		{"redirect loop on a manifest", testenv.Fault{Mode: testenv.FaultRedirectLoop, Kind: testenv.KindManifest},
			[]string{"fetching " + p.Host + "/seed/", "stopped after 10 redirects"}},
		{"oversized manifest (64 MiB)", testenv.Fault{Mode: testenv.FaultOversize, Kind: testenv.KindManifest},
			[]string{"fetching " + p.Host + "/seed/", "over the limit of 4194304"}},
		{"manifest dripping 1 byte every 2 s", testenv.Fault{Mode: testenv.FaultDrip, Kind: testenv.KindManifest},
			[]string{"fetching " + p.Host + "/seed/", "stalled"}},
	}
	// Without a fault it works through the proxy (the bounds do not stop an
	// honest registry).
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.json")
	if stderr, code, _ := runBounded(t, "inventory", "-q", "--from", "docker://"+p.Host+"/seed", "-o", ok); code != 0 {
		t.Fatalf("inventory without a fault: exit %d\n%s", code, stderr)
	}
	if b, err := os.ReadFile(ok); err != nil || !strings.Contains(string(b), appA.Layers[0].Hex) {
		t.Fatalf("the inventory lacks app-a's layer %s: %v", appA.Layers[0], err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.ClearFaults()
			t.Cleanup(p.ClearFaults)
			p.WaitIdle(5 * time.Second)
			p.ResetCounts()
			rule := p.Inject(tt.fault)
			out := filepath.Join(t.TempDir(), "inventory.json")
			stderr, code, took := runBounded(t, "inventory", "-q", "--from", "docker://"+p.Host+"/seed", "-o", out, "--retries", "2", "--stall-timeout", "3s")
			if code != 1 {
				t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			if rule.Hits() == 0 {
				t.Fatal("the fault was never injected")
			}
			msg := oneErrorLine(t, stderr, append([]string{p.Host}, tt.want...)...)
			notReadWhole(t, p)
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written by a failed inventory", out)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*")); len(left) > 0 {
				t.Errorf("files left: %v", left)
			}
			t.Logf("%s (%d requests hit, %s)", msg, rule.Hits(), took.Round(time.Millisecond))
		})
	}
}
