package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A registry behind a CA of its own (the real distribution registry,
// serving TLS with a certificate from a CA this test makes): create and
// load refuse it without the CA, and reach it with --ca-file or with the
// CA in certs.d/HOST:PORT/ca.crt, keeping the digest.
func TestPrivateCA(t *testing.T) {
	testenv.Acceptance(t)
	ca := testenv.MakeTestCA(t)
	reg := testenv.StartRegistryTLS(t, ca.ServerCert, ca.ServerKey)
	pem, err := os.ReadFile(ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	trusting := remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/team/app:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img, trusting); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	dir := t.TempDir()
	t.Setenv("BUNDLE_CERTS_DIRS", filepath.Join(dir, "certs.d")) // no host's entry yet

	_, stderr, code := bundleCLI(t, "create", "-q", "--retries", "1", "-o", filepath.Join(dir, "no-ca.tar"), ref, "--cache", filepath.Join(dir, "c0"))
	if code != 1 || !strings.Contains(stderr, reg.Host) || !strings.Contains(stderr, "--ca-file") {
		t.Errorf("create without the CA: exit %d, want 1 and a hint naming --ca-file\n%s", code, stderr)
	}
	t.Logf("without the CA: %s", stderr)

	out := filepath.Join(dir, "ca-file.tar")
	if _, stderr, code := bundleCLI(t, "create", "-q", "--ca-file", ca.CA, "-o", out, ref, "--cache", filepath.Join(dir, "c1")); code != 0 {
		t.Fatalf("create --ca-file: exit %d\n%s", code, stderr)
	}
	stdout, _, _ := bundleCLI(t, "list", "--json", "-i", out)
	if !strings.Contains(stdout, want.String()) {
		t.Errorf("the bundle lacks the registry's digest %s:\n%s", want, stdout)
	}

	// certs.d/HOST:PORT/ca.crt, as docker reads it.
	hostDir := filepath.Join(dir, "certs.d", reg.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "ca.crt"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := bundleCLI(t, "create", "-q", "-o", filepath.Join(dir, "certs-d.tar"), ref, "--cache", filepath.Join(dir, "c2")); code != 0 {
		t.Fatalf("create with certs.d: exit %d\n%s", code, stderr)
	}

	// load into the same registry under a prefix, with the CA from certs.d.
	if _, stderr, code := bundleCLI(t, "load", "-q", "-i", out, "--to", "docker://"+reg.Host+"/mirror"); code != 0 {
		t.Fatalf("load with certs.d: exit %d\n%s", code, stderr)
	}
	m, _ := name.ParseReference(reg.Host + "/mirror/team/app:1")
	d, err := remote.Head(m, trusting)
	if err != nil || d.Digest != want {
		t.Errorf("the loaded image: %v, %v; want %s", d, err, want)
	}
	// inventory walks it the same way.
	if _, stderr, code := bundleCLI(t, "inventory", "-q", "--from", "docker://"+reg.Host+"/mirror", "-o", filepath.Join(dir, "have.json")); code != 0 {
		t.Errorf("inventory with certs.d: exit %d\n%s", code, stderr)
	}
}
