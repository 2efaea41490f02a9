package verify_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

var update = flag.Bool("update", false, "rewrite the fixtures in ../testdata/verify")

const fixtureDir = "../testdata/verify"

// fixture is a bundle file kept in testdata/verify for the CLI scripts
// (testdata/script/verify_*.txtar), with the finding verify must report.
type fixture struct {
	name string
	data func(t *testing.T) []byte
	sum  func(t *testing.T) []byte // the .sha256 beside it, or nil
	code verify.Code               // "" for an intact bundle
}

func fixtureBundle(t *testing.T) *bundletest.Bundle {
	t.Helper()
	app := bundletest.MustImage(t, 300, 2, "linux/amd64", 100)
	return bundletest.Must(t,
		bundletest.Ref{Name: "docker.io/library/app:1", Image: app},
		bundletest.Ref{Name: "docker.io/library/app:latest", Image: app},
		bundletest.Ref{Name: "registry.example.com:5000/team/multi:2", Index: bundletest.MustIndex(t, 200, 1, 110, "linux/amd64", "linux/arm64/v8")},
	)
}

func fixtures() []fixture {
	valid := func(t *testing.T) []byte { d, _ := fixtureBundle(t).Bytes(); return d }
	validSum := func(name string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return []byte(bundletest.ChecksumLine(valid(t), name)) }
	}
	firstLayer := func(b *bundletest.Bundle) string { return tarball.BlobPath(b.Index.Images[0].Manifests[0].Layers[0]) }
	hexID := strings.Repeat("3f", 32)
	return []fixture{
		{name: "valid.tar", data: valid, sum: validSum("valid.tar")},
		{name: "valid.tar.gz", data: func(t *testing.T) []byte {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(valid(t))
			zw.Close()
			return buf.Bytes()
		}},
		{name: "corrupt-layer.tar", sum: validSum("corrupt-layer.tar"), code: verify.CodeDigest, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			d, off := b.Bytes()
			d[off[firstLayer(b)]+100] ^= 0x20
			return d
		}},
		{name: "truncated.tar", code: verify.CodeTruncated, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			d, off := b.Bytes()
			return d[:off[firstLayer(b)]+50]
		}},
		{name: "missing-blob.tar", code: verify.CodeMissing, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			b.Remove(firstLayer(b))
			d, _ := b.Bytes()
			return d
		}},
		{name: "hostile-dotdot.tar", code: verify.CodeEntry, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			b.Entries = append(b.Entries, bundletest.Entry{Name: "../../etc/cron.d/evil", Data: []byte("* * * * * root true\n")})
			d, _ := b.Bytes()
			return d
		}},
		{name: "hostile-symlink.tar", code: verify.CodeEntry, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			b.Entries = append(b.Entries, bundletest.Entry{Name: "blobs/sha256/" + hexID, Type: tar.TypeSymlink, Linkname: "/etc/shadow"})
			d, _ := b.Bytes()
			return d
		}},
		{name: "legacy.tar", data: func(t *testing.T) []byte {
			// As written before bundle.json listed metadata, with a
			// repositories entry: read as it was, with a note.
			b := fixtureBundle(t)
			if err := b.Legacy(); err != nil {
				t.Fatal(err)
			}
			if err := b.SetEntry(tarball.RepositoriesFile, []byte(`{"app":{"1":"`+hexID+`"}}`)); err != nil {
				t.Fatal(err)
			}
			d, _ := b.Bytes()
			return d
		}},
		{name: "unlisted-entry.tar", code: verify.CodeEntry, data: func(t *testing.T) []byte {
			b := fixtureBundle(t)
			i := b.Find(tarball.DockerManifest) + 1
			b.Entries = append(b.Entries[:i], append([]bundletest.Entry{{Name: tarball.RepositoriesFile, Data: []byte(`{"app":{"1":"` + hexID + `"}}`)}}, b.Entries[i:]...)...)
			d, _ := b.Bytes()
			return d
		}},
		{name: "changed-index-json.tar", code: verify.CodeDigest, data: func(t *testing.T) []byte {
			// index.json re-indented: what it says still agrees with
			// bundle.json, but its bytes are not those bundle.json lists.
			b := fixtureBundle(t)
			i := b.Find(tarball.OCIIndexFile)
			var out bytes.Buffer
			if err := json.Indent(&out, b.Entries[i].Data, "", " "); err != nil {
				t.Fatal(err)
			}
			b.Entries[i].Data = out.Bytes()
			d, _ := b.Bytes()
			return d
		}},
		{name: "docker-save.tar", code: verify.CodeNotBundle, data: func(t *testing.T) []byte {
			return bundletest.Tar(
				bundletest.Entry{Name: hexID + "/", Type: tar.TypeDir},
				bundletest.Entry{Name: hexID + "/VERSION", Data: []byte("1.0")},
				bundletest.Entry{Name: hexID + "/json", Data: []byte("{}")},
				bundletest.Entry{Name: hexID + "/layer.tar", Data: bundletest.Tar(bundletest.Entry{Name: "hello", Data: []byte("hello\n")})},
				bundletest.Entry{Name: strings.Repeat("4e", 32) + ".json", Data: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)},
				bundletest.Entry{Name: "manifest.json", Data: []byte(`[{"Config":"` + strings.Repeat("4e", 32) + `.json","RepoTags":["hello:1"],"Layers":["` + hexID + `/layer.tar"]}]`)},
				bundletest.Entry{Name: "repositories", Data: []byte(`{"hello":{"1":"` + hexID + `"}}`)},
			)
		}},
	}
}

// TestFixtures checks the fixtures in testdata/verify give the verdicts the
// CLI scripts expect; with -update it writes them first.
func TestFixtures(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			path := filepath.Join(fixtureDir, fx.name)
			if *update {
				if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, fx.data(t), 0o644); err != nil {
					t.Fatal(err)
				}
				if fx.sum != nil {
					if err := os.WriteFile(path+".sha256", fx.sum(t), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./verify -run TestFixtures -update)", err)
			}
			var opts verify.Options
			if sf, err := os.Open(path + ".sha256"); err == nil {
				opts.FileSHA256, err = verify.ParseChecksumFile(sf, path)
				sf.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, deep := range []bool{false, true} {
				opts.Deep = deep
				rep, err := verify.Verify(context.Background(), bytes.NewReader(data), opts)
				if err != nil {
					t.Fatal(err)
				}
				if fx.code == "" {
					mustDeep(t, rep)
					continue
				}
				want(t, rep, fx.code, "", "")
			}
		})
	}
}
