package verify_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

func newKey(t testing.TB) *sign.PrivateKey {
	t.Helper()
	priv, _, err := bundletest.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := sign.ParsePrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Every way a signature can fail to prove the bundle, with and without
// keys: the finding names the entry or file, and only a signature by one
// of the keys over this very bundle.json passes with keys.
func TestVerifySignature(t *testing.T) {
	key, other := newKey(t), newKey(t)
	both := []*sign.PublicKey{other.Public(), key.Public()}
	signed := func(t *testing.T) (*bundletest.Bundle, []byte) {
		b := newBundle(t)
		sig, err := b.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return b, sig
	}
	otherBundle := func(t *testing.T) []byte {
		b := newBundle(t)
		b.Index.Created = "2001-01-01T00:00:00Z"
		b.SetIndex()
		sig, _ := b.Sign(key)
		return sig
	}
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T) (data, sidecar []byte)
		keys    []*sign.PublicKey
		problem string // "" for intact
		entry   string
		keyID   string // the key that verified, when keys are given and it passes
		hints   int    // signatures found
	}{
		{name: "unsigned, no keys", make: func(t *testing.T) ([]byte, []byte) { d, _ := newBundle(t).Bytes(); return d, nil }},
		{name: "unsigned, keys", make: func(t *testing.T) ([]byte, []byte) { d, _ := newBundle(t).Bytes(); return d, nil },
			keys: both, problem: "the bundle is not signed: it has no bundle.sigstore.json entry and no images.tar.sigstore.json beside it"},
		{name: "signed, no keys", make: func(t *testing.T) ([]byte, []byte) { b, _ := signed(t); d, _ := b.Bytes(); return d, nil }, hints: 1},
		{name: "signed, the key", make: func(t *testing.T) ([]byte, []byte) { b, _ := signed(t); d, _ := b.Bytes(); return d, nil },
			keys: []*sign.PublicKey{key.Public()}, keyID: key.Public().ID(), hints: 1},
		{name: "signed, one of two keys", make: func(t *testing.T) ([]byte, []byte) { b, s := signed(t); d, _ := b.Bytes(); return d, s },
			keys: both, keyID: key.Public().ID(), hints: 2},
		{name: "signed by another key", make: func(t *testing.T) ([]byte, []byte) { b, _ := signed(t); d, _ := b.Bytes(); return d, nil },
			keys: []*sign.PublicKey{other.Public()}, problem: "bundle.sigstore.json: does not verify with the key " + other.Public().ID(), hints: 1},
		{name: "bundle.json changed after signing", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			b.Index.Images[0].FetchedFrom = "evil.example.com/app:1"
			b.SetIndex()
			d, _ := b.Bytes()
			return d, nil
		}, problem: "signs another bundle.json: bundle.json changed after it was signed", entry: tarball.SignatureFile, hints: 1},
		{name: "bundle.json changed after signing, keys", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			b.Index.Images[0].FetchedFrom = "evil.example.com/app:1"
			b.SetIndex()
			d, _ := b.Bytes()
			return d, nil
		}, keys: both, problem: "signs another bundle.json: bundle.json changed after it was signed", entry: tarball.SignatureFile, hints: 1},
		{name: "truncated signature entry", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			i := b.Find(tarball.SignatureFile)
			b.Entries[i].Data = b.Entries[i].Data[:len(b.Entries[i].Data)/2]
			d, _ := b.Bytes()
			return d, nil
		}, problem: "not a signature bundle reads: it does not parse", entry: tarball.SignatureFile, hints: 1},
		{name: "truncated signature entry, keys", make: func(t *testing.T) ([]byte, []byte) {
			b, s := signed(t)
			i := b.Find(tarball.SignatureFile)
			b.Entries[i].Data = b.Entries[i].Data[:len(b.Entries[i].Data)/2]
			d, _ := b.Bytes()
			return d, s // a good sidecar does not make up for it
		}, keys: both, problem: "not a signature bundle reads: it does not parse", entry: tarball.SignatureFile, hints: 2},
		{name: "sidecar of another bundle", make: func(t *testing.T) ([]byte, []byte) { d, _ := newBundle(t).Bytes(); return d, otherBundle(t) },
			keys: both, problem: "signs another bundle.json: it belongs to another bundle", entry: "images.tar.sigstore.json", hints: 1},
		{name: "sidecar of another bundle, no keys", make: func(t *testing.T) ([]byte, []byte) { d, _ := newBundle(t).Bytes(); return d, otherBundle(t) },
			problem: "signs another bundle.json: it belongs to another bundle", entry: "images.tar.sigstore.json", hints: 1},
		{name: "sidecar only", make: func(t *testing.T) ([]byte, []byte) {
			b, s := signed(t)
			b.Remove(tarball.SignatureFile)
			d, _ := b.Bytes()
			return d, s
		}, keys: both, keyID: key.Public().ID(), hints: 1},
		{name: "sidecar by another key, keys", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			d, _ := b.Bytes()
			s, _ := other.Sign(b.Entries[b.Find(tarball.IndexFile)].Data)
			return d, s
		}, keys: []*sign.PublicKey{key.Public()}, problem: "does not verify with the key " + key.Public().ID(), entry: "images.tar.sigstore.json", hints: 2},
		{name: "cosign's older format over another bundle.json, keys", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			d, _ := b.Bytes()
			s, _ := sign.ParseSignature(otherBundle(t))
			return d, []byte(`{"base64Signature":"` + base64.StdEncoding.EncodeToString(s.Sig) + `"}`)
		}, keys: both, problem: "does not verify with any of the keys", entry: "images.tar.sigstore.json", hints: 2},
		{name: "sidecar not a signature", make: func(t *testing.T) ([]byte, []byte) { b, _ := signed(t); d, _ := b.Bytes(); return d, []byte("{}") },
			keys: both, problem: "no mediaType", entry: "images.tar.sigstore.json", hints: 2},
		{name: "legacy bundle signed, keys", make: func(t *testing.T) ([]byte, []byte) {
			b := newBundle(t)
			b.Legacy()
			b.Sign(key)
			d, _ := b.Bytes()
			return d, nil
		}, keys: both, problem: "bundle.json lists no metadata", entry: tarball.IndexFile, hints: 1},
		{name: "signature entry not second", make: func(t *testing.T) ([]byte, []byte) {
			b, _ := signed(t)
			i := b.Find(tarball.SignatureFile)
			e := b.Entries[i]
			b.Remove(tarball.SignatureFile)
			j := b.Find(tarball.DockerManifest) + 1
			b.Entries = append(b.Entries[:j], append([]bundletest.Entry{e}, b.Entries[j:]...)...)
			d, _ := b.Bytes()
			return d, nil
		}, problem: "not right after bundle.json", entry: tarball.SignatureFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, sidecar := tc.make(t)
			opts := verify.Options{Keys: tc.keys, Sidecar: sidecar, SidecarFile: "images.tar.sigstore.json"}
			rep := run(t, data, opts)
			if tc.problem == "" {
				mustDeep(t, rep)
			} else {
				var f verify.Finding
				for _, g := range rep.Findings {
					if strings.Contains(g.String(), tc.problem) {
						f = g
					}
				}
				if f.Problem == "" || (tc.entry != "" && f.Entry != tc.entry) || rep.Intact {
					t.Fatalf("want a finding of %q saying %q; intact %v, findings:\n%s", tc.entry, tc.problem, rep.Intact, findings(rep))
				}
				if len(rep.Findings) != 1 {
					t.Errorf("want that finding alone:\n%s", findings(rep))
				}
			}
			s := rep.Signature
			if s != nil && len(s.Signatures) != tc.hints || s == nil && tc.hints != 0 {
				t.Errorf("signatures found: %+v, want %d", s, tc.hints)
			}
			if tc.keyID != "" && (s == nil || !s.Verified || s.KeyID != tc.keyID || !s.Checked) {
				t.Errorf("signature report %+v, want verified with %s", s, tc.keyID)
			}
			if tc.keyID == "" && s != nil && s.Verified {
				t.Errorf("signature report %+v says verified", s)
			}
			if len(tc.keys) == 0 && s != nil && s.Checked {
				t.Errorf("checked without keys: %+v", s)
			}
		})
	}
}

// tarball's limit on the entry is sign's limit on the file.
func TestSignatureLimits(t *testing.T) {
	if tarball.MaxSignatureSize != sign.MaxSignatureSize {
		t.Errorf("tarball.MaxSignatureSize %d, sign.MaxSignatureSize %d", tarball.MaxSignatureSize, sign.MaxSignatureSize)
	}
	b := newBundle(t)
	b.Sign(newKey(t))
	b.Entries[b.Find(tarball.SignatureFile)].Data = bytes.Repeat([]byte(" "), tarball.MaxSignatureSize+1)
	data, _ := b.Bytes()
	want(t, run(t, data, verify.Options{}), verify.CodeEntry, tarball.SignatureFile, "")
}
