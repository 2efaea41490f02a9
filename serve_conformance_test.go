package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/verify/bundletest"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// conformanceRunner finds the OCI conformance suite that scripts/tools.sh
// builds into the tool dir's bin/ (testenv.LookPath searches it).
func conformanceRunner(t *testing.T) string {
	t.Helper()
	testenv.Require(t, "conformance") // skips, or fails under CI, naming install-deps.sh
	p, _ := testenv.LookPath("conformance")
	return p
}

// The OCI distribution-spec conformance suite, read-only mode (the pull
// and content-discovery workflows over data the bundle holds), passes
// every test it runs against bundle serve, and every read API it knows
// passes (none skipped or disabled but push and delete).
func TestServeConformance(t *testing.T) {
	testenv.Acceptance(t)
	runner := conformanceRunner(t)
	dir := t.TempDir()

	docker, err := bundletest.RandomImage(4096, 2, "linux/amd64", 11)
	if err != nil {
		t.Fatal(err)
	}
	oci, err := bundletest.RandomImage(4096, 1, "linux/arm64/v8", 12)
	if err != nil {
		t.Fatal(err)
	}
	oci = mutate.MediaType(mutate.ConfigMediaType(oci, types.OCIConfigJSON), types.OCIManifestSchema1)
	idx, err := bundletest.RandomIndex(2048, 1, 13, "linux/amd64", "linux/arm64/v8")
	if err != nil {
		t.Fatal(err)
	}
	var refs []bundletest.Ref
	for _, repo := range []string{"conformance/repo1", "conformance/repo2"} {
		refs = append(refs,
			bundletest.Ref{Name: "docker.io/" + repo + ":docker-image", Image: docker},
			bundletest.Ref{Name: "docker.io/" + repo + ":oci-image", Image: oci},
			bundletest.Ref{Name: "docker.io/" + repo + ":index", Index: idx},
			bundletest.Ref{Name: "docker.io/" + repo + ":alias", Image: docker},
		)
	}
	b, err := bundletest.New(refs...)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := b.Bytes()
	path := filepath.Join(dir, "conformance.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var tags, mans, blobs, subjects []string
	add := func(list *[]string, s string) {
		if !slices.Contains(*list, s) {
			*list = append(*list, s)
		}
	}
	for _, im := range b.Index.Images[:4] {
		add(&tags, strings.TrimPrefix(im.Ref, "docker.io/conformance/repo1:"))
		add(&mans, im.Digest.String())
		for _, pm := range im.Manifests {
			add(&mans, pm.Digest.String())
			add(&subjects, pm.Digest.String())
			add(&blobs, pm.Config.String())
			for _, l := range pm.Layers {
				add(&blobs, l.String())
			}
		}
	}

	p := startServe(t, "-i", path)
	run := runConformance(t, runner, dir, p.host, "", tags, mans, blobs, subjects)
	if run.err != nil || !strings.Contains(run.out, "OCI Conformance Result: Pass") || run.counts["FAIL"] != "0" || run.counts["Error"] != "0" || run.counts["Skip"] != "0" || run.counts["Pass"] == "0" {
		t.Fatalf("the conformance suite: %v\nstdout:\n%s\nstderr:\n%s", run.err, run.out, run.stderr)
	}
	out := run.out
	// Every read API passes; only push and delete are disabled.
	for _, api := range []string{"Tag listing", "Blob get", "Blob head", "Manifest get by digest", "Manifest get by tag", "Manifest head by digest", "Manifest head by tag", "Referrers", "Ping"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(api) + `\.*:\s+Pass$`).MatchString(out) {
			t.Errorf("API %q did not pass:\n%s", api, out)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("bundle serve: exit %d after SIGTERM", code)
	}

	// The yardstick is the spec: the same suite, on the same images
	// loaded into distribution 2.8, for the record.
	reg, _ := testenv.SharedSeeded(t)
	prefix := fmt.Sprintf("conformance-%d", time.Now().UnixNano())
	mustBundle(t, "load", "-q", "-i", path, "--to", "docker://"+reg.Host+"/"+prefix)
	d := runConformance(t, runner, t.TempDir(), reg.Host, prefix+"/", tags, mans, blobs, subjects)
	t.Logf("the same suite against distribution 2.8: %s", failures(d.stderr))
}

// conformanceRun is what one run of the suite said.
type conformanceRun struct {
	out, stderr string
	counts      map[string]string
	err         error
}

// runConformance runs the suite in read-only mode against host, whose
// repositories are conformance/repo1 and repo2 under prefix.
func runConformance(t *testing.T, runner, dir, host, prefix string, tags, mans, blobs, subjects []string) conformanceRun {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), runner)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+host,
		"OCI_TLS=disabled",
		"OCI_REPO1="+prefix+"conformance/repo1",
		"OCI_REPO2="+prefix+"conformance/repo2",
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		// Stricter than the default: the blob digest header is required.
		// (Not the manifest one: with read-only data the suite does not
		// keep the manifest answer's headers, and fails any registry.)
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_RO_DATA_TAGS="+strings.Join(tags, " "),
		"OCI_RO_DATA_MANIFESTS="+strings.Join(mans, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(blobs, " "),
		"OCI_RO_DATA_REFERRERS="+strings.Join(subjects, " "),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := conformanceRun{err: cmd.Run(), counts: map[string]string{}}
	r.out, r.stderr = stdout.String(), stderr.String()
	for _, m := range regexp.MustCompile(`(?m)^  (Pass|Skip|Disabled|FAIL|Error|Total)\.*:\s+(\d+)$`).FindAllStringSubmatch(r.out, -1) {
		r.counts[m[1]] = m[2]
	}
	t.Logf("conformance against %s (%d tags, %d manifests, %d blobs, %d referrer subjects): pass %s, fail %s, error %s, skip %s, disabled %s, total %s",
		host, len(tags), len(mans), len(blobs), len(subjects), r.counts["Pass"], r.counts["FAIL"], r.counts["Error"], r.counts["Skip"], r.counts["Disabled"], r.counts["Total"])
	// This version of the suite, in read-only mode, prints its report and
	// then dies writing results.yaml (a nil entry for the push tests it
	// skipped: run.go, ReportResultsYAML), whatever the registry; its
	// exit code says nothing then, the report does.
	if r.err != nil && strings.Contains(r.stderr, "main.(*runner).ReportResultsYAML") {
		t.Logf("the suite panicked writing results.yaml after its report (a bug of its read-only mode): %v", r.err)
		r.err = nil
	}
	return r
}

// failures lists the names of the failed tests in the suite's log.
func failures(stderr string) string {
	var out []string
	for _, m := range regexp.MustCompile(`msg="failed test" name="OCI Conformance Test/([^"]+)"`).FindAllStringSubmatch(stderr, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		return "no test failed"
	}
	return "failed " + strings.Join(out, ", ")
}
