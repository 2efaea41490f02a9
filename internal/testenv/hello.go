package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// HelloOutput is the line (without its newline) that the seeded hello image
// prints when run: the output of testdata/hello.
const HelloOutput = "hello from bundle"

var helloCache struct {
	sync.Mutex
	binary []byte
}

// helloBinary returns testdata/hello built as a static linux binary for the
// host's architecture. It is built once per process and kept in memory (about
// 1.5 MB); the build dir is removed at once.
func helloBinary() ([]byte, error) {
	helloCache.Lock()
	defer helloCache.Unlock()
	if helloCache.binary != nil {
		return helloCache.binary, nil
	}
	src, err := helloSourceDir()
	if err != nil {
		return nil, err
	}
	goBin, err := LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goBin = filepath.Join(root, "bin", "go")
		} else {
			return nil, fmt.Errorf("building testdata/hello: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "bundle-hello-")
	if err != nil {
		return nil, fmt.Errorf("building testdata/hello: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "hello")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH,
		"GOFLAGS=-buildvcs=false", "GOWORK=off")
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building testdata/hello (go build in %s): %w\n%s", src, err, output.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("building testdata/hello: %w", err)
	}
	helloCache.binary = b
	return b, nil
}

// helloSourceDir finds testdata/hello of this module: beside this source file
// when the package was built from the source tree, else under the module of
// the current directory.
func helloSourceDir() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", "testdata", "hello"))
	}
	if gomod, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if p := strings.TrimSpace(string(gomod)); p != "" && p != os.DevNull {
			candidates = append(candidates, filepath.Join(filepath.Dir(p), "testdata", "hello"))
		}
	}
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err == nil {
			return filepath.Clean(dir), nil
		}
	}
	return "", errors.New("building testdata/hello: cannot find its source (looked in " + strings.Join(candidates, ", ") + ")")
}
