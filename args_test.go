package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
)

func TestInterspersed(t *testing.T) {
	app := newApp(nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"bundle create -o x.tar a:1 b:2 --platform linux/amd64 --platform=linux/arm64 -q",
			"bundle create -o x.tar --platform linux/amd64 --platform=linux/arm64 -q -- a:1 b:2"},
		{"bundle create -f images.yaml -o x.tar", "bundle create -f images.yaml -o x.tar"},
		{"bundle create a:1 --all-tags -o x.tar", "bundle create --all-tags -o x.tar -- a:1"},
		{"bundle create a:1 -- --literal", "bundle create -- a:1 --literal"},
		{"bundle create a:1 --bogus b:2", "bundle create --bogus -- a:1 b:2"}, // cli reports --bogus
		{"bundle load -i - --to oci:x", "bundle load -i - --to oci:x"},        // "-" is a value here
		{"bundle nosuch a --x", "bundle nosuch a --x"},
		{"bundle", "bundle"},
	} {
		got := strings.Join(interspersed(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// create with references as arguments, --platform twice, flags after the
// references, and -f with arguments together: the bundle holds what was
// named, with the platforms asked for; a failed run under --json still
// prints a result object.
func TestCreateRefsAsArguments(t *testing.T) {
	testenv.Acceptance(t)
	_, seeded := testenv.SharedSeeded(t)
	multi := seeded.Find(t, testenv.ImageMulti)
	appA := seeded.Find(t, testenv.ImageAppA)
	appB := seeded.Find(t, testenv.ImageAppB)
	dir := t.TempDir()
	out := filepath.Join(dir, "args.tar")
	cache := filepath.Join(dir, "cache")
	_, stderr, code := bundleCLI(t, "create", "-q", "-o", out, multi.Ref, appA.Ref, "--platform", "linux/amd64", "--platform", "linux/arm64", "--cache", cache)
	if code != 0 {
		t.Fatalf("create with arguments: exit %d\n%s", code, stderr)
	}
	stdout, stderr, code := bundleCLI(t, "list", "--json", "-i", out)
	if code != 0 {
		t.Fatalf("list: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{multi.Ref, appA.Ref, "linux/arm64", "linux/amd64"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("list --json lacks %q:\n%s", want, stdout)
		}
	}
	if _, stderr, code := bundleCLI(t, "verify", "-i", out); code != 0 {
		t.Errorf("verify: exit %d\n%s", code, stderr)
	}

	// -f and arguments together; a name in both is an error naming both.
	yaml := writeImagesYAML(t, dir, "linux/amd64", []testenv.SeededImage{appA})
	out2 := filepath.Join(dir, "both.tar")
	if _, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", out2, appB.Ref, "--cache", cache); code != 0 {
		t.Fatalf("create -f and an argument: exit %d\n%s", code, stderr)
	}
	stdout, _, _ = bundleCLI(t, "list", "--json", "-i", out2)
	if !strings.Contains(stdout, appA.Ref) || !strings.Contains(stdout, appB.Ref) {
		t.Errorf("bundle of -f and an argument lacks one:\n%s", stdout)
	}
	_, stderr, code = bundleCLI(t, "create", "-q", "-f", yaml, "-o", filepath.Join(dir, "dup.tar"), appA.Ref, "--cache", cache)
	if code != 1 || !strings.Contains(stderr, "argument 1: duplicate image") || !strings.Contains(stderr, "(first at "+yaml) {
		t.Errorf("a name in -f and in the arguments: exit %d\n%s", code, stderr)
	}

	// --json prints a result on failure too.
	stdout, _, code = bundleCLI(t, "create", "-q", "--json", "-o", filepath.Join(dir, "fail.tar"), "--retries", "1", appA.Repository()+":no-such-tag", "--cache", cache)
	r := jsonResult[bundle.CreateResult](t, stdout)
	if code != 1 || !strings.Contains(r.Error, "no-such-tag") || r.Output == "" {
		t.Errorf("--json of a failed run: exit %d, %+v", code, r)
	}
}

// -o - to a terminal is refused (exit 2) before anything is fetched; the
// same command into a pipe writes the bundle.
func TestCreateRefusesTerminal(t *testing.T) {
	testenv.Acceptance(t)
	testenv.Require(t, "script")
	_, seeded := testenv.SharedSeeded(t)
	appA := seeded.Find(t, testenv.ImageAppA)
	dir := t.TempDir()
	log := filepath.Join(dir, "typescript")
	cmd := exec.Command("script", "-qec", bundleBinary(t)+" create -q -o - "+appA.Ref+" --cache "+filepath.Join(dir, "cache"), log)
	b, err := cmd.CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 2 || !strings.Contains(string(b), "refusing to write a bundle to a terminal") {
		t.Errorf("create -o - on a terminal: %v\n%s", err, b)
	}
	if strings.Contains(string(b), "bundle.json") {
		t.Errorf("bundle bytes reached the terminal")
	}
	stdout, stderr, code := bundleCLI(t, "create", "-q", "-o", "-", appA.Ref, "--cache", filepath.Join(dir, "cache"))
	if code != 0 || !strings.HasPrefix(stdout, "bundle.json") {
		t.Errorf("create -o - into a pipe: exit %d, %d bytes\n%s", code, len(stdout), stderr)
	}
	_ = os.Remove(log)

}
