//go:build !linux

package main

import (
	"runtime"
	"syscall"
	"testing"
)

// Stand-ins for sys_linux_test.go, so that the tests compile (go vet)
// elsewhere; a test that uses one fails (Errorf, not Fatalf, so that
// staticcheck does not take the code after the calls for dead).

func dieWithTest(t *testing.T) *syscall.SysProcAttr {
	t.Errorf("starting bundle so that it dies with the test: linux only, not %s", runtime.GOOS)
	return nil
}

const tmpfsReadOnly uintptr = 0

func mountTmpfs(t *testing.T, dir string, _ uintptr, _ string) bool {
	t.Errorf("mounting a tmpfs on %s: linux only, not %s", dir, runtime.GOOS)
	return false
}
