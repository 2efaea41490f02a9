package sign_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/bundle-tool/bundle/sign"
)

// FuzzParseSignature: a signature file of any content is parsed or refused
// with a *SignatureError, never a panic, and what parses is bounded.
func FuzzParseSignature(f *testing.F) {
	for _, name := range []string{"message.sigstore.json", "message.cosign-bundle.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.3","verificationMaterial":{"publicKey":{"hint":""},"tlogEntries":[]},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AA"},"signature":"AA=="}}`))
	pubData, err := os.ReadFile(filepath.Join("testdata", "cosign.pub"))
	if err != nil {
		f.Fatal(err)
	}
	pub, err := sign.ParsePublicKey(pubData)
	if err != nil {
		f.Fatal(err)
	}
	msg := sha256.Sum256([]byte("m"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := sign.ParseSignature(data)
		if err != nil {
			if _, ok := err.(*sign.SignatureError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if s.Format != sign.FormatSigstore && s.Format != sign.FormatCosignBlob {
			t.Fatalf("format %q", s.Format)
		}
		if (s.Format == sign.FormatSigstore) != (len(s.Digest) == sha256.Size) || len(s.Sig) == 0 || len(s.Sig) > 256 {
			t.Fatalf("digest of %d bytes, signature of %d", len(s.Digest), len(s.Sig))
		}
		_, _ = s.Verify(msg, []*sign.PublicKey{pub})
	})
}

// FuzzParsePublicKey: a public key file of any content gives a P-256 key
// with a hex key id, or a *KeyError.
func FuzzParsePublicKey(f *testing.F) {
	for _, name := range []string{"cosign.pub", "cosign.key"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := sign.ParsePublicKey(data)
		if err != nil {
			if _, ok := err.(*sign.KeyError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if b, err := hex.DecodeString(k.ID()); err != nil || len(b) != sha256.Size {
			t.Fatalf("key id %q", k.ID())
		}
	})
}
