package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// The real registry and dockerd are started once per test binary, on
// first use, and stopped by TestMain after every test has run.
var shared struct {
	regOnce sync.Once
	reg     *testenv.Registry
	seeded  *testenv.Seeded
	regErr  error

	dockOnce sync.Once
	dockerd  *testenv.Dockerd
	dockErr  error
	dirs     []string
}

func TestMain(m *testing.M) {
	testscript.Main(withCleanup{m}, map[string]func(){
		"bundle": func() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) },
	})
}

// withCleanup runs the tests, then stops the shared registry and dockerd.
type withCleanup struct{ m *testing.M }

func (w withCleanup) Run() int {
	code := w.m.Run()
	if shared.dockerd != nil {
		_ = shared.dockerd.Stop()
	}
	if shared.reg != nil {
		_ = shared.reg.Stop()
	}
	for _, d := range shared.dirs {
		os.RemoveAll(d)
	}
	return code
}

// sharedRegistry is a real distribution registry seeded with the test images.
func sharedRegistry(t testing.TB) (*testenv.Registry, *testenv.Seeded) {
	t.Helper()
	testenv.Acceptance(t)
	testenv.Require(t, testenv.RegistryProgram)
	shared.regOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bundle-registry-")
		if err != nil {
			shared.regErr = err
			return
		}
		shared.dirs = append(shared.dirs, dir)
		if shared.reg, shared.regErr = testenv.StartRegistryProcess(dir); shared.regErr != nil {
			return
		}
		shared.seeded, shared.regErr = testenv.SeedAt(shared.reg.Host)
	})
	if shared.regErr != nil {
		t.Fatalf("starting the test registry: %v", shared.regErr)
	}
	return shared.reg, shared.seeded
}

// sharedDockerd is a real dockerd on a private socket.
func sharedDockerd(t testing.TB) *testenv.Dockerd {
	t.Helper()
	testenv.Acceptance(t)
	testenv.Require(t, testenv.DockerdProgram, testenv.DockerProgram, testenv.ContainerdProgram, testenv.RuncProgram)
	testenv.RequireRoot(t)
	shared.dockOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bd")
		if err != nil {
			shared.dockErr = err
			return
		}
		shared.dirs = append(shared.dirs, dir)
		shared.dockerd, shared.dockErr = testenv.StartDockerdProcess(dir)
	})
	if shared.dockErr != nil {
		t.Fatalf("starting dockerd: %v", shared.dockErr)
	}
	return shared.dockerd
}

// bundleCLI runs the bundle command in-process and returns its output and exit code.
func bundleCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"bundle"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// mustBundle runs bundle and fails the test unless it exits 0.
func mustBundle(t testing.TB, args ...string) string {
	t.Helper()
	o, e, code := bundleCLI(t, args...)
	if code != 0 {
		t.Fatalf("bundle %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, o, e)
	}
	return o
}

// jsonResult decodes a command's --json output (its stdout), failing the
// test when it is not one T (bundle.CreateResult, bundle.LoadResult).
func jsonResult[T any](t testing.TB, stdout string) *T {
	t.Helper()
	var r T
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	return &r
}

// loadJSON runs bundle load with --json and returns its result.
func loadJSON(t testing.TB, args ...string) *bundle.LoadResult {
	t.Helper()
	return jsonResult[bundle.LoadResult](t, mustBundle(t, append([]string{"load", "--json"}, args...)...))
}

// command runs a program and fails the test with its output on error.
func command(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	testenv.Acceptance(t)
	testenv.Require(t, name)
	path, _ := testenv.LookPath(name)
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String()
}
