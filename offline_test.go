package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// STYLE.md: verify and load to local targets open no network connection.
// The real binary runs under strace; any socket of an internet family, or
// any connect at all, fails the test.
func TestVerifyAndOCILoadOpenNoConnection(t *testing.T) {
	testenv.Acceptance(t)
	testenv.Require(t, "strace")
	out, _ := createSeeded(t)
	strace, _ := testenv.LookPath("strace")
	netCall := regexp.MustCompile(`socket\(AF_INET6?\b|connect\(`)
	for _, args := range [][]string{
		{"verify", "--deep", "-i", out},
		{"list", "-i", out},
		{"load", "-i", out, "--to", "oci:" + filepath.Join(t.TempDir(), "oci")},
	} {
		t.Run(args[0], func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "strace.log")
			c := startBundleWith(t, binaryRun{
				wrap: []string{strace, "-f", "-qq", "-e", "trace=socket,connect", "-o", trace},
				env:  []string{"HTTP_PROXY=", "HTTPS_PROXY="},
			}, args...)
			if code := c.wait(t, 5*time.Minute); code != 0 {
				t.Fatalf("bundle %s: exit %d\n%s%s", strings.Join(args, " "), code, c.stdout.String(), c.stderr.String())
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
