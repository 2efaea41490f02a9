package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// fixtureBundle writes a small bundle of random images (bundletest) under
// dir and returns its path and the bundle.
func fixtureBundle(t *testing.T, dir, name string, refs ...string) (string, *bundletest.Bundle) {
	t.Helper()
	var rs []bundletest.Ref
	for i, r := range refs {
		img, err := bundletest.RandomImage(1024, 2, "linux/amd64", int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, bundletest.Ref{Name: r, Image: img})
	}
	b, err := bundletest.New(rs...)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := b.Bytes()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// The command line: usage errors exit 2, a corrupt or compressed bundle
// 3 with its findings and a hint, --print-config prints a node's files.
func TestServeCommandLine(t *testing.T) {
	dir := t.TempDir()
	good, b := fixtureBundle(t, dir, "images.tar", "docker.io/library/app:1", "ghcr.io/x/y:2")
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"serve"}, 2, `Required flag "input" not set`},
		{[]string{"serve", "-i", "-"}, 2, "not stdin"},
		{[]string{"serve", "-i", good, "--tls-cert", "c.pem"}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "-i", good, "--addr", "5000"}, 2, "--addr"},
		{[]string{"serve", "-i", good, "--print-config", "cri-o"}, 2, "containerd, k3s, docker, podman"},
		{[]string{"serve", "-i", good, "--max-conns", "0"}, 2, "--max-conns"},
		{[]string{"serve", "-i", filepath.Join(dir, "nope.tar")}, 1, "nope.tar"},
		{[]string{"serve", "-i", good, "--prefix", "Bad/Prefix"}, 1, "--prefix"},
	} {
		_, stderr, code := bundleCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.err) {
			t.Errorf("bundle %s: exit %d, want %d with %q; stderr:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.err, stderr)
		}
	}

	// A corrupt bundle: every finding, exit 3, nothing served.
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	b.Entries[b.Find(tarball.BlobPath(layer))].Data[10] ^= 0xff
	data, _ := b.Bytes()
	corrupt := filepath.Join(dir, "corrupt.tar")
	if err := os.WriteFile(corrupt, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := bundleCLI(t, "serve", "-i", good, "-i", corrupt, "--addr", "127.0.0.1:0")
	if code != 3 || !strings.Contains(stderr, "corrupt.tar: blobs/sha256/"+layer.Hex) || !strings.Contains(stderr, "nothing is served") || !strings.Contains(stderr, "bundle: hint: ") {
		t.Errorf("a corrupt bundle: exit %d; stderr:\n%s", code, stderr)
	}
	gz := filepath.Join(dir, "images.tar.gz")
	if err := os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "-i", gz}, {"serve", "-i", gz, "--print-config", "podman"}} {
		_, stderr, code = bundleCLI(t, args...)
		if code != 3 || !strings.Contains(stderr, "gzip-compressed") || !strings.Contains(stderr, "bundle: hint: decompress it once (gunzip -k") {
			t.Errorf("bundle %s: exit %d; stderr:\n%s", strings.Join(args, " "), code, stderr)
		}
	}

	// --print-config: one hosts.toml per upstream, as JSON for scripts.
	stdout, stderr, code := bundleCLI(t, "serve", "-i", good, "--addr", "10.1.2.3:5000", "--print-config", "containerd", "--json")
	if code != 0 {
		t.Fatalf("--print-config: exit %d\n%s", code, stderr)
	}
	var cfg struct {
		Files []serve.ConfigFile `json:"files"`
	}
	if err := json.Unmarshal([]byte(stdout), &cfg); err != nil {
		t.Fatalf("--print-config --json: %v\n%s", err, stdout)
	}
	if len(cfg.Files) != 2 || cfg.Files[0].Path != "/etc/containerd/certs.d/docker.io/hosts.toml" || cfg.Files[1].Path != "/etc/containerd/certs.d/ghcr.io/hosts.toml" ||
		!strings.Contains(cfg.Files[0].Content, `[host."http://10.1.2.3:5000"]`) || !strings.Contains(cfg.Files[0].Content, `capabilities = ["pull", "resolve"]`) {
		t.Errorf("--print-config containerd: %+v", cfg.Files)
	}
	stdout, stderr, code = bundleCLI(t, "serve", "-i", good, "--addr", "10.1.2.3:5000", "--print-config", "docker")
	var daemon map[string][]string
	if code != 0 || json.Unmarshal([]byte(stdout), &daemon) != nil || daemon["registry-mirrors"][0] != "http://10.1.2.3:5000" || !strings.Contains(stderr, "docker mirrors Docker Hub only: pull ghcr.io images") {
		t.Errorf("--print-config docker: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// serveProc is a bundle serve process the test started.
type serveProc struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	host   string // 127.0.0.1:PORT
	sum    serve.Summary
	stderr bytes.Buffer
	done   chan struct{}

	mu     sync.Mutex
	access []serve.Access
}

// startServe runs bundle serve ARGS --addr 127.0.0.1:0 --json and waits
// for its first line (the address); it is stopped when the test ends.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{done: make(chan struct{})}
	p.cmd = exec.Command(bundleBinary(t), append(append([]string{"serve"}, args...), "--addr", "127.0.0.1:0", "--json")...)
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = dieWithTest(t)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		if !sc.Scan() {
			first <- fmt.Errorf("no first line (%v)", sc.Err())
			_, _ = io.Copy(io.Discard, out)
		} else {
			var l struct {
				Listening string        `json:"listening"`
				Summary   serve.Summary `json:"summary"`
			}
			err := json.Unmarshal(sc.Bytes(), &l)
			p.url, p.sum = l.Listening, l.Summary
			first <- err
			for sc.Scan() {
				var a serve.Access
				if json.Unmarshal(sc.Bytes(), &a) == nil {
					p.mu.Lock()
					p.access = append(p.access, a)
					p.mu.Unlock()
				}
			}
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case err := <-first:
		if err != nil {
			<-p.done
			t.Fatalf("bundle serve: %v; stderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(3 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("bundle serve did not start within 3 minutes; stderr:\n%s", p.stderr.String())
	}
	p.host = strings.TrimPrefix(p.url, "http://")
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(35 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
	return p
}

// requests returns the access log so far.
func (p *serveProc) requests() []serve.Access {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]serve.Access(nil), p.access...)
}

// stop sends SIGTERM and returns the exit code.
func (p *serveProc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(35 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("bundle serve still running 35 s after SIGTERM; stderr:\n%s", p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// SIGTERM lets a download in flight finish and exits 0; startup says
// what is served and which tag two bundles give different images.
func TestServeSIGTERM(t *testing.T) {
	testenv.Acceptance(t)
	dir := t.TempDir()
	older, _ := fixtureBundle(t, dir, "old.tar", "docker.io/library/app:1")
	img, err := bundletest.FastImage(32<<20, 1, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := bundletest.New(bundletest.Ref{Name: "docker.io/library/app:1", Image: img})
	if err != nil {
		t.Fatal(err)
	}
	nb.Index.Created = "2030-01-01T00:00:00Z"
	if err := nb.SetIndex(); err != nil {
		t.Fatal(err)
	}
	data, _ := nb.Bytes()
	newer := filepath.Join(dir, "new.tar")
	if err := os.WriteFile(newer, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "-i", newer, "-i", older)
	layer := nb.Index.Images[0].Manifests[0].Layers[0]
	resp, err := http.Get(p.url + "/v2/library/app/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 4096)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || int64(len(head)+len(rest)) != nb.Index.Blobs[layer].Size {
		t.Errorf("the download in flight at SIGTERM: %d bytes, %v", len(head)+len(rest), err)
	}
	<-p.done
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr.String())
	}
	se := p.stderr.String()
	if !strings.Contains(se, "bundle: serving 2 images (1 repository") || !strings.Contains(se, "library/app:1 names different images") || strings.Contains(se, "error") {
		t.Errorf("stderr:\n%s", se)
	}
	if len(p.sum.Conflicts) != 1 || p.sum.Conflicts[0].Served.Bundle != newer {
		t.Errorf("conflicts %+v", p.sum.Conflicts)
	}
}
