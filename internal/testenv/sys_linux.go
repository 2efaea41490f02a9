package testenv

import "syscall"

// deathSigAttr makes a child get sig when the thread that started it dies
// (startProcess).
func deathSigAttr(sig syscall.Signal) (*syscall.SysProcAttr, error) {
	return &syscall.SysProcAttr{Pdeathsig: sig}, nil
}

// unmountDetach detaches the mount at path (umount -l).
func unmountDetach(path string) error {
	return syscall.Unmount(path, syscall.MNT_DETACH)
}
