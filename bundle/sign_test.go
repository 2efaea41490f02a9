package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// keyFiles writes a new key pair to dir (name.key, name.pub) and returns
// the private key and the public key's path.
func keyFiles(t *testing.T, dir, name string) (*sign.PrivateKey, string) {
	t.Helper()
	priv, pub, err := bundletest.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name+".key"), priv, 0o600)
	p := filepath.Join(dir, name+".pub")
	os.WriteFile(p, pub, 0o644)
	k, err := sign.ParsePrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

func signedBundle(t *testing.T, k *sign.PrivateKey, seed int64) (*bundletest.Bundle, []byte) {
	t.Helper()
	img, err := bundletest.RandomImage(1024, 2, "linux/amd64", seed)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundletest.New(bundletest.Ref{Name: "registry.local/app:1", Image: img})
	if err != nil {
		t.Fatal(err)
	}
	var sig []byte
	if k != nil {
		if sig, err = b.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	return b, sig
}

// write puts data at dir/images.tar with its .sha256 (as create does) and
// the sidecar when given.
func write(t *testing.T, dir string, data, sidecar []byte) string {
	t.Helper()
	p := filepath.Join(dir, "images.tar")
	os.WriteFile(p, data, 0o644)
	os.WriteFile(p+".sha256", []byte(bundletest.ChecksumLine(data, "images.tar")), 0o644)
	if sidecar != nil {
		os.WriteFile(p+SidecarSuffix, sidecar, 0o644)
	}
	return p
}

// With --key, verify and load (from the file, gzip-compressed, and split)
// refuse, before anything is written to the target, a bundle that is
// unsigned, signed by another key, changed after signing (its .sha256
// written again to match), with a truncated signature entry, or with the
// signature of another bundle beside it; and accept one signed by any of
// the keys, from the entry or from the file beside it alone.
func TestSignedBundleRefusals(t *testing.T) {
	keyDir := t.TempDir()
	key, pub := keyFiles(t, keyDir, "cosign")
	other, otherPub := keyFiles(t, keyDir, "other")
	_ = other
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T) (data, sidecar []byte)
		keys    []string
		problem string // "" when it loads
	}{
		{"unsigned", func(t *testing.T) ([]byte, []byte) { b, _ := signedBundle(t, nil, 1); d, _ := b.Bytes(); return d, nil },
			[]string{pub}, "the bundle is not signed"},
		{"signed by another key", func(t *testing.T) ([]byte, []byte) { b, s := signedBundle(t, key, 1); d, _ := b.Bytes(); return d, s },
			[]string{otherPub}, "bundle.sigstore.json: does not verify with the key"},
		{"bundle.json changed after signing", func(t *testing.T) ([]byte, []byte) {
			b, s := signedBundle(t, key, 1)
			b.Index.Images[0].FetchedFrom = "evil.example.com/app:1"
			b.SetIndex()
			d, _ := b.Bytes()
			return d, s
		}, []string{pub}, "bundle.sigstore.json: signs another bundle.json"},
		{"truncated signature entry", func(t *testing.T) ([]byte, []byte) {
			b, s := signedBundle(t, key, 1)
			i := b.Find(tarball.SignatureFile)
			b.Entries[i].Data = b.Entries[i].Data[:100]
			d, _ := b.Bytes()
			return d, s
		}, []string{pub}, "bundle.sigstore.json: not a signature bundle reads"},
		{"sidecar of another bundle", func(t *testing.T) ([]byte, []byte) {
			b, _ := signedBundle(t, nil, 1)
			_, s := signedBundle(t, key, 2)
			d, _ := b.Bytes()
			return d, s
		}, []string{pub}, ".sigstore.json: signs another bundle.json: it belongs to another bundle"},
		{"signed", func(t *testing.T) ([]byte, []byte) { b, s := signedBundle(t, key, 1); d, _ := b.Bytes(); return d, s },
			[]string{otherPub, pub}, ""},
		{"sidecar alone", func(t *testing.T) ([]byte, []byte) {
			b, s := signedBundle(t, key, 1)
			b.Remove(tarball.SignatureFile)
			d, _ := b.Bytes()
			return d, s
		}, []string{pub}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, sidecar := tc.make(t)
			dir := t.TempDir()
			plain := write(t, dir, data, sidecar)
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(data)
			zw.Close()
			gzDir := t.TempDir()
			gzPath := filepath.Join(gzDir, "images.tar.gz")
			os.WriteFile(gzPath, gz.Bytes(), 0o644)
			if sidecar != nil {
				os.WriteFile(gzPath+SidecarSuffix, sidecar, 0o644)
			}
			splitDir := t.TempDir()
			split := filepath.Join(splitDir, "images.tar")
			for i, n := 0, 1; i < len(data); i, n = i+4096, n+1 {
				os.WriteFile(tarball.VolumeName(split, n), data[i:min(i+4096, len(data))], 0o644)
			}
			if sidecar != nil {
				os.WriteFile(split+SidecarSuffix, sidecar, 0o644)
			}
			for _, in := range []string{plain, gzPath, tarball.VolumeName(split, 1)} {
				res, err := Verify(context.Background(), VerifyOptions{Input: in, Keys: tc.keys})
				if err != nil {
					t.Fatalf("%s: Verify: %v", in, err)
				}
				if tc.problem == "" {
					if !res.Report.Intact || !res.Report.Signature.Verified || res.Report.Signature.KeyID != key.Public().ID() {
						t.Errorf("%s: Verify: intact %v, signature %+v, findings %v", in, res.Report.Intact, res.Report.Signature, res.Report.Findings)
					}
				} else if res.Report.Intact || !strings.Contains(findingsText(res.Report), tc.problem) {
					t.Errorf("%s: Verify: intact %v, findings %v; want %q", in, res.Report.Intact, res.Report.Findings, tc.problem)
				}
				out := filepath.Join(t.TempDir(), "oci")
				lr, err := Load(context.Background(), LoadOptions{Input: in, To: "oci:" + out, Keys: tc.keys})
				if tc.problem == "" {
					if err != nil || lr.Verified.Signature == nil || !lr.Verified.Signature.Verified {
						t.Errorf("%s: Load: %v (%+v)", in, err, lr)
					}
					continue
				}
				var ce *CorruptError
				if !errors.As(err, &ce) || !IsLoadCorrupt(err) || !strings.Contains(err.Error(), tc.problem) {
					t.Errorf("%s: Load: %v, want a CorruptError saying %q", in, err, tc.problem)
				}
				if _, err := os.Lstat(out); err == nil {
					t.Errorf("%s: Load wrote %s", in, out)
				}
			}
		})
	}
}

func findingsText(rep *verify.Report) string {
	var s []string
	for _, f := range rep.Findings {
		s = append(s, f.String())
	}
	return strings.Join(s, "\n")
}

// A key file that cannot verify or sign is one error, before anything is
// read or written: verify and load with a private key or a missing file as
// --key, create with a wrong password, a public key, or an RSA key as
// --sign-key. create claims no output and reads no manifest file first.
func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	_, pub := keyFiles(t, dir, "k")
	p := write(t, t.TempDir(), func() []byte { b, _ := signedBundle(t, nil, 1); d, _ := b.Bytes(); return d }(), nil)
	for _, keyPath := range []string{filepath.Join(dir, "k.key"), filepath.Join(dir, "missing.pub")} {
		if _, err := Verify(context.Background(), VerifyOptions{Input: p, Keys: []string{pub, keyPath}}); err == nil || !strings.Contains(err.Error(), keyPath+": ") {
			t.Errorf("Verify --key %s: %v", keyPath, err)
		}
		out := filepath.Join(t.TempDir(), "oci")
		if _, err := Load(context.Background(), LoadOptions{Input: p, To: "oci:" + out, Keys: []string{keyPath}}); err == nil || !strings.Contains(err.Error(), keyPath+": ") {
			t.Errorf("Load --key %s: %v", keyPath, err)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("Load wrote %s", out)
		}
	}

	spec := filepath.Join(dir, "images.yaml")
	os.WriteFile(spec, []byte("images:\n  - registry.invalid/app:1\n"), 0o644)
	cosignKey, err := os.ReadFile(filepath.Join("..", "sign", "testdata", "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cosign.key"), cosignKey, 0o600)
	rsaKey := filepath.Join(dir, "rsa.key")
	os.WriteFile(rsaKey, []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	for _, tc := range []struct{ key, password, want string }{
		{filepath.Join(dir, "cosign.key"), "wrong", "wrong password"},
		{pub, "", "a public key, not a signing key"},
		{rsaKey, "", "an RSA key"},
	} {
		outDir := t.TempDir()
		_, err := Create(context.Background(), CreateOptions{
			File: spec, Output: filepath.Join(outDir, "images.tar"), CacheDir: filepath.Join(outDir, "cache"),
			SignKey: tc.key, Password: func() ([]byte, error) { return []byte(tc.password), nil },
		})
		var ke *sign.KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), tc.key+": ") {
			t.Errorf("Create --sign-key %s: %v, want a *sign.KeyError naming it and saying %q", tc.key, err, tc.want)
		}
		if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
			t.Errorf("Create wrote %v", ents)
		}
	}
}

// A signed bundle's signature is written beside it at commit, for a file,
// split volumes and gzip, atomically; an unsigned commit removes the one
// an earlier signed bundle of the name left.
func TestSidecarOutput(t *testing.T) {
	for _, oo := range []OutputOptions{{}, {VolumeSize: 1000}, {Gzip: true}, {Gzip: true, VolumeSize: 1000}} {
		dir := t.TempDir()
		out := filepath.Join(dir, "images.tar")
		if oo.Gzip {
			out += ".gz"
		}
		for _, sig := range [][]byte{[]byte("signature\n"), nil} {
			o, err := openBundleOutput(CreateOptions{Output: out, OutputOptions: oo})
			if err != nil {
				t.Fatal(err)
			}
			o.sign(sig)
			writeAll(t, o, testData(5000))
			if _, _, err := o.commit(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out + SidecarSuffix)
			switch {
			case sig != nil && !bytes.Equal(got, sig):
				t.Errorf("%+v: sidecar %q, %v", oo, got, err)
			case sig == nil && !errors.Is(err, os.ErrNotExist):
				t.Errorf("%+v: an unsigned commit left %s (%v)", oo, out+SidecarSuffix, err)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("%+v: temp file %s left", oo, e.Name())
				}
			}
		}
	}
}

// From a pipe there is no file beside the bundle: the entry alone must
// verify.
func TestSignedBundleFromStdin(t *testing.T) {
	dir := t.TempDir()
	key, pub := keyFiles(t, dir, "cosign")
	signed, _ := signedBundle(t, key, 1)
	unsigned, _ := signedBundle(t, nil, 1)
	for _, tc := range []struct {
		name string
		b    *bundletest.Bundle
		ok   bool
	}{{"signed", signed, true}, {"unsigned", unsigned, false}} {
		data, _ := tc.b.Bytes()
		res, err := Verify(context.Background(), VerifyOptions{Input: "-", Stdin: bytes.NewReader(data), Keys: []string{pub}})
		if err != nil || res.Report.Intact != tc.ok {
			t.Errorf("%s: Verify from stdin: %v, intact %v", tc.name, err, res != nil && res.Report.Intact)
		}
		out := filepath.Join(t.TempDir(), "oci")
		_, err = Load(context.Background(), LoadOptions{Input: "-", Stdin: bytes.NewReader(data), To: "oci:" + out, Keys: []string{pub}})
		if (err == nil) != tc.ok || (!tc.ok && !IsLoadCorrupt(err)) {
			t.Errorf("%s: Load from stdin: %v", tc.name, err)
		}
		if _, serr := os.Lstat(out); !tc.ok && serr == nil {
			t.Errorf("%s: Load wrote %s", tc.name, out)
		}
	}
}
