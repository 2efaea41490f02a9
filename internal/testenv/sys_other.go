//go:build !linux

package testenv

import (
	"fmt"
	"runtime"
	"syscall"
)

// errNotLinux: the components (dockerd, the registry, …) are started and
// stopped with linux facilities (Pdeathsig, lazy unmount, /proc); elsewhere
// starting one fails rather than leaving a process behind.
var errNotLinux = fmt.Errorf("internal/testenv starts test components on linux only, not %s", runtime.GOOS)

func deathSigAttr(syscall.Signal) (*syscall.SysProcAttr, error) { return nil, errNotLinux }

func unmountDetach(string) error { return errNotLinux }
