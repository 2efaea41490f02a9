package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// InstallHint is what the harness tells people to run when a program is missing.
const InstallHint = "scripts/install-deps.sh"

// sbinDirs are searched after $PATH: dockerd lives in /usr/sbin, which is not on
// every user's PATH.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// CI reports whether the tests run under CI (CI=true, or another true value
// that strconv.ParseBool accepts). Under CI a missing dependency fails a test
// instead of skipping it.
func CI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// ToolDir is where scripts/tools.sh builds the Go-installed test tools
// (cosign, oras, crane in bin/; Engine 29, containerd 2.4 and runc in
// engine29/): $BUNDLE_TOOLDIR, else $XDG_CACHE_HOME/bundle-tools, else
// ~/.cache/bundle-tools. Keep in step with tooldir() in scripts/tools.sh.
func ToolDir() string {
	if d := os.Getenv("BUNDLE_TOOLDIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "bundle-tools")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "bundle-tools")
	}
	return filepath.Join(home, ".cache", "bundle-tools")
}

// LookPath finds a program on $PATH, then in the sbin directories, then in
// ToolDir's bin.
func LookPath(program string) (string, error) {
	p, err := exec.LookPath(program)
	if err == nil || strings.ContainsRune(program, '/') {
		return p, err
	}
	for _, dir := range append(sbinDirs, filepath.Join(ToolDir(), "bin")) {
		candidate := filepath.Join(dir, program)
		if fi, statErr := os.Stat(candidate); statErr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", err
}

// Missing returns the programs, of those named, that LookPath cannot find, in
// the order given.
func Missing(programs ...string) []string {
	var missing []string
	for _, p := range programs {
		if _, err := LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// AcceptanceSkip is the message Acceptance skips a test with under -short.
const AcceptanceSkip = "acceptance test: needs a real registry/daemon; skipped under -short"

// Acceptance marks a test that needs real components (a registry, dockerd,
// containerd, skopeo, podman, ctr) or builds and runs the bundle binary: under
// go test -short it skips the test, so `make test-short` runs with no registry
// or daemon. Without -short it does nothing, and Require still decides, so
// under CI=true (where scripts/test.sh never passes -short) a missing program
// still fails the test. StartRegistry and StartDockerd call it; a test that
// does expensive work before starting a component calls it first.
func Acceptance(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip(AcceptanceSkip)
	}
}

// Require stops the test unless every program named is installed: under CI (see
// CI) it fails the test naming the missing programs and saying to run
// scripts/install-deps.sh; elsewhere it skips the test with a message that
// starts "SKIP (missing …)".
func Require(t testing.TB, programs ...string) {
	t.Helper()
	if missing := Missing(programs...); len(missing) > 0 {
		unavailable(t, strings.Join(missing, ", "), "run "+InstallHint+" to install it")
	}
}

// RequireRoot stops the test, as Require does for a missing program, unless the
// test runs as root (dockerd needs root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "root privileges", "run the tests as root (dockerd needs root)")
	}
}

// unavailable is the one place that decides between failing and skipping a test
// whose dependencies are not there.
func unavailable(t testing.TB, what, hint string) {
	t.Helper()
	if CI() {
		t.Fatalf("missing %s, which this test needs: %s (CI=true: a missing dependency fails the test instead of skipping it)", what, hint)
	}
	t.Skipf("SKIP (missing %s): this integration test did NOT run; %s, or set CI=true to make this a failure", what, hint)
}

// ErrNotRoot is returned by StartDockerdProcess when not running as root.
var ErrNotRoot = errors.New("dockerd needs root")

// MissingError is returned by the *Process functions when a program they need
// is not installed.
type MissingError struct {
	Programs []string
}

func (e *MissingError) Error() string {
	return "missing " + strings.Join(e.Programs, ", ") + ": run " + InstallHint
}

func lookPaths(programs ...string) ([]string, error) {
	if missing := Missing(programs...); len(missing) > 0 {
		return nil, &MissingError{Programs: missing}
	}
	paths := make([]string, len(programs))
	for i, p := range programs {
		paths[i], _ = LookPath(p)
	}
	return paths, nil
}

// pathWithSbin returns $PATH with the sbin directories appended where missing,
// for the environment of the processes the harness starts (dockerd looks up
// containerd, runc and docker-init on it).
func pathWithSbin() string {
	path := os.Getenv("PATH")
	have := map[string]bool{}
	for _, dir := range filepath.SplitList(path) {
		have[dir] = true
	}
	for _, dir := range sbinDirs {
		if !have[dir] {
			if path != "" {
				path += string(filepath.ListSeparator)
			}
			path += dir
		}
	}
	return path
}
