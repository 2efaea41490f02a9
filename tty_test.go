package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// create's progress on a real terminal (tmux): while a layer trickles in,
// the bar moves with the download (it does not sit at 0% under a label of
// bytes downloaded), and at the end the bar is gone: the summary line
// starts a clean line of its own.
func TestCreateProgressOnTerminal(t *testing.T) {
	testenv.Acceptance(t)
	testenv.Require(t, "tmux")
	s := newFaultSetup(t)
	s.proxy.ClearFaults()
	t.Cleanup(s.proxy.ClearFaults)
	// app-a's own layer at 64 KiB/s: a few seconds of download.
	s.proxy.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 64 << 10, Digest: s.own().String()})
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	done := filepath.Join(dir, "exit")
	sock := filepath.Join(dir, "tmux.sock")
	cmd := strings.Join([]string{bundleBinary(t), "create", "-f", s.yaml(t, dir), "-o", out, "--cache", filepath.Join(dir, "cache")}, " ")
	tmux := func(args ...string) (string, error) {
		b, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		return string(b), err
	}
	if b, err := tmux("new-session", "-d", "-x", "160", "-y", "40", "sh", "-c", cmd+"; echo $? > "+done+"; sleep 600"); err != nil {
		t.Fatalf("tmux: %v\n%s", err, b)
	}
	t.Cleanup(func() { _, _ = tmux("kill-server") })

	bar := regexp.MustCompile(`fetched [0-9.]+ [KMG]?i?B/[0-9.]+ [KMG]?i?B, wrote .*\b([0-9]+)%`)
	var moving []string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		screen, err := tmux("capture-pane", "-p")
		if err != nil {
			t.Fatalf("capture-pane: %v", err)
		}
		for _, l := range strings.Split(screen, "\n") {
			if m := bar.FindStringSubmatch(l); m != nil && m[1] != "0" && m[1] != "100" {
				moving = append(moving, strings.TrimSpace(l))
			}
		}
		if _, err := os.Stat(done); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, err := os.ReadFile(done)
	if err != nil || strings.TrimSpace(string(code)) != "0" {
		screen, _ := tmux("capture-pane", "-p")
		t.Fatalf("create did not finish with 0 (%q, %v); screen:\n%s", code, err, screen)
	}
	if distinct := slices.Compact(slices.Clone(moving)); len(distinct) < 2 {
		t.Errorf("the bar was not seen moving between 0%% and 100%% during the download: %q", distinct)
	} else {
		t.Logf("bar seen: %q … %q (%d captures)", moving[0], moving[len(moving)-1], len(moving))
	}
	screen, _ := tmux("capture-pane", "-p")
	var summary string
	for _, l := range strings.Split(screen, "\n") {
		if i := strings.Index(l, "wrote "+out); i >= 0 {
			summary = l
			if i != 0 {
				t.Errorf("the summary does not start its line (the bar is left before it): %q", l)
			}
		}
		if strings.Contains(l, "%") && strings.Contains(l, "|") {
			t.Errorf("a bar is left on the screen after the run: %q", l)
		}
	}
	if summary == "" {
		t.Errorf("no summary line on the screen:\n%s", screen)
	}
}
