package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/internal/testenv"
)

func noTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("read %q, %v; want \"new\"", got, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	noTemps(t, dir)
}

// A failed rename leaves the old name as it was and no temp file.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(p, []byte("data"), 0o644)
	if err == nil || !strings.HasPrefix(err.Error(), "writing "+p+": ") {
		t.Fatalf("WriteFile over a non-empty directory: %v; want a 'writing %s' error", err, p)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Errorf("the directory was replaced: %v", err)
	}
	noTemps(t, dir)
}

func TestWriteFileIn(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := WriteFileIn(root, "sub/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "f")); string(got) != "x" {
		t.Errorf("read %q, want \"x\"", got)
	}
	noTemps(t, filepath.Join(dir, "sub"))

	// A directory that is a link out of root is not written through.
	outside := t.TempDir()
	testenv.PlantLink(t, outside, filepath.Join(dir, "out"))
	err = WriteFileIn(root, "out/f", []byte("x"), 0o644)
	var ee *safefs.EscapeError
	if !errors.As(err, &ee) {
		t.Errorf("WriteFileIn through a link out of root: %v; want an *EscapeError", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "f")); err == nil {
		t.Errorf("a file was written outside root")
	}
	noTemps(t, outside)
}

func TestLockHeld(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	f, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := Lock(p); !errors.Is(err, ErrHeld) {
		if g != nil {
			g.Release()
		}
		t.Fatalf("second Lock: %v; want ErrHeld", err)
	}
	f.Release()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file is left after Release: %v", err)
	}
	f.Release() // a second Release does nothing
	g, err := Lock(p)
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	g.Release()
}

// A run that opened the lock file just before its holder released (and
// removed) it must not end up holding the removed inode while a third run
// locks a new file under the same name.
func TestLockAfterRemoval(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	first, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	testHookAfterOpen = func() {
		if calls++; calls == 1 {
			first.Release() // between the second run's open and its flock
		}
	}
	t.Cleanup(func() { testHookAfterOpen = nil })
	second, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release()
	testHookAfterOpen = nil
	if calls < 2 {
		t.Errorf("Lock did not try again after the file it opened was removed (%d opens)", calls)
	}
	if third, err := Lock(p); !errors.Is(err, ErrHeld) {
		if third != nil {
			third.Release()
		}
		t.Errorf("a third Lock while the second holds = %v; want ErrHeld", err)
	}
}

func TestLockDirHeld(t *testing.T) {
	dir := t.TempDir()
	a, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := LockFile(a); err != nil {
		t.Fatal(err)
	}
	if err := LockFile(b); !errors.Is(err, ErrHeld) {
		t.Errorf("second LockFile: %v; want ErrHeld", err)
	}
}

// A link or a FIFO planted as the lock file is refused, neither followed
// nor waited on.
func TestLockRefusesLinkAndFIFO(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	testenv.PlantLink(t, target, link)
	var nr *safefs.NotRegularError
	if f, err := Lock(link); !errors.As(err, &nr) {
		if f != nil {
			f.Release()
		}
		t.Errorf("Lock on a link: %v; want a *NotRegularError", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("the link was followed: %s exists", target)
	}
	fifo := filepath.Join(dir, "fifo")
	testenv.PlantFIFO(t, fifo)
	done := make(chan error, 1)
	go func() {
		f, err := Lock(fifo)
		if f != nil {
			f.Release()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.As(err, &nr) {
			t.Errorf("Lock on a FIFO: %v; want a *NotRegularError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock waited on a FIFO")
	}
}
