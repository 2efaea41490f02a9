package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Programs a Dockerd needs: the engine, the containerd and runc it starts, and
// the docker CLI that Docker and Command run.
const (
	DockerdProgram    = "dockerd"
	DockerProgram     = "docker"
	ContainerdProgram = "containerd"
	RuncProgram       = "runc"
)

const (
	dockerdReadyTimeout = 60 * time.Second
	dockerdStopGrace    = 20 * time.Second
	// maxSocketPath is the room in sockaddr_un.sun_path, less the NUL.
	maxSocketPath = 107
)

// Dockerd is a running Docker Engine on a private unix socket, with its own
// data root, exec root, containerd and client config. Nothing of the host's
// docker (/var/lib/docker, /var/run/docker.sock, /etc/docker/daemon.json,
// ~/.docker) is used.
type Dockerd struct {
	// Host is "unix://" + Socket, the value for DOCKER_HOST.
	Host string
	// Socket is the path of the engine's API socket.
	Socket string
	// ContainerdSocket is the socket of the containerd that the engine started
	// (<exec root>/containerd/containerd.sock), for `ctr --address`.
	ContainerdSocket string
	// ConfigDir is an empty docker client config dir, for DOCKER_CONFIG.
	ConfigDir string
	// DataRoot is the engine's --data-root (images and containers, vfs).
	DataRoot string
	// ExecRoot is the engine's --exec-root (sockets, pid files, containerd
	// state); it is in a short temp dir of its own, removed by Stop, because
	// unix socket paths must stay under 108 bytes.
	ExecRoot string
	// LogPath is the engine's log (its stdout and stderr).
	LogPath string
	// PID is the dockerd process's id; ContainerdPID that of the containerd it
	// started.
	PID           int
	ContainerdPID int

	shortDir   string
	proc       *process
	stopCalled atomic.Bool
	stopOnce   sync.Once
	stopErr    error
}

// StartDockerd starts a Docker Engine for the test and stops it when the test
// ends. It skips or fails the test (see Require) when dockerd, containerd,
// runc or the docker CLI is missing or the test does not run as root, and
// skips it under -short (see Acceptance).
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	Acceptance(t)
	Require(t, DockerdProgram, ContainerdProgram, RuncProgram, DockerProgram)
	RequireRoot(t)
	start := time.Now()
	d, err := StartDockerdProcess(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if d.stopCalled.Load() {
			return // the test stopped it and has seen the result
		}
		stopStart := time.Now()
		wasRunning := !d.proc.exited()
		if err := d.Stop(); err != nil {
			t.Errorf("%v", err)
		} else if wasRunning {
			t.Logf("testenv: dockerd (pid %d) stopped in %v", d.PID, time.Since(stopStart).Round(time.Millisecond))
		}
	})
	t.Logf("testenv: dockerd %s (pid %d, containerd pid %d) ready in %v", d.Host, d.PID, d.ContainerdPID, time.Since(start).Round(time.Millisecond))
	return d
}

// StartDockerdProcess starts a Docker Engine with its data root, client config
// and log in dir (and its exec root and socket in a short temp dir of its own),
// and waits until GET /_ping answers. The caller calls Stop. It returns
// ErrNotRoot when not root and a *MissingError when a program is missing.
func StartDockerdProcess(dir string) (*Dockerd, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	paths, err := lookPaths(DockerdProgram, ContainerdProgram, RuncProgram)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	shortDir, err := shortTempDir()
	if err != nil {
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	d := &Dockerd{
		Socket:    filepath.Join(shortDir, "docker.sock"),
		ConfigDir: filepath.Join(dir, "docker-config"),
		DataRoot:  filepath.Join(dir, "root"),
		ExecRoot:  filepath.Join(shortDir, "exec"),
		LogPath:   filepath.Join(dir, "dockerd.log"),
		shortDir:  shortDir,
	}
	d.Host = "unix://" + d.Socket
	d.ContainerdSocket = filepath.Join(d.ExecRoot, "containerd", "containerd.sock")
	fail := func(err error) (*Dockerd, error) {
		os.RemoveAll(shortDir)
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	for _, sub := range []string{d.ConfigDir, d.DataRoot} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return fail(err)
		}
	}
	// An empty client config, so that the user's ~/.docker (credentials,
	// contexts, proxies) plays no part.
	if err := os.WriteFile(filepath.Join(d.ConfigDir, "config.json"), []byte("{}\n"), 0o600); err != nil {
		return fail(err)
	}
	// A daemon config of our own, so that /etc/docker/daemon.json plays no
	// part. Engine 20.10 writes its (deprecated) trust key to
	// /etc/docker/key.json unless this config key says otherwise; it has no
	// command-line flag.
	daemonJSON := filepath.Join(dir, "daemon.json")
	daemonConfig, err := json.Marshal(map[string]string{"deprecated-key-path": filepath.Join(dir, "key.json")})
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(daemonJSON, append(daemonConfig, '\n'), 0o600); err != nil {
		return fail(err)
	}
	args := []string{
		"--config-file", daemonJSON,
		"--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
		"--storage-driver=vfs",
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"-H", d.Host,
		"--pidfile", filepath.Join(shortDir, "docker.pid"),
	}
	env := append(os.Environ(), "PATH="+pathWithSbin())
	// SIGTERM on parent death: dockerd then shuts down its containerd too.
	proc, err := startProcess("dockerd", paths[0], args, env, d.LogPath, syscall.SIGTERM)
	if err != nil {
		return fail(err)
	}
	d.proc = proc
	d.PID = proc.pid()
	if err := d.waitReady(); err != nil {
		var problems []string
		d.stopOnce.Do(func() { problems = d.stop() })
		msg := fmt.Sprintf("starting dockerd: %v", err)
		if len(problems) > 0 {
			msg += "; and stopping it: " + strings.Join(problems, "; ")
		}
		return nil, fmt.Errorf("%s; its log (%s):\n%s", msg, d.LogPath, proc.logTail())
	}
	if b, err := os.ReadFile(filepath.Join(d.ExecRoot, "containerd", "containerd.pid")); err == nil {
		d.ContainerdPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return d, nil
}

// shortTempDir makes a temp dir whose path leaves room for the sockets under
// it, in $TMPDIR when that is short enough and in /tmp otherwise.
func shortTempDir() (string, error) {
	const room = len("/exec/containerd/containerd.sock.ttrpc") + 8
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		dir, err := os.MkdirTemp(parent, "bd")
		if err != nil {
			continue
		}
		if len(dir)+room <= maxSocketPath {
			return dir, nil
		}
		os.Remove(dir)
	}
	return "", errors.New("no temp dir with a path short enough for unix sockets (set TMPDIR=/tmp)")
}

// HTTPClient returns an HTTP client that talks to the engine's socket; use any
// host in the URL, e.g. http://docker/_ping.
func (d *Dockerd) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dialer net.Dialer
				return dialer.DialContext(ctx, "unix", d.Socket)
			},
		},
	}
}

func (d *Dockerd) waitReady() error {
	client := d.HTTPClient()
	client.Timeout = 2 * time.Second
	deadline := time.Now().Add(dockerdReadyTimeout)
	var last string
	for {
		if d.proc.exited() {
			return fmt.Errorf("dockerd exited early (%v)", d.proc.waitErr)
		}
		resp, err := client.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = "GET /_ping: " + resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd not ready after %v (last: %s)", dockerdReadyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Env returns the environment for a docker CLI that talks to this engine:
// DOCKER_HOST, DOCKER_CONFIG (the empty config dir) and DOCKER_BUILDKIT=0 (the
// engine's classic builder; there is no buildx here).
func (d *Dockerd) Env() []string {
	return []string{
		"DOCKER_HOST=" + d.Host,
		"DOCKER_CONFIG=" + d.ConfigDir,
		"DOCKER_BUILDKIT=0",
	}
}

// Command returns a docker CLI command against this engine: the process's
// environment without its DOCKER_* variables, plus Env. It is canceled with
// ctx.
func (d *Dockerd) Command(ctx context.Context, args ...string) *exec.Cmd {
	bin, err := LookPath(DockerProgram)
	if err != nil {
		bin = DockerProgram // let Start report it
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, d.Env()...)
	return cmd
}

// Docker runs the docker CLI against this engine and returns its stdout. It
// fails the test, with the command's stdout and stderr, when the command fails.
func (d *Dockerd) Docker(t testing.TB, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := d.Command(t.Context(), args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// Stop stops the engine: SIGTERM, up to 20 s for a clean shutdown (which stops
// its containers and its containerd), then SIGKILL. It then makes sure that no
// process the engine started (containerd, shims) is left, killing any by PID,
// unmounts anything left mounted under the engine's dirs, and removes the short
// temp dir. It is safe to call more than once (StartDockerd's cleanup calls it
// unless the test did). It reports an error when dockerd had exited before
// Stop, when it had to force anything, or when it could not clean up.
func (d *Dockerd) Stop() error {
	d.stopCalled.Store(true)
	d.stopOnce.Do(func() {
		alreadyExited := d.proc.exited()
		problems := d.stop()
		if alreadyExited {
			problems = append([]string{fmt.Sprintf("dockerd had exited before Stop (%v)", d.proc.waitErr)}, problems...)
		}
		if len(problems) > 0 {
			d.stopErr = fmt.Errorf("stopping dockerd (pid %d): %s; its log (%s):\n%s",
				d.PID, strings.Join(problems, "; "), d.LogPath, d.proc.logTail())
		}
	})
	return d.stopErr
}

// stop stops dockerd and what it started, and returns what went wrong.
func (d *Dockerd) stop() []string {
	var problems []string
	forced, _ := d.proc.stop(syscall.SIGTERM, dockerdStopGrace)
	if forced {
		problems = append(problems, fmt.Sprintf("dockerd did not stop within %v of SIGTERM and was killed", dockerdStopGrace))
	}

	// What dockerd started: its containerd (by its pid file, and any process
	// whose command line names our exec root: containerd and its shims). After a
	// clean shutdown there is none; give a moment for a slow exit, then kill.
	var pids []int
	if d.ContainerdPID > 0 && processAlive(d.ContainerdPID) && cmdlineContains(d.ContainerdPID, d.ExecRoot+"/") {
		pids = append(pids, d.ContainerdPID)
	}
	for _, pid := range processesMentioning(d.ExecRoot + "/") {
		if pid != d.ContainerdPID {
			pids = append(pids, pid)
		}
	}
	if left := waitGone(pids, 5*time.Second); len(left) > 0 {
		for _, pid := range left {
			problems = append(problems, fmt.Sprintf("process %d (%s) outlived dockerd and was killed", pid, cmdline(pid)))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if still := waitGone(left, 5*time.Second); len(still) > 0 {
			problems = append(problems, fmt.Sprintf("processes %v still running after SIGKILL", still))
		}
	}

	// Mounts left by a forced stop (netns, shm) would make removal fail.
	for _, dir := range []string{d.shortDir, d.DataRoot} {
		for _, mp := range mountsUnder(dir) {
			if err := unmountDetach(mp); err != nil {
				problems = append(problems, fmt.Sprintf("unmounting %s: %v", mp, err))
			} else {
				problems = append(problems, fmt.Sprintf("%s was left mounted (unmounted)", mp))
			}
		}
	}
	if err := os.RemoveAll(d.shortDir); err != nil {
		problems = append(problems, fmt.Sprintf("removing %s: %v", d.shortDir, err))
	}
	return problems
}

func cmdline(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func cmdlineContains(pid int, s string) bool {
	return strings.Contains(cmdline(pid), s)
}

// mountsUnder returns the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
