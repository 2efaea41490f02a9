package testenv

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

// Planted files: what whoever else writes a directory may leave where
// bundle expects a regular file. Each plant replaces a file (not a
// directory) already at p.

// PlantFIFO puts a named pipe at p: opening it for reading waits for a
// writer that never comes.
func PlantFIFO(t testing.TB, p string) {
	t.Helper()
	clearPlant(t, p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatalf("planting a FIFO: %v", err)
	}
}

// PlantLink puts a symbolic link to target at p: to a device (/dev/zero:
// a read never ends), to a secret, or out of a tree.
func PlantLink(t testing.TB, target, p string) {
	t.Helper()
	clearPlant(t, p)
	if err := os.Symlink(target, p); err != nil {
		t.Fatalf("planting a link: %v", err)
	}
}

// NotRegular are the plants that every reader of a file it does not own
// must refuse at once, by name: a FIFO, and a link to /dev/zero (a device).
func NotRegular() map[string]func(t testing.TB, p string) {
	return map[string]func(t testing.TB, p string){
		"FIFO":              PlantFIFO,
		"link to /dev/zero": func(t testing.TB, p string) { t.Helper(); PlantLink(t, "/dev/zero", p) },
	}
}

func clearPlant(t testing.TB, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("planting at %s: %v", p, err)
	}
}
