package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
)

// nightly runs scripts/nightly-export.sh for date and returns its log and
// exit code.
func nightly(t *testing.T, bin, cache, date string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", append([]string{"scripts/nightly-export.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "BUNDLE="+bin, "BUNDLE_CACHE="+cache, "EXPORT_DATE="+date)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("nightly-export %s: exit %d\n%s", date, code, out.String())
	return out.String(), code
}

// scripts/nightly-export.sh: a full bundle the first night, nothing on a
// night without changes, a delta against the previous bundle after a
// change, the newest -k kept, and a clear failure.
func TestNightlyExport(t *testing.T) {
	testenv.Acceptance(t)
	reg, _ := testenv.SharedSeeded(t)
	bin := bundleBinary(t)
	repo := reg.Host + "/" + testenv.Unique("nightly")
	base := randomLayer(t, 256<<10)
	appTop := randomLayer(t, 16<<10)
	push(t, repo+"/app:1", deltaImage(t, base, appTop))
	push(t, repo+"/tool:1", deltaImage(t, base, randomLayer(t, 16<<10)))
	dir := t.TempDir()
	yaml := filepath.Join(dir, "images.yaml")
	os.WriteFile(yaml, []byte("platforms: [linux/amd64]\nimages:\n  - "+repo+"/app:1\n  - "+repo+"/tool:1\n"), 0o644)
	exports, cache := filepath.Join(dir, "exports"), filepath.Join(dir, "cache")
	run := func(date string, args ...string) (string, int) {
		return nightly(t, bin, cache, date, append([]string{"-f", yaml, "-d", exports, "-k", "2"}, args...)...)
	}
	day := func(d string) string { return filepath.Join(exports, "images-"+d+".tar") }

	log, code := run("2026-11-20")
	if code != 0 || !strings.Contains(log, "a full bundle") {
		t.Fatalf("first night: exit %d", code)
	}
	mustBundle(t, "verify", "-q", "-i", day("2026-11-20"))

	log, code = run("2026-11-21")
	if code != 0 || !strings.Contains(log, "unchanged: every image has the digests of "+day("2026-11-20")) {
		t.Errorf("a night without changes: exit %d", code)
	}
	if _, err := os.Stat(day("2026-11-21")); err == nil {
		t.Error("a night without changes wrote a bundle")
	}

	push(t, repo+"/app:1", deltaImage(t, base, appTop, randomLayer(t, 8<<10))) // a new top layer
	log, code = run("2026-11-22", "--split", "64K")
	if code != 0 || !strings.Contains(log, "a delta against "+day("2026-11-20")) {
		t.Fatalf("a night with a change: exit %d", code)
	}
	idx, _, err := bundle.ReadBundleIndex(day("2026-11-22"))
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.External) != 3 {
		t.Errorf("the delta leaves out %d layers, want 3 (the base and both old top layers)", len(idx.External))
	}

	push(t, repo+"/tool:1", deltaImage(t, base, randomLayer(t, 16<<10)))
	if _, code = run("2026-11-23"); code != 0 {
		t.Fatalf("fourth night: exit %d", code)
	}
	// -k 2: the first bundle is gone, the last two stay.
	if _, err := os.Stat(day("2026-11-20")); err == nil {
		t.Error("the oldest bundle was kept beyond -k 2")
	}
	for _, p := range []string{day("2026-11-22") + ".001", day("2026-11-22") + ".sha256", day("2026-11-23")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}

	// A run that fails: non-zero, FAILED in the log, nothing written.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("images:\n  - 127.0.0.1:1/nothing/here:1\n"), 0o644)
	log, code = nightly(t, bin, cache, "2026-11-24", "-f", bad, "-d", exports, "--", "--retries", "1")
	if code == 0 || !strings.Contains(log, "FAILED (bundle create)") || !strings.Contains(log, "bundle: error:") {
		t.Errorf("a failing run: exit %d", code)
	}
	if m, _ := filepath.Glob(filepath.Join(exports, "images-2026-11-24*")); len(m) > 0 {
		t.Errorf("a failed run left %v", m)
	}
}
