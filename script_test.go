package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the end-to-end CLI scripts in testdata/script. Scripts
// that need the real registry say so with [short] skip and the registry
// command, and read its address from $REGISTRY (started on first use).
// A run of bundle that must fail says with which exit code:
// "bundle-exit 2 create -o x.tar" (2 usage, 3 corrupt or refused, 1 any
// other error); "! exec bundle", which takes any code but 0, is refused
// (TestScriptsCheckExitCodes).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("BUNDLE_CACHE", env.WorkDir+"/cache")
			// $TESTDATA: the repository's testdata directory (fixtures).
			td, err := filepath.Abs("testdata")
			if err != nil {
				return err
			}
			env.Setenv("TESTDATA", td)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			return false, nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// registry: start (once) the real registry with the seeded images
			// and set $REGISTRY to its host:port.
			"registry": func(ts *testscript.TestScript, neg bool, args []string) {
				if testing.Short() {
					ts.Fatalf("%s: put [short] skip before registry", testenv.AcceptanceSkip)
				}
				reg, _ := testenv.SharedSeeded(t)
				ts.Setenv("REGISTRY", reg.Host)
			},
			// bundle-exit N ARGS...: run bundle ARGS, as exec does (its
			// stdout and stderr are what stdout and stderr then match),
			// and fail unless it exits with code N.
			"bundle-exit": bundleExit,
			// expand SRC DST: copy SRC to DST with $VARS expanded.
			"expand": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: expand SRC DST")
				}
				ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(os.Expand(ts.ReadFile(args[0]), ts.Getenv)), 0o644))
			},
		},
	})
}

func bundleExit(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("! bundle-exit: give the exit code wanted instead")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: bundle-exit N ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 {
		ts.Fatalf("bundle-exit: %q is not an exit code", args[0])
	}
	code := 0
	if err := ts.Exec("bundle", args[1:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("bundle-exit: running bundle: %v", err)
		}
		code = ee.ExitCode()
	}
	if code != want {
		ts.Fatalf("bundle %s: exit %d, want %d", strings.Join(args[1:], " "), code, want)
	}
}

// negatedExec is a script line that runs a program and takes any exit
// code but 0.
var negatedExec = regexp.MustCompile(`^\s*(\[[^]]*\]\s*)*!\s*exec\s`)

// Every failing run in testdata/script says with which exit code it
// fails: no script line is "! exec".
func TestScriptsCheckExitCodes(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/script: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "-- ") {
				break // the files of the archive
			}
			if negatedExec.MatchString(line) {
				t.Errorf("%s:%d: %q takes any exit code but 0; write bundle-exit N ARGS", f, i+1, line)
			}
		}
	}
}
