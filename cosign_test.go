package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
)

// emptyTrustedRoot is a Sigstore trusted root with no authorities: with
// it, cosign verify-blob of a v0.3 bundle with --key does not go to the
// network for Sigstore's TUF root (docs/format.md, "Signing").
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// cosignCmd runs the real cosign (scripts/tools.sh builds v2.6.5 into the
// tool dir) in a network namespace of its own (unshare -n): whatever it
// tries, it reaches no address off this machine. HOME is dir, so nothing
// of the user's ~/.sigstore is read or written.
type cosignCmd struct {
	t    *testing.T
	path string
	dir  string
}

func newCosign(t *testing.T, dir string) *cosignCmd {
	t.Helper()
	testenv.Acceptance(t)
	testenv.Require(t, "cosign", "unshare")
	path, _ := testenv.LookPath("cosign")
	if out, err := exec.Command("unshare", "-n", "true").CombinedOutput(); err != nil {
		msg := "unshare -n (a network namespace, so that cosign reaches no outside address) does not work here: " + strings.TrimSpace(string(out))
		if testenv.CI() {
			t.Fatalf("%s (CI=true: a missing dependency fails the test)", msg)
		}
		t.Skipf("SKIP: %s", msg)
	}
	return &cosignCmd{t: t, path: path, dir: dir}
}

// run runs cosign with args in c.dir and returns its combined output and
// error.
func (c *cosignCmd) run(password string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"-n", c.path}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "COSIGN_PASSWORD="+password, "TUF_ROOT="+filepath.Join(c.dir, ".sigstore"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cosignCmd) must(password string, args ...string) string {
	c.t.Helper()
	out, err := c.run(password, args...)
	if err != nil {
		c.t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// extract writes the named entry of the bundle file at path to dst.
func extract(t *testing.T, path, name, dst string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no entry %s: %v", path, name, err)
		}
		if h.Name == name {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}

// Interop with the real cosign (issue 13): a key cosign made signs our
// bundle (its password read as cosign reads it), and cosign verify-blob
// accepts our images.tar.sigstore.json over the bundle.json taken from our
// file, and refuses it over a changed one; the other way round, what
// cosign sign-blob --bundle writes over our bundle.json, in both of its
// formats, is accepted by our verify and load --key as the file beside the
// bundle, and refused beside another bundle.
func TestCosignInterop(t *testing.T) {
	_, seeded := testenv.SharedSeeded(t)
	dir := t.TempDir()
	cosign := newCosign(t, dir)
	const password = "interop-pw"
	cosign.must(password, "generate-key-pair")
	at := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(at("trusted_root.json"), []byte(emptyTrustedRoot), 0o644)
	os.WriteFile(at("images.txt"), []byte(seeded.Find(t, testenv.ImageAppA).Ref+"\n"+seeded.Find(t, testenv.ImageMulti).Ref+"\n"), 0o644)
	t.Setenv("BUNDLE_CACHE", at("cache"))

	// (a) our signature, cosign's check.
	t.Setenv("COSIGN_PASSWORD", password)
	_, stderr, code := bundleCLI(t, "create", "-f", at("images.txt"), "-o", at("images.tar"), "--sign-key", at("cosign.key"))
	if code != 0 {
		t.Fatalf("create --sign-key: exit %d\n%s", code, stderr)
	}
	extract(t, at("images.tar"), tarball.IndexFile, at("bundle.json"))
	extract(t, at("images.tar"), tarball.SignatureFile, at("entry.sigstore.json"))
	if a, b := readFile(t, at("entry.sigstore.json")), readFile(t, at("images.tar.sigstore.json")); a != b {
		t.Errorf("the entry and the file beside the bundle differ:\n%s\n%s", a, b)
	}
	out := cosign.must("", "verify-blob", "--key", "cosign.pub", "--bundle", "images.tar.sigstore.json",
		"--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json", "bundle.json")
	if !strings.Contains(out, "Verified OK") {
		t.Errorf("cosign verify-blob: %s", out)
	}
	t.Logf("cosign verify-blob of our signature: %s", strings.TrimSpace(out))
	// The check can fail: over a changed bundle.json cosign refuses it.
	changed := bytes.Replace([]byte(readFile(t, at("bundle.json"))), []byte(`"schemaVersion": 1`), []byte(`"schemaVersion":  1`), 1)
	os.WriteFile(at("changed.json"), changed, 0o644)
	if out, err := cosign.run("", "verify-blob", "--key", "cosign.pub", "--bundle", "images.tar.sigstore.json",
		"--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json", "changed.json"); err == nil {
		t.Errorf("cosign verify-blob accepted the signature over a changed bundle.json:\n%s", out)
	}
	// Without --trusted-root, cosign v2.6.5 looks for Sigstore's TUF root
	// on the network (none here): recorded, not asserted.
	out, err := cosign.run("", "verify-blob", "--key", "cosign.pub", "--bundle", "images.tar.sigstore.json", "--insecure-ignore-tlog=true", "bundle.json")
	t.Logf("cosign verify-blob without --trusted-root, offline: %v\n%s", err, strings.TrimSpace(out))

	// (b) cosign's signature, our check: over an unsigned bundle's
	// bundle.json, as the file beside it.
	t.Setenv("SOURCE_DATE_EPOCH", "1000000000") // another bundle.json than images.tar's
	mustBundle(t, "create", "-q", "-f", at("images.txt"), "-o", at("unsigned.tar"))
	t.Setenv("SOURCE_DATE_EPOCH", "")
	extract(t, at("unsigned.tar"), tarball.IndexFile, at("unsigned.json"))
	for _, format := range []struct{ name, flag string }{{"v0.3 bundle", "--new-bundle-format"}, {"cosign's older bundle", ""}} {
		t.Run(format.name, func(t *testing.T) {
			args := []string{"sign-blob", "--key", "cosign.key", "--bundle", "unsigned.tar.sigstore.json", "--tlog-upload=false", "-y"}
			if format.flag != "" {
				args = append(args, format.flag)
			}
			cosign.must(password, append(args, "unsigned.json")...)
			t.Logf("cosign sign-blob %s wrote: %s", format.flag, readFile(t, at("unsigned.tar.sigstore.json")))
			stdout, stderr, code := bundleCLI(t, "verify", "-i", at("unsigned.tar"), "--key", at("cosign.pub"))
			if code != 0 || !strings.Contains(stdout, "signature: verified with key") {
				t.Errorf("verify --key of cosign's signature: exit %d\n%s%s", code, stdout, stderr)
			}
			oci := filepath.Join(t.TempDir(), "oci")
			if _, stderr, code := bundleCLI(t, "load", "-i", at("unsigned.tar"), "--key", at("cosign.pub"), "--to", "oci:"+oci); code != 0 {
				t.Errorf("load --key with cosign's signature: exit %d\n%s", code, stderr)
			}
			// The same signature beside another bundle: refused.
			os.Rename(at("unsigned.tar.sigstore.json"), at("images.tar.sigstore.json"))
			stdout, stderr, code = bundleCLI(t, "verify", "-i", at("images.tar"), "--key", at("cosign.pub"))
			if code != exitCorrupt {
				t.Errorf("verify --key of images.tar with unsigned.tar's signature beside it: exit %d, want %d\n%s%s", code, exitCorrupt, stdout, stderr)
			}
			oci2 := filepath.Join(t.TempDir(), "oci")
			if _, _, code := bundleCLI(t, "load", "-i", at("images.tar"), "--key", at("cosign.pub"), "--to", "oci:"+oci2); code != exitCorrupt {
				t.Errorf("load --key with another bundle's signature beside it: exit %d, want %d", code, exitCorrupt)
			}
			if _, err := os.Lstat(oci2); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("load wrote %s", oci2)
			}
			os.Remove(at("images.tar.sigstore.json"))
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
