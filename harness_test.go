package main

// The acceptance tests' harness: the one way to run bundle in this process
// (bundleCLI), the one way to build and run the real binary (bundleBinary,
// startBundle), the one parser of its --json output (jsonResult), and the
// shared registry and dockerd (testenv.SharedSeeded, testenv.SharedDockerd),
// stopped by TestMain once every test has run. docs/ARCHITECTURE.md
// ("Tests") says which test lives where.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain runs the tests (and, for testscript, the bundle command), then
// stops the shared registry and dockerd.
func TestMain(m *testing.M) {
	testscript.Main(withCleanup{m}, map[string]func(){
		"bundle": func() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) },
	})
}

// withCleanup runs the tests, then stops the shared registry and dockerd.
type withCleanup struct{ m *testing.M }

func (w withCleanup) Run() int { return testenv.Run(w.m) }

// bundleCLI runs the bundle command in-process and returns its output and exit code.
func bundleCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"bundle"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// bundleCLIStdin is bundleCLI with the file at path as stdin.
func bundleCLIStdin(t testing.TB, path string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	return bundleCLI(t, args...)
}

// mustBundle runs bundle and fails the test unless it exits 0.
func mustBundle(t testing.TB, args ...string) string {
	t.Helper()
	o, e, code := bundleCLI(t, args...)
	if code != 0 {
		t.Fatalf("bundle %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, o, e)
	}
	return o
}

// jsonResult decodes a command's --json output (its stdout), failing the
// test when it is not one T (bundle.CreateResult, bundle.LoadResult).
func jsonResult[T any](t testing.TB, stdout string) *T {
	t.Helper()
	var r T
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	return &r
}

// loadJSON runs bundle load with --json and returns its result.
func loadJSON(t testing.TB, args ...string) *bundle.LoadResult {
	t.Helper()
	return jsonResult[bundle.LoadResult](t, mustBundle(t, append([]string{"load", "--json"}, args...)...))
}

// builtBundle is the bundle binary, built once per test binary, for the
// tests that need a process of its own: signals, resource limits, strace,
// scripts.
var builtBundle struct {
	once sync.Once
	path string
	err  error
}

func bundleBinary(t *testing.T) string {
	t.Helper()
	testenv.Require(t, "go")
	builtBundle.once.Do(func() {
		dir, err := testenv.SharedDir("bundle-bin-")
		if err != nil {
			builtBundle.err = err
			return
		}
		goBin, _ := testenv.LookPath("go")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		p := filepath.Join(dir, "bundle")
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", p, ".")
		if b, err := cmd.CombinedOutput(); err != nil {
			builtBundle.err = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		builtBundle.path = p
	})
	if builtBundle.err != nil {
		t.Fatal(builtBundle.err)
	}
	return builtBundle.path
}

// binaryRun says how startBundleWith runs the binary: under a wrapper (a
// program and its arguments before the binary: prlimit --fsize=N --,
// strace …, or sh -c 'ulimit -v N && exec "$0" "$@"'), in dir (the test's
// working directory when ""), with env added to the test's environment.
type binaryRun struct {
	wrap []string
	dir  string
	env  []string
}

// child is a bundle process the test started.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	killed         bool // wait's deadline passed
}

// startBundle starts the built binary with args.
func startBundle(t *testing.T, args ...string) *child {
	t.Helper()
	return startBundleWith(t, binaryRun{}, args...)
}

// startBundleWith starts the built binary with args as r says. The child
// has a docker config of its own, dies with the test binary, and is killed
// when the test ends.
func startBundleWith(t *testing.T, r binaryRun, args ...string) *child {
	t.Helper()
	argv := append(append(append([]string(nil), r.wrap...), bundleBinary(t)), args...)
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Dir = r.dir
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	c.cmd.Env = append(append(os.Environ(), "DOCKER_CONFIG="+t.TempDir()), r.env...)
	c.cmd.WaitDelay = 5 * time.Second
	// Dies with the test binary, whatever happens.
	c.cmd.SysProcAttr = dieWithTest(t)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.wait(t, 0) })
	return c
}

// signal sends sig to the child (os.Process signals its own PID, through a
// pidfd, and never a reaped one).
func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, c.cmd.Process.Pid, err)
	}
}

// wait waits up to d for the child and returns its exit code (-1 when a
// signal ended it); past d, it kills the child and fails the test.
func (c *child) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	if !c.exited() {
		select {
		case <-c.done:
		case <-time.After(d):
			_ = c.cmd.Process.Kill()
			<-c.done
			if d > 0 {
				c.killed = true
				t.Errorf("bundle %v still running after %s: killed; stderr:\n%s", c.cmd.Args[1:], d, c.stderr.String())
			}
		}
	}
	return c.cmd.ProcessState.ExitCode()
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// interruptAndExpect130 sends SIGINT and expects the run to stop (within
// the 10 s bound of wait) with exit 130 and the one "interrupted" line.
func interruptAndExpect130(t *testing.T, c *child) {
	t.Helper()
	c.signal(t, syscall.SIGINT)
	if code := c.wait(t, 10*time.Second); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130; stderr:\n%s", code, c.stderr.String())
	}
	if !strings.HasSuffix(c.stderr.String(), "bundle: error: interrupted\n") {
		t.Errorf("stderr does not end with the interrupted line:\n%s", c.stderr.String())
	}
}

// command runs a program and fails the test with its output on error.
func command(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	testenv.Acceptance(t)
	testenv.Require(t, name)
	path, _ := testenv.LookPath(name)
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String()
}

// execQuiet runs a cleanup command, ignoring its output.
func execQuiet(name string, args ...string) ([]byte, error) {
	p, err := testenv.LookPath(name)
	if err != nil {
		return nil, err
	}
	return exec.Command(p, args...).CombinedOutput()
}
