package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
)

// Kinds of node configuration NodeConfig writes.
var ConfigKinds = []string{"containerd", "k3s", "docker", "podman"}

// ConfigOptions say what NodeConfig writes for.
type ConfigOptions struct {
	// Kind is one of ConfigKinds.
	Kind string
	// Host is host:port as the nodes reach the server.
	Host string
	// TLS says the server speaks HTTPS.
	TLS bool
	// Prefix is the server's --prefix.
	Prefix string
	// Upstreams are the registries the images came from (Summary.Upstreams,
	// or Upstreams).
	Upstreams []string
}

// ConfigFile is one file for a node.
type ConfigFile struct {
	// Path is where it goes on a node.
	Path    string
	Content string
}

// NodeConfig writes what a node needs to pull the served images by their
// upstream names through the server, one mirror per upstream registry:
// containerd certs.d/<upstream>/hosts.toml files, a k3s/RKE2
// registries.yaml, a docker daemon.json, a podman registries.conf
// drop-in. notes say what a kind cannot do (docker mirrors Docker Hub
// only).
func NodeConfig(o ConfigOptions) (files []ConfigFile, notes []string, err error) {
	if _, _, err := net.SplitHostPort(o.Host); err != nil {
		return nil, nil, fmt.Errorf("server address %q: %w", o.Host, err)
	}
	scheme := "http"
	if o.TLS {
		scheme = "https"
	}
	ups := slices.Clone(o.Upstreams)
	sort.Strings(ups)
	base := scheme + "://" + o.Host
	switch o.Kind {
	case "containerd":
		for _, u := range ups {
			var b strings.Builder
			path := "/etc/containerd/certs.d/" + u + "/hosts.toml"
			fmt.Fprintf(&b, "# %s: pull %s/... through bundle serve at %s\n", path, u, o.Host)
			fmt.Fprintf(&b, "# (containerd 1.5+: config_path = \"/etc/containerd/certs.d\" in the CRI registry section; ctr --hosts-dir /etc/containerd/certs.d)\n")
			if o.Prefix != "" {
				fmt.Fprintf(&b, "[host.%s]\n", strconv.Quote(base+"/v2/"+o.Prefix))
			} else {
				fmt.Fprintf(&b, "[host.%s]\n", strconv.Quote(base))
			}
			b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
			if o.Prefix != "" {
				b.WriteString("  override_path = true\n")
			}
			if o.TLS {
				fmt.Fprintf(&b, "  # ca = \"/etc/containerd/certs.d/%s/ca.crt\"   # when the server's certificate is not signed by a CA the node trusts\n", u)
			}
			files = append(files, ConfigFile{Path: path, Content: b.String()})
		}
	case "k3s":
		var b strings.Builder
		path := "/etc/rancher/k3s/registries.yaml"
		fmt.Fprintf(&b, "# %s (RKE2: /etc/rancher/rke2/registries.yaml): pull through bundle serve at %s\n", path, o.Host)
		b.WriteString("mirrors:\n")
		for _, u := range ups {
			fmt.Fprintf(&b, "  %s:\n    endpoint:\n      - %s\n", strconv.Quote(u), strconv.Quote(base))
			if o.Prefix != "" {
				fmt.Fprintf(&b, "    rewrite:\n      %s: %s\n", strconv.Quote("^(.*)$"), strconv.Quote(o.Prefix+"/$1"))
			}
		}
		if o.TLS {
			fmt.Fprintf(&b, "# configs:\n#   %s:\n#     tls:\n#       ca_file: /etc/rancher/k3s/bundle-serve-ca.crt   # when the node does not trust the server's CA\n", strconv.Quote(o.Host))
		}
		files = append(files, ConfigFile{Path: path, Content: b.String()})
	case "docker":
		cfg := map[string][]string{}
		if slices.Contains(ups, manifests.DockerHub) {
			if o.Prefix == "" {
				cfg["registry-mirrors"] = []string{base}
			} else {
				notes = append(notes, fmt.Sprintf("docker's registry-mirrors take no path: with --prefix %s, docker cannot pull docker.io images by their names through this server (serve without --prefix for docker nodes)", o.Prefix))
			}
		}
		if !o.TLS && !loopback(o.Host) {
			cfg["insecure-registries"] = []string{o.Host}
		}
		for _, u := range ups {
			if u != manifests.DockerHub {
				notes = append(notes, fmt.Sprintf("docker mirrors Docker Hub only: pull %s images as %s/%s<repository>:<tag> and docker tag them", u, o.Host, prefixSlash(o.Prefix)))
			}
		}
		data, _ := json.MarshalIndent(cfg, "", "  ")
		files = append(files, ConfigFile{Path: "/etc/docker/daemon.json", Content: string(data) + "\n"})
		notes = append(notes, "merge into /etc/docker/daemon.json, then restart dockerd")
	case "podman":
		var b strings.Builder
		path := "/etc/containers/registries.conf.d/bundle-serve.conf"
		fmt.Fprintf(&b, "# %s: podman, buildah, skopeo and CRI-O pull through bundle serve at %s\n", path, o.Host)
		mirror := o.Host
		if o.Prefix != "" {
			mirror += "/" + o.Prefix
		}
		for _, u := range ups {
			fmt.Fprintf(&b, "\n[[registry]]\nprefix = %s\nlocation = %s\n\n[[registry.mirror]]\nlocation = %s\n", strconv.Quote(u), strconv.Quote(u), strconv.Quote(mirror))
			if !o.TLS {
				b.WriteString("insecure = true\n")
			}
		}
		files = append(files, ConfigFile{Path: path, Content: b.String()})
	default:
		return nil, nil, fmt.Errorf("--print-config %q: one of %s", o.Kind, strings.Join(ConfigKinds, ", "))
	}
	return files, notes, nil
}

func prefixSlash(p string) string {
	if p == "" {
		return ""
	}
	return p + "/"
}

func loopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Upstreams reads the bundles' bundle.json (nothing else: they are not
// verified) and returns the registries their images came from, sorted.
func Upstreams(inputs []string) ([]string, error) {
	seen := map[string]bool{}
	for _, in := range inputs {
		set, err := tarball.FindVolumes(in)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", in, err)
		}
		vr, err := set.Open()
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", in, err)
		}
		f, err := tarball.OpenReaderAt(vr, vr.Size())
		if err != nil {
			vr.Close()
			if errors.Is(err, tarball.ErrCompressed) {
				return nil, &CompressedError{Name: in}
			}
			return nil, fmt.Errorf("reading %s: %w", in, err)
		}
		for _, im := range f.Index().Images {
			ref, err := manifests.ParseReference(im.Ref)
			if err != nil {
				vr.Close()
				return nil, fmt.Errorf("%s: bundle.json names %q: %w", in, im.Ref, err)
			}
			seen[upstream(ref.Context().Registry)] = true
		}
		vr.Close()
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}
