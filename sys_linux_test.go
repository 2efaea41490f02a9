package main

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The linux-only parts of the reliability tests (sys_other_test.go has
// their stand-ins for cross-compiling).

// dieWithTest makes a child get SIGKILL when the test binary dies, whatever
// happens.
func dieWithTest(*testing.T) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// tmpfsReadOnly is the mount flag for a read-only tmpfs (mountTmpfs).
const tmpfsReadOnly uintptr = unix.MS_RDONLY

// mountTmpfs mounts a tmpfs at dir (root only) and unmounts it when the test
// ends; it reports whether it could.
func mountTmpfs(t *testing.T, dir string, flags uintptr, size string) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size="+size+",mode=0755"); err != nil {
		t.Logf("mount tmpfs on %s: %v", dir, err)
		return false
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return true
}
