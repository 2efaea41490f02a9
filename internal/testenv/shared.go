package testenv

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// The shared components: one registry and one dockerd per test binary,
// started by the first test that asks and stopped by Run once every test
// has run. Acceptance tests use these (StartRegistry is for a test that
// needs a registry of its own: an empty catalog, a registry it stops);
// what they push there goes under names of their own (Unique).

var shared struct {
	mu   sync.Mutex
	dirs []string
	c    components
}

type components struct {
	regOnce sync.Once
	reg     *Registry
	regErr  error

	seedOnce sync.Once
	seeded   *Seeded
	seedErr  error

	dockOnce sync.Once
	dockerd  *Dockerd
	dockErr  error
}

// TestingM is what a TestMain runs: *testing.M.
type TestingM interface{ Run() int }

// Run runs the tests of m, then stops the shared registry and dockerd and
// removes the shared dirs; it returns m's exit code. (A SharedRegistry or
// SharedDockerd after it starts a new one.) A package whose
// tests use a shared component has
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
//
// (or hands a TestingM whose Run calls this one to testscript.Main).
func Run(m TestingM) int {
	code := m.Run()
	if shared.c.dockerd != nil {
		_ = shared.c.dockerd.Stop()
	}
	if shared.c.reg != nil {
		_ = shared.c.reg.Stop()
	}
	shared.c = components{}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, d := range shared.dirs {
		os.RemoveAll(d)
	}
	shared.dirs = nil
	return code
}

// SharedDir makes a temp dir that Run removes: for what the tests of one
// binary share (a component's storage, a binary built once, a bundle made
// once).
func SharedDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	shared.mu.Lock()
	shared.dirs = append(shared.dirs, dir)
	shared.mu.Unlock()
	return dir, nil
}

// SharedRegistry is the test binary's real distribution registry. Like
// StartRegistry, it skips the test under -short and skips or fails it
// when docker-registry is missing.
func SharedRegistry(t testing.TB) *Registry {
	t.Helper()
	Acceptance(t)
	Require(t, RegistryProgram)
	shared.c.regOnce.Do(func() {
		dir, err := SharedDir("bundle-registry-")
		if err != nil {
			shared.c.regErr = err
			return
		}
		shared.c.reg, shared.c.regErr = StartRegistryProcess(dir)
	})
	if shared.c.regErr != nil {
		t.Fatalf("starting the shared test registry: %v", shared.c.regErr)
	}
	return shared.c.reg
}

// SharedSeeded is the shared registry, seeded (once) with the test images
// of Seed.
func SharedSeeded(t testing.TB) (*Registry, *Seeded) {
	t.Helper()
	reg := SharedRegistry(t)
	shared.c.seedOnce.Do(func() { shared.c.seeded, shared.c.seedErr = SeedAt(reg.Host) })
	if shared.c.seedErr != nil {
		t.Fatalf("seeding the shared test registry: %v", shared.c.seedErr)
	}
	return reg, shared.c.seeded
}

// SharedDockerd is the test binary's Docker Engine on a private socket
// (StartDockerdProcess). It skips the test under -short, skips or fails
// it when a program is missing, and needs root.
func SharedDockerd(t testing.TB) *Dockerd {
	t.Helper()
	Acceptance(t)
	Require(t, DockerdProgram, DockerProgram, ContainerdProgram, RuncProgram)
	RequireRoot(t)
	shared.c.dockOnce.Do(func() {
		dir, err := SharedDir("bundle-dockerd-")
		if err != nil {
			shared.c.dockErr = err
			return
		}
		shared.c.dockerd, shared.c.dockErr = StartDockerdProcess(dir)
	})
	if shared.c.dockErr != nil {
		t.Fatalf("starting the shared dockerd: %v", shared.c.dockErr)
	}
	return shared.c.dockerd
}

var uniqueN atomic.Int64

// Unique returns prefix, the process ID and a number no other call of
// this process returns: a name for what a test leaves in a shared
// registry or daemon.
func Unique(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), uniqueN.Add(1))
}
