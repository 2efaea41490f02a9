package testenv

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// recordingTB records what Require does instead of doing it.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runTB runs f with a recordingTB in its own goroutine (Skipf and Fatalf end
// it, as they end a test).
func runTB(t *testing.T, f func(testing.TB)) *recordingTB {
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(rec)
	}()
	<-done
	return rec
}

func TestRequire(t *testing.T) {
	const absent = "bundle-testenv-no-such-program"
	tests := []struct {
		name        string
		ci          string
		programs    []string
		wantSkip    string // prefix
		wantFail    []string
		wantNothing bool
	}{
		{name: "present", ci: "true", programs: []string{"go"}, wantNothing: true},
		{name: "missing, not CI", ci: "", programs: []string{"go", absent}, wantSkip: "SKIP (missing " + absent + ")"},
		{name: "missing, CI=false", ci: "false", programs: []string{absent}, wantSkip: "SKIP (missing " + absent + ")"},
		{name: "missing, CI=true", ci: "true", programs: []string{absent, "go"}, wantFail: []string{absent, "scripts/install-deps.sh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			rec := runTB(t, func(tb testing.TB) { Require(tb, tt.programs...) })
			switch {
			case tt.wantNothing:
				if rec.skipped != "" || rec.failed != "" {
					t.Errorf("Require(%v): skipped %q, failed %q; want neither", tt.programs, rec.skipped, rec.failed)
				}
			case tt.wantSkip != "":
				if !strings.HasPrefix(rec.skipped, tt.wantSkip) || rec.failed != "" {
					t.Errorf("Require(%v): skipped %q, failed %q; want a skip starting %q", tt.programs, rec.skipped, rec.failed, tt.wantSkip)
				}
			default:
				if rec.skipped != "" {
					t.Errorf("Require(%v) skipped (%q); want a failure", tt.programs, rec.skipped)
				}
				for _, want := range tt.wantFail {
					if !strings.Contains(rec.failed, want) {
						t.Errorf("Require(%v) failure %q does not mention %q", tt.programs, rec.failed, want)
					}
				}
			}
		})
	}
}

// Acceptance skips under -short, whatever CI says, and does nothing without
// -short, so Require still fails a test under CI=true.
func TestAcceptance(t *testing.T) {
	short := flag.Lookup("test.short")
	was := short.Value.String()
	t.Cleanup(func() { _ = short.Value.Set(was) })
	for _, tt := range []struct {
		short, ci string
		wantSkip  bool
	}{
		{short: "true", ci: "true", wantSkip: true},
		{short: "true", ci: "", wantSkip: true},
		{short: "false", ci: "true"},
		{short: "false", ci: ""},
	} {
		t.Setenv("CI", tt.ci)
		if err := short.Value.Set(tt.short); err != nil {
			t.Fatal(err)
		}
		rec := runTB(t, func(tb testing.TB) {
			Acceptance(tb)
			Require(tb, "bundle-testenv-no-such-program")
		})
		switch {
		case tt.wantSkip && rec.skipped != AcceptanceSkip:
			t.Errorf("-short=%s CI=%q: skipped %q, failed %q; want the skip %q", tt.short, tt.ci, rec.skipped, rec.failed, AcceptanceSkip)
		case !tt.wantSkip && tt.ci == "true" && rec.failed == "":
			t.Errorf("-short=%s CI=true: skipped %q; want Require to fail the test", tt.short, rec.skipped)
		case !tt.wantSkip && tt.ci == "" && !strings.HasPrefix(rec.skipped, "SKIP (missing "):
			t.Errorf("-short=%s CI=\"\": skipped %q, failed %q; want Require's skip", tt.short, rec.skipped, rec.failed)
		}
	}
}

func TestLookPathFindsSbin(t *testing.T) {
	Require(t, DockerdProgram) // fails under CI=true, skips loudly otherwise
	if _, err := os.Stat("/usr/sbin/dockerd"); err != nil {
		t.Fatalf("dockerd is installed but not at /usr/sbin/dockerd: %v", err)
	}
	t.Setenv("PATH", "/usr/bin:/bin")
	if p, err := LookPath("dockerd"); err != nil || p != "/usr/sbin/dockerd" {
		t.Errorf("LookPath(dockerd) with /usr/sbin off PATH = %q, %v; want /usr/sbin/dockerd", p, err)
	}
}

func TestRegistryProcessStartStop(t *testing.T) {
	Acceptance(t)
	Require(t, RegistryProgram)
	start := time.Now()
	r, err := StartRegistryProcess(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("registry %s (pid %d) ready in %v", r.Host, r.PID, time.Since(start))
	if !strings.HasPrefix(r.Host, "127.0.0.1:") || r.URL != "http://"+r.Host {
		t.Errorf("Host %q, URL %q: want 127.0.0.1:PORT and http://127.0.0.1:PORT", r.Host, r.URL)
	}
	resp, err := http.Get(r.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %s", resp.Status)
	}
	if !ProcessAlive(r.PID) {
		t.Fatalf("registry pid %d not running", r.PID)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if ProcessAlive(r.PID) {
		t.Errorf("registry pid %d still running after Stop", r.PID)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := http.Get(r.URL + "/v2/"); err == nil {
		t.Errorf("registry still answers after Stop")
	}
}

func TestSeed(t *testing.T) {
	Acceptance(t)
	r := StartRegistry(t)
	s := Seed(t, r.Host)

	wantNames := []string{ImageAppA, ImageAppB, ImageAppC, ImageMulti, ImageOCI, ImageHello, ImagePinned}
	var gotNames []string
	for _, img := range s.Images {
		gotNames = append(gotNames, img.Name)
	}
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("seeded %v, want %v", gotNames, wantNames)
	}

	opts := []remote.Option{remote.WithAuth(authn.Anonymous), remote.WithContext(t.Context())}
	for _, img := range s.Images {
		t.Logf("seeded %-6s %s %s %s %v", img.Name, img.Digest, img.MediaType, img.Ref, img.Platforms)
		t.Run(img.Name, func(t *testing.T) {
			ref, err := name.ParseReference(img.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if ref.Context().RegistryStr() != r.Host {
				t.Errorf("Ref %s is not on %s", img.Ref, r.Host)
			}
			desc, err := remote.Head(ref, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.Digest || desc.MediaType != img.MediaType || desc.Size != img.Size {
				t.Errorf("registry serves %s %s %d, Seeded says %s %s %d",
					desc.Digest, desc.MediaType, desc.Size, img.Digest, img.MediaType, img.Size)
			}
			if got, ok := s.Lookup(img.Ref); !ok || got.Name != img.Name {
				t.Errorf("Lookup(%q) = %v, %v", img.Ref, got.Name, ok)
			}
			if _, err := remote.Head(mustDigest(t, img.DigestRef()), opts...); err != nil {
				t.Errorf("DigestRef %s: %v", img.DigestRef(), err)
			}
			checkSmall(t, img, opts)
		})
	}

	t.Run("shared base layer", func(t *testing.T) {
		for _, n := range []string{ImageAppA, ImageAppB, ImageAppC} {
			img := s.Find(t, n)
			if img.MediaType != types.DockerManifestSchema2 {
				t.Errorf("%s: media type %s", n, img.MediaType)
			}
			if len(img.Layers) != 2 || img.Layers[0] != s.SharedLayer {
				t.Errorf("%s: layers %v, want [%s, own]", n, img.Layers, s.SharedLayer)
			}
			if !slices.Equal(img.Platforms, []string{"linux/amd64"}) {
				t.Errorf("%s: platforms %v", n, img.Platforms)
			}
		}
		a, b := s.Find(t, ImageAppA), s.Find(t, ImageAppB)
		if a.Layers[1] == b.Layers[1] || a.Digest == b.Digest {
			t.Errorf("app-a and app-b should differ in their own layer")
		}
	})

	t.Run("multi-arch index", func(t *testing.T) {
		img := s.Find(t, ImageMulti)
		if img.MediaType != types.DockerManifestList {
			t.Errorf("media type %s, want %s", img.MediaType, types.DockerManifestList)
		}
		if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(img.Platforms, want) {
			t.Errorf("platforms %v, want %v", img.Platforms, want)
		}
		if len(img.Manifests) != 2 {
			t.Fatalf("%d manifests, want 2", len(img.Manifests))
		}
		idx, err := remote.Index(mustDigest(t, img.DigestRef()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range im.Manifests {
			child := img.Manifests[i]
			if m.Digest != child.Digest || m.MediaType != types.DockerManifestSchema2 {
				t.Errorf("index entry %d: %s %s, Seeded child %s", i, m.Digest, m.MediaType, child.Digest)
			}
			if _, err := remote.Head(mustDigest(t, child.Ref), opts...); err != nil {
				t.Errorf("child %s: %v", child.Ref, err)
			}
		}
	})

	t.Run("OCI media types", func(t *testing.T) {
		img := s.Find(t, ImageOCI)
		if img.MediaType != types.OCIManifestSchema1 {
			t.Errorf("media type %s", img.MediaType)
		}
		ri, err := remote.Image(mustDigest(t, img.DigestRef()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ri.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("config media type %s", m.Config.MediaType)
		}
		for _, l := range m.Layers {
			if l.MediaType != types.OCILayer {
				t.Errorf("layer %s media type %s", l.Digest, l.MediaType)
			}
		}
	})

	t.Run("pinned by digest", func(t *testing.T) {
		img := s.Find(t, ImagePinned)
		d := mustDigest(t, img.Ref)
		if d.DigestStr() != img.Digest.String() {
			t.Errorf("Ref %s does not pin %s", img.Ref, img.Digest)
		}
		byTag, err := remote.Head(mustTag(t, r.Host+"/seed/pinned:1"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if byTag.Digest != img.Digest {
			t.Errorf("seed/pinned:1 is %s, pinned Ref says %s", byTag.Digest, img.Digest)
		}
	})

	t.Run("hello", func(t *testing.T) {
		img := s.Find(t, ImageHello)
		if want := []string{"linux/" + runtime.GOARCH}; !slices.Equal(img.Platforms, want) {
			t.Errorf("platforms %v, want %v", img.Platforms, want)
		}
		ri, err := remote.Image(mustDigest(t, img.DigestRef()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ri.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.Config.Entrypoint, []string{"/hello"}) {
			t.Errorf("entrypoint %v", cfg.Config.Entrypoint)
		}
	})

	t.Run("deterministic", func(t *testing.T) {
		again := Seed(t, r.Host) // the same registry again: nothing moves
		r2 := StartRegistry(t)
		other := Seed(t, r2.Host) // another registry: the same digests
		for _, img := range s.Images {
			for _, s2 := range []*Seeded{again, other} {
				got := s2.Find(t, img.Name)
				if got.Digest != img.Digest {
					t.Errorf("%s: re-seeding into %s gave %s, first seed %s", img.Name, s2.Host, got.Digest, img.Digest)
				}
			}
		}
	})
}

// checkSmall checks that every blob of an image (or an index's images) is
// small, as the harness promises.
func checkSmall(t *testing.T, img SeededImage, opts []remote.Option) {
	t.Helper()
	if len(img.Manifests) > 0 {
		for _, child := range img.Manifests {
			checkSmall(t, child, opts)
		}
		return
	}
	ri, err := remote.Image(mustDigest(t, img.DigestRef()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ri.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	if total > 2<<20 {
		t.Errorf("%s: %d bytes of layers, want a small test image", img.Ref, total)
	}
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func TestDockerdRunsSeededImage(t *testing.T) {
	Acceptance(t)
	_, keyErr := os.Stat("/etc/docker/key.json")
	d := StartDockerd(t)
	r := StartRegistry(t)
	s := Seed(t, r.Host)
	hello := s.Find(t, ImageHello)

	if !strings.HasPrefix(d.Host, "unix://") || len(d.Socket) > maxSocketPath || len(d.ContainerdSocket)+len(".ttrpc") > maxSocketPath {
		t.Errorf("socket paths too long or malformed: %s, %s", d.Host, d.ContainerdSocket)
	}
	if _, err := os.Stat(d.ContainerdSocket); err != nil {
		t.Errorf("ContainerdSocket: %v", err)
	}
	if d.ContainerdPID == 0 || !ProcessAlive(d.ContainerdPID) {
		t.Errorf("containerd pid %d not running", d.ContainerdPID)
	}
	if !slices.Contains(d.Env(), "DOCKER_HOST="+d.Host) {
		t.Errorf("Env() %v lacks DOCKER_HOST", d.Env())
	}

	start := time.Now()
	d.Docker(t, "pull", "-q", hello.Ref)
	t.Logf("docker pull %s: %v", hello.Ref, time.Since(start))
	repoDigests := d.Docker(t, "image", "inspect", "--format", "{{json .RepoDigests}}", hello.Ref)
	if !strings.Contains(repoDigests, hello.DigestRef()) {
		t.Errorf("docker image inspect RepoDigests %s; want %s", strings.TrimSpace(repoDigests), hello.DigestRef())
	}
	start = time.Now()
	out := d.Docker(t, "run", "--rm", "--network", "none", hello.Ref)
	t.Logf("docker run: %v", time.Since(start))
	if out != HelloOutput+"\n" {
		t.Errorf("docker run %s printed %q, want %q", hello.Ref, out, HelloOutput+"\n")
	}
	if _, err := LookPath("ctr"); err == nil {
		out, err := exec.Command("ctr", "--address", d.ContainerdSocket, "version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Server:") {
			t.Errorf("ctr version against ContainerdSocket: %v\n%s", err, out)
		}
	}

	start = time.Now()
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("dockerd stopped in %v", time.Since(start))
	for what, pid := range map[string]int{"dockerd": d.PID, "containerd": d.ContainerdPID} {
		if ProcessAlive(pid) {
			t.Errorf("%s pid %d still running after Stop", what, pid)
		}
	}
	if pids := processesMentioning(d.ExecRoot + "/"); len(pids) > 0 {
		t.Errorf("processes naming %s still running after Stop: %v", d.ExecRoot, pids)
	}
	if _, err := os.Stat(d.ExecRoot); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec root %s not removed: %v", d.ExecRoot, err)
	}
	if mps := mountsUnder(d.DataRoot); len(mps) > 0 {
		t.Errorf("still mounted under the data root: %v", mps)
	}
	if errors.Is(keyErr, os.ErrNotExist) {
		if _, err := os.Stat("/etc/docker/key.json"); err == nil {
			t.Errorf("dockerd wrote /etc/docker/key.json")
		}
	}
}

func TestDockerdStopCleansUpAfterACrash(t *testing.T) {
	Acceptance(t)
	d := StartDockerd(t)
	if d.ContainerdPID == 0 {
		t.Fatal("no containerd pid")
	}
	// A dockerd that dies without shutting down leaves its data root mounted
	// (and would leave its containerd, had that not a parent-death signal of
	// its own): Stop must clean up and report the crash.
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.proc.done
	err := d.Stop()
	if err == nil || !strings.Contains(err.Error(), "had exited before Stop") {
		t.Errorf("Stop after a crash: %v; want it to report the crash", err)
	}
	if mps := mountsUnder(d.DataRoot); len(mps) > 0 {
		t.Errorf("still mounted after Stop: %v", mps)
	}
	if ProcessAlive(d.ContainerdPID) {
		t.Errorf("containerd pid %d still running", d.ContainerdPID)
	}
	if pids := processesMentioning(d.ExecRoot + "/"); len(pids) > 0 {
		t.Errorf("processes naming %s still running: %v", d.ExecRoot, pids)
	}
	if _, err := os.Stat(d.ExecRoot); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec root %s not removed: %v", d.ExecRoot, err)
	}
}

// crashHelperEnv makes the test binary, run by TestTestBinaryCrashLeavesNothing,
// start a registry and a dockerd in the dir it names and exit without stopping
// them, as a test binary that dies (a panic, a -timeout) does.
const crashHelperEnv = "BUNDLE_TESTENV_CRASH_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		crashHelper(dir)
	}
	os.Exit(m.Run())
}

func crashHelper(dir string) {
	r, err := StartRegistryProcess(filepath.Join(dir, "registry"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	d, err := StartDockerdProcess(filepath.Join(dir, "dockerd"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Printf("started %d %d %d %s\n", r.PID, d.PID, d.ContainerdPID, d.ExecRoot)
	os.Exit(3) // no Stop, no cleanup
}

func TestTestBinaryCrashLeavesNothing(t *testing.T) {
	Acceptance(t)
	Require(t, RegistryProgram, DockerdProgram, ContainerdProgram, RuncProgram)
	RequireRoot(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	out, _ := cmd.CombinedOutput()
	var registryPID, dockerdPID, containerdPID int
	var execRoot string
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "started %d %d %d %s", &registryPID, &dockerdPID, &containerdPID, &execRoot); err == nil {
			break
		}
	}
	if dockerdPID == 0 || !strings.HasPrefix(execRoot, "/") {
		t.Fatalf("helper did not start its processes:\n%s", out)
	}
	shortDir := filepath.Dir(execRoot)
	pids := []int{registryPID, dockerdPID, containerdPID}
	start := time.Now()
	left := waitGone(pids, 30*time.Second)
	t.Logf("registry, dockerd and containerd gone %v after the test binary died", time.Since(start))
	left = append(left, processesMentioning(execRoot+"/")...)
	// Whatever is left was started by the helper: stop it, then fail.
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(left) > 0 {
		t.Errorf("processes %v outlived the test binary that started them", left)
	}
	waitGone(left, 5*time.Second)
	for _, mp := range mountsUnder(shortDir) {
		_ = unmountDetach(mp)
	}
	for _, mp := range mountsUnder(dir) {
		_ = unmountDetach(mp)
	}
	if err := os.RemoveAll(shortDir); err != nil {
		t.Errorf("removing %s: %v", shortDir, err)
	}
}
