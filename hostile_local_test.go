package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// plantedSecret is the content of a file planted targets link to; no
// command may print it.
const plantedSecret = "planted-s3cr3t-content"

// Every command (create, verify, list, inventory, load --to oci: with and
// without --dry-run) over every hostile fixture of testdata/hostile and
// every planted target (FIFOs, links to /dev/zero, links out of a layout,
// a link to a secret) ends within a minute, with no stack trace
// ("panic:", "fatal error:", "goroutine ") in its output and without
// printing the secret. It runs the real binary, under a 4 GiB
// address-space limit, so that a read of /dev/zero into memory ends in
// Go's "fatal error: out of memory" at once instead of taking the machine.
func TestHostileCommandsNoStackTrace(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	cur := t // the test or subtest the helpers below fail
	fifo := func(p string) { testenv.PlantFIFO(cur, p) }
	link := func(target, p string) { testenv.PlantLink(cur, target, p) }
	write := func(p string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			cur.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			cur.Fatal(err)
		}
	}
	write(at("secret"), []byte(plantedSecret))

	// A good bundle, and split copies of it with a planted volume 2.
	good, _ := bundletest.Single(t, "docker.io/library/hostile:1", 4<<10, 2, 7).Bytes()
	write(at("good.tar"), good)
	b, err := load.Open(at("good.tar"))
	if err != nil {
		t.Fatal(err)
	}
	var blobHexes []string
	for h := range b.Index.Blobs {
		blobHexes = append(blobHexes, h.Hex)
	}
	b.Close()
	third := len(good) / 3
	for _, kind := range []string{"fifo", "zero"} {
		base := at("split-" + kind + ".tar")
		write(base+".001", good[:third])
		write(base+".003", good[2*third:])
		if kind == "fifo" {
			fifo(base + ".002")
		} else {
			link("/dev/zero", base+".002")
		}
	}
	// .sha256 files that are a FIFO, a link to /dev/zero, a link to the secret.
	for kind, plant := range map[string]func(string){
		"fifo": fifo, "zero": func(p string) { link("/dev/zero", p) }, "secret": func(p string) { link(at("secret"), p) },
	} {
		p := at("sum-" + kind + ".tar")
		write(p, good)
		plant(p + ".sha256")
	}
	// Signature files beside a bundle, and key files, that are a FIFO, a
	// link to /dev/zero, a link to the secret.
	priv, pub, err := bundletest.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	write(at("cosign.key"), priv)
	write(at("cosign.pub"), pub)
	planted := map[string]func(string){
		"fifo": fifo, "zero": func(p string) { link("/dev/zero", p) }, "secret": func(p string) { link(at("secret"), p) },
	}
	for kind, plant := range planted {
		p := at("sig-" + kind + ".tar")
		write(p, good)
		plant(p + ".sigstore.json")
		plant(at("key-" + kind))
	}
	// Inputs of create: a FIFO and a link to /dev/zero.
	fifo(at("input-fifo"))
	link("/dev/zero", at("input-zero"))
	write(at("images.txt"), []byte("127.0.0.1:1/hostile:1\n"))

	// Planted layouts, made anew before each command that uses them.
	layouts := map[string]func(d string){
		"index.json-zero":   func(d string) { link("/dev/zero", filepath.Join(d, "index.json")) },
		"index.json-fifo":   func(d string) { fifo(filepath.Join(d, "index.json")) },
		"oci-layout-zero":   func(d string) { link("/dev/zero", filepath.Join(d, "oci-layout")) },
		"oci-layout-secret": func(d string) { link(at("secret"), filepath.Join(d, "oci-layout")) },
		"blobs-link-out": func(d string) {
			os.Remove(filepath.Join(d, "blobs", "sha256"))
			os.MkdirAll(at("outside"), 0o755)
			link(at("outside"), filepath.Join(d, "blobs", "sha256"))
		},
		"blobs-fifo": func(d string) {
			for _, hx := range blobHexes {
				fifo(filepath.Join(d, "blobs", "sha256", hx))
			}
		},
		"blobs-zero": func(d string) {
			for _, hx := range blobHexes {
				link("/dev/zero", filepath.Join(d, "blobs", "sha256", hx))
			}
		},
	}
	fresh := func(name string) string {
		d := filepath.Join(cur.TempDir(), "oci")
		if err := os.MkdirAll(filepath.Join(d, "blobs", "sha256"), 0o755); err != nil {
			cur.Fatal(err)
		}
		write(filepath.Join(d, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
		layouts[name](d)
		return d
	}

	type run struct {
		name string
		args func() []string
	}
	var runs []run
	add := func(name string, args func() []string) { runs = append(runs, run{name, args}) }
	static := func(args ...string) func() []string { return func() []string { return args } }

	bundles, err := filepath.Glob(filepath.Join(hostileDir, "*"))
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no hostile fixtures in %s: %v", hostileDir, err)
	}
	bundles = append(bundles, at("split-fifo.tar"), at("split-zero.tar"), at("split-fifo.tar.001"),
		at("sum-fifo.tar"), at("sum-zero.tar"), at("sum-secret.tar"),
		at("sig-fifo.tar"), at("sig-zero.tar"), at("sig-secret.tar"))
	for _, in := range bundles {
		n := filepath.Base(in)
		add("verify "+n, static("verify", "-i", in))
		add("verify --key "+n, static("verify", "-i", in, "--key", at("cosign.pub")))
		add("load --key "+n, func() []string {
			return []string{"load", "-q", "-i", in, "--key", at("cosign.pub"), "--to", "oci:" + filepath.Join(t.TempDir(), "oci")}
		})
		add("verify --deep "+n, static("verify", "--deep", "-i", in))
		add("list "+n, static("list", "-i", in))
		add("inventory "+n, static("inventory", "--from", in))
		add("load --dry-run "+n, func() []string {
			return []string{"load", "-q", "--dry-run", "-i", in, "--to", "oci:" + filepath.Join(t.TempDir(), "oci")}
		})
		add("load "+n, func() []string {
			return []string{"load", "-q", "-i", in, "--to", "oci:" + filepath.Join(t.TempDir(), "oci")}
		})
		add("create --base "+n, func() []string {
			return []string{"create", "-q", "--retries", "1", "-f", at("images.txt"), "-o", filepath.Join(t.TempDir(), "out.tar"), "--base", in}
		})
	}
	for name := range layouts {
		add("load into "+name, func() []string { return []string{"load", "-q", "-i", at("good.tar"), "--to", "oci:" + fresh(name)} })
		add("load --dry-run into "+name, func() []string {
			return []string{"load", "-q", "--dry-run", "-i", at("good.tar"), "--to", "oci:" + fresh(name)}
		})
		add("inventory of "+name, func() []string { return []string{"inventory", "--from", "oci:" + fresh(name)} })
	}
	for kind := range planted {
		key := at("key-" + kind)
		add("verify --key planted "+kind, static("verify", "-i", at("good.tar"), "--key", key))
		add("load --key planted "+kind, func() []string {
			return []string{"load", "-q", "-i", at("good.tar"), "--key", key, "--to", "oci:" + filepath.Join(t.TempDir(), "oci")}
		})
		add("create --sign-key planted "+kind, func() []string {
			return []string{"create", "-q", "--retries", "1", "-f", at("images.txt"), "-o", filepath.Join(t.TempDir(), "out.tar"), "--sign-key", key}
		})
	}
	for _, in := range []string{"input-fifo", "input-zero"} {
		p := at(in)
		out := func() string { return filepath.Join(t.TempDir(), "out.tar") }
		add("create -f "+in, func() []string { return []string{"create", "-q", "--retries", "1", "-f", p, "-o", out()} })
		for _, flag := range []string{"--locked", "--have", "--base"} {
			add("create "+flag+" "+in, func() []string {
				return []string{"create", "-q", "--retries", "1", "-f", at("images.txt"), "-o", out(), flag, p}
			})
		}
	}
	for _, kind := range []string{"link", "fifo"} {
		add("create with a planted lock file ("+kind+")", func() []string {
			d := t.TempDir()
			lock := filepath.Join(d, ".out.tar.lock")
			if kind == "link" {
				link(filepath.Join(d, "elsewhere"), lock)
			} else {
				fifo(lock)
			}
			return []string{"create", "-q", "--retries", "1", "-f", at("images.txt"), "-o", filepath.Join(d, "out.tar")}
		})
	}

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			cur = t
			defer func() { cur = nil }()
			args := r.args()
			// ulimit -v: see above. "$0" is the binary.
			c := startBundleWith(t, binaryRun{
				wrap: []string{"/bin/sh", "-c", `ulimit -v 4194304 && exec "$0" "$@"`},
				dir:  t.TempDir(),
				env:  []string{"BUNDLE_CACHE=" + filepath.Join(t.TempDir(), "cache")},
			}, args...)
			c.wait(t, time.Minute)
			out := c.stdout.String() + c.stderr.String()
			if c.killed {
				t.Fatalf("bundle %s has not ended after a minute (it waits on or reads a planted file)\n%s", strings.Join(args, " "), out)
			}
			for _, bad := range []string{"panic:", "fatal error:", "goroutine "} {
				if strings.Contains(out, bad) {
					t.Errorf("bundle %s printed %q:\n%.2000s", strings.Join(args, " "), bad, out)
				}
			}
			if strings.Contains(out, plantedSecret) {
				t.Errorf("bundle %s printed the content of a planted file:\n%s", strings.Join(args, " "), out)
			}
		})
	}
}
