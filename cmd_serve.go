package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/verify"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "serve",
		Usage:     "serve bundle files, in place, as a read-only registry for the nodes of the air-gapped network",
		UsageText: "bundle serve -i images.tar [-i delta.tar …] [--addr 127.0.0.1:5000] [--tls-cert C --tls-key K] [--prefix P] [--log] [--json]\n   bundle serve -i images.tar --addr HOST:PORT --print-config containerd|k3s|docker|podman",
		Description: `Serves the images of one or more bundles over the pull side of the OCI distribution
API (docker pull, podman, ctr, crane, skopeo, kubelet through containerd), reading
every blob from the bundle file by its offset: nothing is copied, the file stays
docker-loadable. Push, delete and mount answer 405 UNSUPPORTED.

Each bundle is verified first, as 'bundle verify' does; a corrupt one is refused
(exit 3), and so is a gzip-compressed one (gunzip it first: gzip cannot be read by
offset). While serving, the file's size and modification time are checked after
every read: a file changed under the server answers 500 and is reported, never with
bytes that were not verified.

Names: a reference without its registry host, as 'load --to docker://HOST' names
it (docker.io/library/debian:bookworm is library/debian:bookworm), under --prefix
when given. A pull-through mirror request from containerd (?ns=docker.io) gets the
image of that upstream registry when two have the same path.

Several bundles (-i more than once, or the further arguments of a shell glob) are
served as one registry: a split bundle's volumes in place, a delta's external
blobs from the bundles it was made against; a tag two bundles give different
images is served from the newest (bundle.json "created"), and startup says so.

--print-config writes, for each upstream registry the images came from, what a
node needs to pull them by their own names through this server: containerd
certs.d/<registry>/hosts.toml, k3s/RKE2 registries.yaml, docker daemon.json,
podman registries.conf.d; --addr is the address the nodes reach.

--log prints one line per request on stderr; --json prints, on stdout, a first
line with the address and what is served, then one JSON object per request.
SIGTERM or SIGINT stops accepting, lets the requests in flight finish (up to 30 s)
and exits 0.

Examples:
   bundle serve -i images.tar --addr 0.0.0.0:5000
   bundle serve -i /media/usb/images.tar.001 -i exports/delta-*.tar --log
   bundle serve -i images.tar --addr 10.0.0.5:5000 --print-config containerd`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "input", Aliases: []string{"i"}, Usage: "bundle file to serve (a split bundle: any volume); repeat for several", Required: true},
			&cli.StringFlag{Name: "addr", Usage: "address to listen on, host:port (port 0: any free port)", Value: "127.0.0.1:5000"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this PEM certificate (with --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the PEM key of --tls-cert"},
			&cli.StringFlag{Name: "prefix", Usage: "serve every repository under this path (library/debian → P/library/debian)"},
			&cli.BoolFlag{Name: "log", Usage: "print one line per request on stderr"},
			&cli.BoolFlag{Name: "json", Usage: "print the address and what is served, then every request, as JSON lines on stdout"},
			&cli.IntFlag{Name: "max-conns", Usage: "most connections open at once (the longest idle is closed for a new one)", Value: serve.DefaultMaxConns},
			&cli.StringFlag{Name: "print-config", Usage: "print the node configuration to pull through this server (containerd, k3s, docker, podman) and exit"},
		},
		Action: runServe,
	})
}

func runServe(c *cli.Context) error {
	inputs := append(c.StringSlice("input"), c.Args().Slice()...)
	for _, in := range inputs {
		if in == "" || in == "-" {
			return usagef("-i needs a bundle file: serve reads blobs by offset, so not stdin")
		}
	}
	addr := c.String("addr")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--addr %q: want host:port (127.0.0.1:5000, 0.0.0.0:5000, [::]:5000)", addr)
	}
	cert, key := c.String("tls-cert"), c.String("tls-key")
	if (cert == "") != (key == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if c.Int("max-conns") < 1 {
		return usagef("--max-conns must be at least 1")
	}
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	if kind := c.String("print-config"); kind != "" {
		if !slices.Contains(serve.ConfigKinds, kind) {
			return usagef("--print-config %q: one of %s", kind, strings.Join(serve.ConfigKinds, ", "))
		}
		return printNodeConfig(c, kind, inputs, host, port, cert != "")
	}

	ui := &serveVerifyUI{verifyUI: verifyUI{w: stderr}}
	out := &serveOutput{stdout: stdout, stderr: stderr, json: c.Bool("json"), log: c.Bool("log")}
	reg, err := serve.Open(c.Context, serve.Options{
		Inputs:    inputs,
		Prefix:    c.String("prefix"),
		Progress:  ui,
		Warn:      out.warn,
		AccessLog: out.access,
	})
	ui.finish()
	if err != nil {
		return serveRefusal(stderr, err)
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	out.started(scheme+"://"+ln.Addr().String(), reg.Summary())
	return reg.Serve(c.Context, ln, serve.ServerOptions{MaxConns: c.Int("max-conns"), TLSCert: cert, TLSKey: key})
}

// serveRefusal prints a corrupt bundle's findings, then returns the error
// with its hint.
func serveRefusal(stderr io.Writer, err error) error {
	var ce *serve.CorruptError
	var ge *serve.CompressedError
	var ie *serve.IncompleteError
	switch {
	case errors.As(err, &ce):
		for _, f := range ce.Report.Findings {
			fmt.Fprintf(stderr, "bundle: %s: %s\n", ce.Name, f.String())
		}
		for _, f := range ce.Report.Findings {
			if f.Code == verify.CodeNotBundle {
				return withHint(err, notBundleHint(f.Looks, ce.Name))
			}
		}
		return withHint(err, "run 'bundle verify -i "+ce.Name+"' for the whole report; copy the bundle again from a copy that verifies")
	case errors.As(err, &ge):
		return withHint(err, ge.Hint())
	case errors.As(err, &ie):
		for _, m := range ie.Missing {
			fmt.Fprintf(stderr, "bundle: missing %s (used by %s, external in %s)\n", m.Digest, m.Image, m.Bundle)
		}
		return withHint(err, ie.Hint())
	}
	return err
}

// printNodeConfig prints the configuration of a node for kind.
func printNodeConfig(c *cli.Context, kind string, inputs []string, host, port string, tls bool) error {
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	ups, err := serve.Upstreams(inputs)
	if err != nil {
		var ge *serve.CompressedError
		if errors.As(err, &ge) {
			return withHint(err, ge.Hint())
		}
		return err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		name, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--addr %s listens on every address: give the address the nodes reach instead (%v)", net.JoinHostPort(host, port), err)
		}
		fmt.Fprintf(stderr, "bundle: note: --addr listens on every address; the nodes are told %s (give --addr HOST:%s with the address they reach)\n", name, port)
		host = name
	}
	files, notes, err := serve.NodeConfig(serve.ConfigOptions{Kind: kind, Host: net.JoinHostPort(host, port), TLS: tls, Prefix: c.String("prefix"), Upstreams: ups})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Kind  string             `json:"kind"`
			Files []serve.ConfigFile `json:"files"`
			Notes []string           `json:"notes,omitempty"`
		}{kind, files, notes})
	}
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprint(stdout, f.Content)
		if kind == "docker" {
			fmt.Fprintf(stderr, "bundle: note: the above is for %s\n", f.Path)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "bundle: note: %s\n", n)
	}
	return nil
}

// serveVerifyUI is verify's progress, once per bundle.
type serveVerifyUI struct {
	verifyUI
}

func (u *serveVerifyUI) Started(name string, size int64, sum bundle.Checksum) {
	u.finish()
	u.verifyUI.Started(name, size, sum)
}

// serveOutput prints what the server says: on stderr the startup summary,
// warnings and (--log) requests; with --json, on stdout, the summary and
// requests as JSON lines.
type serveOutput struct {
	stdout, stderr io.Writer
	json, log      bool
	mu             sync.Mutex
}

func (o *serveOutput) started(url string, sum serve.Summary) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		_ = json.NewEncoder(o.stdout).Encode(struct {
			Listening string        `json:"listening"`
			Summary   serve.Summary `json:"summary"`
		}{url, sum})
	}
	w := o.stderr
	fmt.Fprintf(w, "bundle: serving %d %s (%d %s, %d %s) from %d %s at %s\n",
		sum.Images, plural(sum.Images, "image", "images"), sum.Repositories, plural(sum.Repositories, "repository", "repositories"),
		sum.Blobs, plural(sum.Blobs, "blob", "blobs"), len(sum.Bundles), plural(len(sum.Bundles), "bundle", "bundles"), url)
	for _, b := range sum.Bundles {
		line := fmt.Sprintf("bundle:   %s: created %s, %d %s, %s", b.Name, b.Created, b.Images, plural(b.Images, "image", "images"), humanBytes(b.Bytes))
		if b.Volumes > 0 {
			line += fmt.Sprintf(" in %d %s", b.Volumes, plural(b.Volumes, "volume", "volumes"))
		}
		if b.External > 0 {
			line += fmt.Sprintf("; a delta: %d %s from the other bundles", b.External, plural(b.External, "blob", "blobs"))
		}
		fmt.Fprintln(w, line)
	}
	for _, c := range sum.Conflicts {
		var shadowed []string
		for _, s := range c.Shadowed {
			shadowed = append(shadowed, fmt.Sprintf("%s in %s (%s, created %s)", s.Ref, s.Bundle, short(s.Digest), s.Created))
		}
		what := "serving the newest bundle's"
		if c.NameOnly {
			what = "without ?ns=, serving the newest bundle's (with ?ns= each registry's own)"
		}
		fmt.Fprintf(w, "bundle: %s names different images: %s in %s (%s, created %s) and %s; %s\n",
			c.Name, c.Served.Ref, c.Served.Bundle, short(c.Served.Digest), c.Served.Created, strings.Join(shadowed, ", "), what)
	}
	if len(sum.Upstreams) > 0 {
		fmt.Fprintf(w, "bundle: images from %s: 'bundle serve … --print-config containerd|k3s|docker|podman' writes the nodes' mirror configuration\n", strings.Join(sum.Upstreams, ", "))
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}

func (o *serveOutput) warn(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.stderr, "bundle: warning: %s\n", oneLine(err.Error()))
}

func (o *serveOutput) access(a serve.Access) {
	if !o.json && !o.log {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		_ = json.NewEncoder(o.stdout).Encode(a)
		return
	}
	line := fmt.Sprintf("%s %s %s %s %d %d %.3fs", a.Time.UTC().Format(time.RFC3339Nano), a.Remote, a.Method, a.Path, a.Status, a.Bytes, a.Seconds)
	if a.Error != "" {
		line += " " + oneLine(a.Error)
	}
	fmt.Fprintln(o.stderr, line)
}
