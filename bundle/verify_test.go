package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// writeBundle writes a small intact bundle to dir/images.tar.
func writeBundle(t *testing.T, dir string) string {
	t.Helper()
	data, _ := bundletest.Single(t, "registry.local/app:1", 1024, 2, 1).Bytes()
	p := filepath.Join(dir, "images.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Load checks the .sha256 beside a single-file bundle, as verify does: a
// bundle that does not match it is corrupt, and nothing is loaded.
func TestLoadChecksSingleFileChecksum(t *testing.T) {
	dir := t.TempDir()
	p := writeBundle(t, dir)
	wrong := strings.Repeat("0", 64) + "  images.tar\n"
	if err := os.WriteFile(p+".sha256", []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "oci")
	_, err := Load(context.Background(), LoadOptions{Input: p, To: "oci:" + out})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Load with a wrong images.tar.sha256 = %v, want a CorruptError", err)
	}
	found := false
	for _, f := range ce.Report.Findings {
		found = found || f.Code == verify.CodeChecksum
	}
	if !found {
		t.Errorf("findings %v: no checksum mismatch", ce.Report.Findings)
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		t.Errorf("%s written although the bundle does not match its checksum", out)
	}

	// Verify agrees.
	res, err := Verify(context.Background(), VerifyOptions{Input: p})
	if err != nil || res.Report.Intact || res.Checksum.State != ChecksumUsed {
		t.Errorf("Verify = %+v, %v; want not intact, checksum used", res, err)
	}
}

// Load does not ignore a checksum file it cannot read (here a directory
// where images.tar.sha256 should be a file): like verify, it fails.
func TestLoadUnreadableChecksumFile(t *testing.T) {
	dir := t.TempDir()
	p := writeBundle(t, dir)
	if err := os.Mkdir(p+".sha256", 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "oci")
	_, err := Load(context.Background(), LoadOptions{Input: p, To: "oci:" + out})
	if err == nil || !strings.Contains(err.Error(), "checksum file") {
		t.Fatalf("Load with an unreadable images.tar.sha256 = %v, want an error about the checksum file", err)
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		t.Errorf("%s written although the checksum file could not be read", out)
	}
	if _, err := Verify(context.Background(), VerifyOptions{Input: p}); err == nil || !strings.Contains(err.Error(), "checksum file") {
		t.Errorf("Verify = %v, want an error about the checksum file", err)
	}

	// Without it, the same bundle loads.
	os.Remove(p + ".sha256")
	if _, err := Load(context.Background(), LoadOptions{Input: p, To: "oci:" + out}); err != nil {
		t.Fatalf("Load without a checksum file: %v", err)
	}
}

// A checksum file that is there but holds no line for the bundle is
// reported, not silently passed over: the load goes on, with a warning.
func TestLoadUnusableChecksumFile(t *testing.T) {
	dir := t.TempDir()
	p := writeBundle(t, dir)
	if err := os.WriteFile(p+".sha256", []byte("not a checksum line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Load(context.Background(), LoadOptions{Input: p, To: "oci:" + filepath.Join(dir, "oci")})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if w := res.Verified.ChecksumWarning; !strings.Contains(w, "images.tar.sha256") || !strings.Contains(w, "not checked") {
		t.Errorf("ChecksumWarning = %q, want it to name images.tar.sha256 and say it was not checked", w)
	}
}
