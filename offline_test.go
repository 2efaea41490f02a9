package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// STYLE.md: verify and load to local targets open no network connection.
// The real binary runs under strace; any socket of an internet family, or
// any connect at all, fails the test. (The binary is built once here.)
func TestVerifyAndOCILoadOpenNoConnection(t *testing.T) {
	testenv.Acceptance(t)
	testenv.Require(t, "strace")
	out, _ := createSeeded(t)
	bin := filepath.Join(t.TempDir(), "bundle")
	build := exec.Command("go", "build", "-o", bin, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	netCall := regexp.MustCompile(`socket\(AF_INET6?\b|connect\(`)
	for _, args := range [][]string{
		{"verify", "--deep", "-i", out},
		{"list", "-i", out},
		{"load", "-i", out, "--to", "oci:" + filepath.Join(t.TempDir(), "oci")},
	} {
		t.Run(args[0], func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "strace.log")
			strace, _ := testenv.LookPath("strace")
			cmd := exec.Command(strace, append([]string{"-f", "-qq", "-e", "trace=socket,connect", "-o", trace, bin}, args...)...)
			cmd.Env = append(os.Environ(), "HTTP_PROXY=", "HTTPS_PROXY=")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("bundle %s: %v\n%s", strings.Join(args, " "), err, b)
			}
			log, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			var calls []string
			for _, line := range strings.Split(string(log), "\n") {
				if netCall.MatchString(line) {
					calls = append(calls, line)
				}
			}
			if len(calls) > 0 {
				t.Errorf("bundle %s made network calls:\n%s", args[0], strings.Join(calls, "\n"))
			}
		})
	}
}
