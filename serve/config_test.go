package serve_test

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestNodeConfig")

// The node configurations, for each kind, with and without --prefix and
// TLS, are those in testdata/config (go test -run TestNodeConfig -update
// rewrites them; review the diff).
func TestNodeConfig(t *testing.T) {
	ups := []string{"ghcr.io", "docker.io", "registry.example.com:5000"}
	for _, kind := range serve.ConfigKinds {
		for _, tc := range []struct {
			suffix, host, prefix string
			tls                  bool
		}{
			{"", "10.0.0.5:5000", "", false},
			{"-prefix-tls", "registry.airgap:5443", "mirror", true},
		} {
			name := kind + tc.suffix
			t.Run(name, func(t *testing.T) {
				files, notes, err := serve.NodeConfig(serve.ConfigOptions{Kind: kind, Host: tc.host, TLS: tc.tls, Prefix: tc.prefix, Upstreams: ups})
				if err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				for _, f := range files {
					b.WriteString("==> " + f.Path + "\n" + f.Content)
				}
				for _, n := range notes {
					b.WriteString("note: " + n + "\n")
				}
				golden := filepath.Join("testdata", "config", name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if b.String() != string(want) {
					t.Errorf("%s differs from %s:\n%s", name, golden, b.String())
				}
			})
		}
	}
	if _, _, err := serve.NodeConfig(serve.ConfigOptions{Kind: "cri-o", Host: "h:1"}); err == nil || !strings.Contains(err.Error(), "containerd, k3s, docker, podman") {
		t.Errorf("an unknown kind: %v", err)
	}
}

// Upstreams reads only bundle.json: the registries the images came from.
func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.tar", standard(t))
	b := write(t, dir, "b.tar", newBundle(t, "2026-01-01T00:00:00Z", bundletest.Ref{Name: "127.0.0.1:5000/x:1", Image: image(t, 9)}))
	got, err := serve.Upstreams([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:5000", "docker.io", "ghcr.io"}; !slices.Equal(got, want) {
		t.Errorf("Upstreams = %v, want %v", got, want)
	}
}
