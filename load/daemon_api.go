package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// containerdSnapshotter is the driver-type that GET /info shows for a
// daemon with the containerd image store (the default of Docker 29).
const containerdSnapshotter = "io.containerd.snapshotter.v1"

// isLoopback reports whether host names this machine's loopback
// interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dockerTLS reads the client certificates the docker CLI would use.
func dockerTLS() (*tls.Config, error) {
	dir := os.Getenv("DOCKER_CERT_PATH")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".docker")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cfg.RootCAs = pool
	}
	if cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err == nil {
		cfg.Certificates = []tls.Certificate{cert}
	}
	if os.Getenv("DOCKER_TLS_VERIFY") == "" {
		cfg.InsecureSkipVerify = true //nolint:gosec // as the docker CLI does without DOCKER_TLS_VERIFY
	}
	return cfg, nil
}

// DaemonError is an error the daemon answered with.
type DaemonError struct {
	Op     string // what was asked: "GET /info", "POST /images/load"
	Status int
	Msg    string
}

func (e *DaemonError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("docker daemon: %s: %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Msg)
	}
	return fmt.Sprintf("docker daemon: %s: %s", e.Op, e.Msg)
}

// call does one API request and decodes a JSON answer into out (unless
// nil). It returns (false, nil) for a 404.
func (d *Daemon) call(ctx context.Context, method, path string, body io.Reader, out any) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return false, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("cannot reach the docker daemon at %s (is it running? set DOCKER_HOST): %w", d.host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if resp.StatusCode/100 != 2 {
		return false, &DaemonError{Op: method + " " + path, Status: resp.StatusCode, Msg: apiMessage(resp.Body)}
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
			return false, fmt.Errorf("docker daemon: %s %s: reading the answer: %w", method, path, err)
		}
	}
	return true, nil
}

func apiMessage(r io.Reader) string {
	data, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(data))
}

// Ping checks that the daemon answers GET /_ping.
func (d *Daemon) Ping(ctx context.Context) error {
	_, err := d.call(ctx, http.MethodGet, "/_ping", nil, nil)
	return err
}

// daemonInfo is what a load needs of GET /info.
type daemonInfo struct {
	ServerVersion string      `json:"ServerVersion"`
	Driver        string      `json:"Driver"`
	DriverStatus  [][2]string `json:"DriverStatus"`
}

func (i daemonInfo) containerdStore() bool {
	for _, kv := range i.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == containerdSnapshotter {
			return true
		}
	}
	return false
}

func (d *Daemon) info(ctx context.Context) (daemonInfo, error) {
	var info daemonInfo
	if _, err := d.call(ctx, http.MethodGet, "/_ping", nil, nil); err != nil {
		return info, err
	}
	if _, err := d.call(ctx, http.MethodGet, "/info", nil, &info); err != nil {
		return info, err
	}
	return info, nil
}

// inspect returns the image ID the daemon has under name, or "".
func (d *Daemon) inspect(ctx context.Context, name string) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	ok, err := d.call(ctx, http.MethodGet, "/images/"+name+"/json", nil, &out)
	if err != nil || !ok {
		return "", err
	}
	return out.ID, nil
}

// postLoad sends the tar and reads the daemon's JSON message stream. It
// returns the "Loaded image" lines; an error message in the stream is an
// error.
func (d *Daemon) postLoad(ctx context.Context, body io.Reader) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/images/load?quiet=1", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("docker daemon: POST /images/load: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, &DaemonError{Op: "POST /images/load", Status: resp.StatusCode, Msg: apiMessage(resp.Body)}
	}
	var loaded []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return loaded, fmt.Errorf("docker daemon: POST /images/load: reading the answer: %w", err)
		}
		switch {
		case m.ErrorDetail != nil && m.ErrorDetail.Message != "":
			return loaded, &DaemonError{Op: "POST /images/load", Msg: m.ErrorDetail.Message}
		case m.Error != "":
			return loaded, &DaemonError{Op: "POST /images/load", Msg: m.Error}
		}
		for _, line := range strings.Split(m.Stream+m.Status, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "Loaded image") {
				loaded = append(loaded, line)
			}
		}
	}
	return loaded, nil
}

// tag names the image (its ID is Primary's config digest) by its tag.
func (d *Daemon) tag(ctx context.Context, im Chosen) error {
	if !im.Tagged() {
		return nil
	}
	fam := dockerName(im)
	i := strings.LastIndex(fam, ":")
	q := url.Values{"repo": {fam[:i]}, "tag": {fam[i+1:]}}
	path := "/images/" + im.Primary.Config.String() + "/tag?" + q.Encode()
	ok, err := d.call(ctx, http.MethodPost, path, nil, nil)
	if err == nil && !ok {
		err = &DaemonError{Op: "POST /images/{id}/tag", Status: http.StatusNotFound, Msg: "no image " + im.Primary.Config.String() + " after loading it"}
	}
	if err != nil {
		return fmt.Errorf("tagging %s: %w", fam, err)
	}
	return nil
}
