package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the end-to-end CLI scripts in testdata/script. Scripts
// that need the real registry say so with [exec:docker-registry] and read
// its address from $REGISTRY (started on first use).
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
