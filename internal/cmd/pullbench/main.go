// Command pullbench is the client of scripts/bench.sh's serve case: it
// pulls every image of a list from a registry with many clients at once,
// as a rollout of nodes does, then sends many concurrent HEAD and GET
// requests of manifests, and prints one JSON line of what it did.
//
// Each client pulls every image in turn (starting at its own place in the
// list), as a node does: HEAD of the tag, the manifest by digest (for an
// index, the child of -platform), then the config and the layers it does
// not hold yet (each client has its own content store: a blob shared by
// several images is fetched once), each hashed and checked against its
// digest. The same
// client runs against bundle serve and against distribution, so the two
// differ only in the server.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var accept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

type result struct {
	Clients     int     `json:"clients"`
	Images      int     `json:"images"`
	Bytes       int64   `json:"bytes"`
	Requests    int64   `json:"requests"`
	Seconds     float64 `json:"seconds"`
	MiBPerSec   float64 `json:"mibPerSec"`
	Heads       int     `json:"heads"`
	HeadSeconds float64 `json:"headSeconds"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
}

type puller struct {
	base     string
	platform string
	client   *http.Client
	bytes    atomic.Int64
	requests atomic.Int64
	errors   atomic.Int64
	mu       sync.Mutex
	first    string
}

func (p *puller) fail(err error) {
	p.errors.Add(1)
	p.mu.Lock()
	if p.first == "" {
		p.first = err.Error()
	}
	p.mu.Unlock()
}

func main() {
	registry := flag.String("registry", "", "host:port")
	refsFile := flag.String("refs", "", "file of references, one per line (a registry host before the first / is dropped with -strip)")
	strip := flag.String("strip", "", "host to drop from the front of each reference")
	clients := flag.Int("clients", 20, "concurrent pullers")
	heads := flag.Int("heads", 200, "concurrent HEAD+GET of manifests after the pulls")
	platform := flag.String("platform", "linux/amd64", "the platform taken from an index")
	flag.Parse()
	if *registry == "" || *refsFile == "" {
		fmt.Fprintln(os.Stderr, "usage: pullbench -registry HOST:PORT -refs FILE [-strip HOST] [-clients N] [-heads N]")
		os.Exit(2)
	}
	data, err := os.ReadFile(*refsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
	var refs []string
	for _, l := range strings.Fields(string(data)) {
		if *strip != "" {
			l = strings.TrimPrefix(l, *strip+"/")
		}
		refs = append(refs, l)
	}
	p := &puller{base: "http://" + *registry, platform: *platform, client: &http.Client{
		Timeout: 10 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        2 * (*clients + *heads),
			MaxIdleConnsPerHost: 2 * (*clients + *heads),
			DisableCompression:  true,
		},
	}}
	res := result{Clients: *clients, Images: len(refs), Heads: *heads}
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			have := map[string]bool{} // this client's content store
			for i := range refs {
				if err := p.pull(refs[(i+c)%len(refs)], have); err != nil {
					p.fail(err)
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Bytes, res.Requests = p.bytes.Load(), p.requests.Load()
	res.MiBPerSec = float64(res.Bytes) / (1 << 20) / res.Seconds

	start = time.Now()
	for h := 0; h < *heads; h++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.headAndGet(refs[h%len(refs)]); err != nil {
				p.fail(err)
			}
		}()
	}
	wg.Wait()
	res.HeadSeconds = time.Since(start).Seconds()
	res.Errors, res.FirstError = p.errors.Load(), p.first
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if res.Errors > 0 {
		os.Exit(1)
	}
}

// split turns "repo/path:tag" into the repository and the tag.
func split(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

func (p *puller) get(ctx context.Context, method, url string, want string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	p.requests.Add(1)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	if want != "" && resp.Header.Get("Docker-Content-Digest") != "" && resp.Header.Get("Docker-Content-Digest") != want {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: digest header %s", method, url, resp.Header.Get("Docker-Content-Digest"))
	}
	return resp, nil
}

// fetch GETs url and checks the bytes against digest d ("" to skip).
func (p *puller) fetch(url, d string, keep bool) ([]byte, error) {
	resp, err := p.get(context.Background(), http.MethodGet, url, d)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	var w io.Writer = h
	var buf strings.Builder
	if keep {
		w = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(w, resp.Body)
	p.bytes.Add(n)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if d != "" && got != d {
		return nil, fmt.Errorf("GET %s: got %s", url, got)
	}
	return []byte(buf.String()), nil
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

func (p *puller) pull(ref string, have map[string]bool) error {
	repo, tag := split(ref)
	// As docker and containerd do: HEAD by tag, then GET by digest.
	resp, err := p.get(context.Background(), http.MethodHead, p.base+"/v2/"+repo+"/manifests/"+tag, "")
	if err != nil {
		return err
	}
	d := resp.Header.Get("Docker-Content-Digest")
	resp.Body.Close()
	if d == "" {
		return fmt.Errorf("HEAD %s: no Docker-Content-Digest", ref)
	}
	raw, err := p.fetch(p.base+"/v2/"+repo+"/manifests/"+d, d, true)
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	if len(m.Manifests) > 0 {
		child := ""
		for _, c := range m.Manifests {
			if c.Platform != nil && c.Platform.OS+"/"+c.Platform.Architecture == p.platform {
				child = c.Digest
				break
			}
		}
		if child == "" {
			return fmt.Errorf("%s: no %s manifest", ref, p.platform)
		}
		if raw, err = p.fetch(p.base+"/v2/"+repo+"/manifests/"+child, child, true); err != nil {
			return err
		}
		m = manifest{}
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	}
	if m.Config.Digest == "" {
		return errors.New(ref + ": no config")
	}
	for _, b := range append([]descriptor{m.Config}, m.Layers...) {
		if have[b.Digest] {
			continue
		}
		if _, err := p.fetch(p.base+"/v2/"+repo+"/blobs/"+b.Digest, b.Digest, false); err != nil {
			return err
		}
		have[b.Digest] = true
	}
	return nil
}

func (p *puller) headAndGet(ref string) error {
	repo, tag := split(ref)
	u := p.base + "/v2/" + repo + "/manifests/" + tag
	resp, err := p.get(context.Background(), http.MethodHead, u, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	_, err = p.fetch(u, d, false)
	return err
}
