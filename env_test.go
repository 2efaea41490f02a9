package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// The real registry and dockerd are shared by every test of this binary
// (testenv.SharedSeeded, testenv.SharedDockerd): started on first use,
// stopped by testenv.Run once every test has run.
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
