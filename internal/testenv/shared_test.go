package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestUnique(t *testing.T) {
	a, b := Unique("x"), Unique("x")
	if a == b || !strings.HasPrefix(a, fmt.Sprintf("x%d-", os.Getpid())) {
		t.Errorf("Unique: %q then %q; want two names starting x%d-", a, b, os.Getpid())
	}
}

type exitWith int

func (c exitWith) Run() int { return int(c) }

// The shared registry is started once and kept; Run returns the tests'
// code, stops it and removes the shared dirs; the next SharedRegistry
// starts a new one.
func TestSharedRegistryStoppedByRun(t *testing.T) {
	Acceptance(t)
	Require(t, RegistryProgram)
	reg := SharedRegistry(t)
	if again := SharedRegistry(t); again != reg {
		t.Fatalf("a second SharedRegistry started %s beside %s", again.Host, reg.Host)
	}
	dir, err := SharedDir("bundle-testenv-shared-")
	if err != nil {
		t.Fatal(err)
	}
	if code := Run(exitWith(7)); code != 7 {
		t.Errorf("Run returned %d, want the tests' 7", code)
	}
	if ProcessAlive(reg.PID) {
		t.Errorf("registry pid %d still running after Run", reg.PID)
	}
	for _, d := range []string{dir, reg.Dir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is still there after Run: %v", d, err)
		}
	}
	next := SharedRegistry(t)
	t.Cleanup(func() { Run(exitWith(0)) })
	if next == reg || !ProcessAlive(next.PID) {
		t.Errorf("SharedRegistry after Run: %s (pid %d); want a new, running registry", next.Host, next.PID)
	}
}
