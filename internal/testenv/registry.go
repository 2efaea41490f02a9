package testenv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"golang.org/x/crypto/bcrypt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// RegistryProgram is the CNCF distribution registry binary (Debian package
// docker-registry).
const RegistryProgram = "docker-registry"

// registryReadyTimeout bounds the wait for GET /v2/ to answer 200.
const registryReadyTimeout = 15 * time.Second

// Registry is a running distribution registry on 127.0.0.1, plain HTTP,
// without authentication, with its storage in a temp dir.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// Dir holds the config (config.yml), the storage (data/) and the log
	// (registry.log).
	Dir string
	// PID is the registry process's id.
	PID int

	proc       *process
	auth       bool
	stopCalled atomic.Bool
	stopOnce   sync.Once
	stopErr    error
}

// StartRegistry starts a registry for the test and stops it when the test ends.
// It skips the test under -short (see Acceptance), and skips or fails it (see
// Require) when docker-registry is missing.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	Acceptance(t)
	Require(t, RegistryProgram)
	start := time.Now()
	r, err := StartRegistryProcess(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if r.stopCalled.Load() {
			return // the test stopped it and has seen the result
		}
		if err := r.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	t.Logf("testenv: registry %s (pid %d) ready in %v", r.Host, r.PID, time.Since(start).Round(time.Millisecond))
	return r
}

// StartRegistryProcess starts a registry with its config, storage and log in
// dir, and waits until it answers. The caller calls Stop. It returns a
// *MissingError when docker-registry is not installed.
func StartRegistryProcess(dir string) (*Registry, error) {
	return StartRegistryWithAuth(dir, "", "")
}

// StartRegistryWithAuth is StartRegistryProcess with htpasswd basic auth
// for user and password (none when user is ""): for tests of credentials.
func StartRegistryWithAuth(dir, user, password string) (*Registry, error) {
	return startRegistry(dir, registryConfig{user: user, password: password})
}

// StartRegistryTLS starts a registry for the test that serves HTTPS only,
// with the certificate and key files given (see MakeTestCA), and stops it
// when the test ends. Its URL is https://.
func StartRegistryTLS(t testing.TB, certFile, keyFile string) *Registry {
	t.Helper()
	Acceptance(t)
	Require(t, RegistryProgram)
	r, err := startRegistry(t.TempDir(), registryConfig{tlsCert: certFile, tlsKey: keyFile})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if !r.stopCalled.Load() {
			if err := r.Stop(); err != nil {
				t.Errorf("%v", err)
			}
		}
	})
	return r
}

// registryConfig is what a started registry is configured with besides
// its storage and address.
type registryConfig struct {
	user, password  string // htpasswd auth when user is set
	tlsCert, tlsKey string // HTTPS only when set
}

func startRegistry(dir string, rc registryConfig) (*Registry, error) {
	paths, err := lookPaths(RegistryProgram)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("starting registry: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("starting registry: %w", err)
	}
	// The free port is found by binding :0 and closing; another process may take
	// it before the registry binds it, so a start that fails on the address is
	// retried with a new port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := startRegistryOnce(paths[0], dir, rc)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address already in use")

func startRegistryOnce(bin, dir string, rc registryConfig) (*Registry, error) {
	user, password := rc.user, rc.password
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("starting registry: finding a free port: %w", err)
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	config := fmt.Sprintf(`version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http: {addr: %q}
`, filepath.Join(dir, "data"), host)
	scheme := "http"
	if rc.tlsCert != "" {
		scheme = "https"
		config = strings.Replace(config, fmt.Sprintf("http: {addr: %q}", host),
			fmt.Sprintf("http: {addr: %q, tls: {certificate: %q, key: %q}}", host, rc.tlsCert, rc.tlsKey), 1)
	}
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("starting registry: writing htpasswd: %w", err)
		}
		config += fmt.Sprintf("auth: {htpasswd: {realm: bundle-test, path: %q}}\n", htpasswd)
	}
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("starting registry: writing config: %w", err)
	}
	env := append(os.Environ(), "PATH="+pathWithSbin())
	proc, err := startProcess("registry", bin, []string{"serve", configPath}, env,
		filepath.Join(dir, "registry.log"), syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	r := &Registry{Host: host, URL: scheme + "://" + host, Dir: dir, PID: proc.pid(), proc: proc, auth: user != ""}
	if err := r.waitReady(); err != nil {
		proc.stop(syscall.SIGKILL, 0)
		tail := proc.logTail()
		if strings.Contains(tail, "address already in use") {
			return nil, fmt.Errorf("starting registry on %s: %w", host, errAddrInUse)
		}
		return nil, fmt.Errorf("starting registry on %s: %w; its log (%s):\n%s", host, err, proc.logPath, tail)
	}
	return r, nil
}

func (r *Registry) waitReady() error {
	client := &http.Client{
		Timeout: time.Second,
		// Readiness only: a TLS registry's certificate is the test's to check.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	deadline := time.Now().Add(registryReadyTimeout)
	var last string
	for {
		if r.proc.exited() {
			return fmt.Errorf("registry exited early (%v)", r.proc.waitErr)
		}
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (r.auth && resp.StatusCode == http.StatusUnauthorized) {
				return nil
			}
			last = "GET /v2/: " + resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry not ready after %v (last: %s)", registryReadyTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the registry process and waits for it. It is safe to call more
// than once (StartRegistry's cleanup calls it unless the test did). It reports an error when the registry had exited on its own before
// Stop (a crash during the test), with the end of its log.
func (r *Registry) Stop() error {
	r.stopCalled.Store(true)
	r.stopOnce.Do(func() {
		_, alreadyExited := r.proc.stop(syscall.SIGKILL, 0)
		if alreadyExited {
			r.stopErr = fmt.Errorf("registry %s (pid %d) had exited before Stop (%v); its log (%s):\n%s",
				r.Host, r.PID, r.proc.waitErr, r.proc.logPath, r.proc.logTail())
		}
	})
	return r.stopErr
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
