package sign_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/sign"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// testdata/ was written by cosign v2.6.5 (COSIGN_PASSWORD=bundle-test):
//
//	cosign generate-key-pair
//	cosign sign-blob --key cosign.key --bundle message.sigstore.json --new-bundle-format --tlog-upload=false -y message.json
//	cosign sign-blob --key cosign.key --bundle message.cosign-bundle.json --tlog-upload=false -y message.json
const cosignPassword = "bundle-test"

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func password(pw string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(pw), nil }
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyID(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// A key cosign made opens with its password, and is the key of cosign.pub;
// what cosign signed with it verifies, in both of cosign's bundle formats.
func TestCosignKeyFiles(t *testing.T) {
	priv, err := sign.ReadPrivateKey(filepath.Join("testdata", "cosign.key"), password(cosignPassword))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.ReadPublicKey(filepath.Join("testdata", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if priv.Public().ID() != pub.ID() || len(pub.ID()) != 64 {
		t.Fatalf("key ids: private %s, public %s", priv.Public().ID(), pub.ID())
	}
	block, _ := pem.Decode(read(t, "cosign.pub"))
	if want := hexSHA256(block.Bytes); pub.ID() != want {
		t.Errorf("key id %s, want the sha256 of the PKIX DER %s", pub.ID(), want)
	}
	msg := sha256.Sum256(read(t, "message.json"))
	for _, name := range []string{"message.sigstore.json", "message.cosign-bundle.json"} {
		s, err := sign.ParseSignature(read(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		k, err := s.Verify(msg, []*sign.PublicKey{pub})
		if err != nil || k != pub {
			t.Errorf("%s: Verify: %v, %v", name, k, err)
		}
		if name == "message.sigstore.json" {
			if s.Format != sign.FormatSigstore || !s.Covers(msg) || s.Hint != pub.ID() {
				t.Errorf("%s: format %s, covers %v, hint %s (want %s)", name, s.Format, s.Covers(msg), s.Hint, pub.ID())
			}
		} else if s.Format != sign.FormatCosignBlob || s.Covers(msg) || s.Hint != "" {
			t.Errorf("%s: format %s, covers %v, hint %q", name, s.Format, s.Covers(msg), s.Hint)
		}
		other := sha256.Sum256([]byte("another message"))
		if _, err := s.Verify(other, []*sign.PublicKey{pub}); !errors.Is(err, sign.ErrNoKeyVerifies) {
			t.Errorf("%s over another message: %v", name, err)
		}
	}
}

func hexSHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestWrongPassword(t *testing.T) {
	for _, pw := range []string{"", "bundle-tesT", cosignPassword + "\n"} {
		_, err := sign.ReadPrivateKey(filepath.Join("testdata", "cosign.key"), password(pw))
		if !errors.Is(err, sign.ErrWrongPassword) {
			t.Errorf("password %q: %v, want ErrWrongPassword", pw, err)
		}
		if err != nil && (!strings.HasPrefix(err.Error(), filepath.Join("testdata", "cosign.key")+": ") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("not one line naming the file: %q", err)
		}
	}
	asked := errors.New("no terminal")
	if _, err := sign.ReadPrivateKey(filepath.Join("testdata", "cosign.key"), func() ([]byte, error) { return nil, asked }); !errors.Is(err, asked) {
		t.Errorf("password error: %v", err)
	}
	if _, err := sign.ReadPrivateKey(filepath.Join("testdata", "cosign.key"), nil); err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Errorf("no password: %v", err)
	}
}

// encryptCosign makes a key file in cosign's encrypted format, written
// here from the format (scrypt, then nacl/secretbox over the PKCS#8 DER).
func encryptCosign(t *testing.T, der []byte, pw string, n int) []byte {
	t.Helper()
	salt := make([]byte, 32)
	rand.Read(salt)
	var nonce [24]byte
	rand.Read(nonce[:])
	k, err := scrypt.Key([]byte(pw), salt, n, 8, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], k)
	doc := map[string]any{
		"kdf":        map[string]any{"name": "scrypt", "params": map[string]int{"N": n, "r": 8, "p": 1}, "salt": salt},
		"cipher":     map[string]any{"name": "nacl/secretbox", "nonce": nonce[:]},
		"ciphertext": secretbox.Seal(nil, der, &nonce, &key),
	}
	data, _ := json.Marshal(doc)
	return pemOf("ENCRYPTED SIGSTORE PRIVATE KEY", data)
}

func TestKeyFormats(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkix, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	id := keyID(t, &ec.PublicKey)
	for name, data := range map[string][]byte{
		"pkcs8":           pemOf("PRIVATE KEY", pkcs8),
		"sec1":            pemOf("EC PRIVATE KEY", sec1),
		"cosign":          encryptCosign(t, pkcs8, "pw", 1<<15),
		"cosign, old PEM": bytes.Replace(encryptCosign(t, pkcs8, "pw", 1<<15), []byte("SIGSTORE"), []byte("COSIGN"), 2),
		"text around":     append(append([]byte("a comment\n"), pemOf("PRIVATE KEY", pkcs8)...), "trailer\n"...),
	} {
		k, err := sign.ParsePrivateKey(data, password("pw"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if k.Public().ID() != id {
			t.Errorf("%s: id %s, want %s", name, k.Public().ID(), id)
		}
	}
	pub, err := sign.ParsePublicKey(pemOf("PUBLIC KEY", pkix))
	if err != nil || pub.ID() != id {
		t.Fatalf("public key: %v, %v", pub, err)
	}

	// Keys that do not sign with ECDSA P-256: one clear error each.
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	xKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	der := func(k any) []byte {
		d, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pubDER := func(k any) []byte {
		d, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
		public     bool // ParsePublicKey, not ParsePrivateKey
	}{
		{"rsa pkcs8", "an RSA 1024 key: bundle signs with ECDSA P-256 keys only", pemOf("PRIVATE KEY", der(rsaKey)), false},
		{"rsa pkcs1", "an RSA key", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), false},
		{"p384", "an ECDSA P-384 key", pemOf("PRIVATE KEY", der(p384)), false},
		{"p384 sec1", "an ECDSA P-384 key", pemOf("EC PRIVATE KEY", func() []byte { d, _ := x509.MarshalECPrivateKey(p384); return d }()), false},
		{"ed25519", "an Ed25519 key", pemOf("PRIVATE KEY", der(edKey)), false},
		{"x25519", "an X25519 key, not a signing key", pemOf("PRIVATE KEY", der(xKey)), false},
		{"public as private", "a public key, not a signing key", pemOf("PUBLIC KEY", pkix), false},
		{"encrypted pkcs8", "an encrypted PKCS#8 key", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), false},
		{"not pem", "not a PEM key file", []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), false},
		{"empty", "not a PEM key file", nil, false},
		{"garbage der", "does not parse", pemOf("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}), false},
		{"odd scrypt", "scrypt parameters (N=1048576", encryptCosign(t, pkcs8, "pw", 1<<14)[:0], false},
		{"private as public", "a private key, not a public key", pemOf("PRIVATE KEY", pkcs8), true},
		{"cosign key as public", "a private key, not a public key", read(t, "cosign.key"), true},
		{"rsa public", "an RSA 1024 key: bundle verifies ECDSA P-256 keys only", pemOf("PUBLIC KEY", pubDER(&rsaKey.PublicKey)), true},
		{"p384 public", "an ECDSA P-384 key", pemOf("PUBLIC KEY", pubDER(&p384.PublicKey)), true},
		{"certificate", "a certificate, not a public key", pemOf("CERTIFICATE", []byte{1}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if tc.name == "odd scrypt" {
				data = oddScrypt(t, pkcs8)
			}
			var err error
			if tc.public {
				_, err = sign.ParsePublicKey(data)
			} else {
				_, err = sign.ParsePrivateKey(data, password("pw"))
			}
			var ke *sign.KeyError
			if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want a *KeyError on one line saying %q", err, tc.want)
			}
		})
	}
}

// oddScrypt is a cosign-format key whose scrypt N is 2^20 (1 GiB of
// memory): refused before any work.
func oddScrypt(t *testing.T, der []byte) []byte {
	data := encryptCosign(t, der, "pw", 1<<10)
	block, _ := pem.Decode(data)
	var doc map[string]any
	json.Unmarshal(block.Bytes, &doc)
	doc["kdf"].(map[string]any)["params"].(map[string]any)["N"] = 1 << 20
	js, _ := json.Marshal(doc)
	return pemOf(block.Type, js)
}

func TestReadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pub")
	os.WriteFile(big, bytes.Repeat([]byte("x"), sign.MaxKeyFileSize+1), 0o644)
	if _, err := sign.ReadPublicKey(big); err == nil || !strings.Contains(err.Error(), "big.pub: larger than") {
		t.Errorf("oversized: %v", err)
	}
	if _, err := sign.ReadPublicKey(filepath.Join(dir, "missing.pub")); err == nil || !strings.Contains(err.Error(), "missing.pub: reading the key") {
		t.Errorf("missing: %v", err)
	}
	if _, err := sign.ReadPrivateKey(dir, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}

func TestSignRoundTrip(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	k, err := sign.ParsePrivateKey(pemOf("PRIVATE KEY", der), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"schemaVersion":1}`)
	out, err := k.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := k.Sign(msg)
	if !bytes.Equal(out, again) {
		t.Errorf("two signatures of the same message differ:\n%s\n%s", out, again)
	}
	var doc struct {
		MediaType            string
		VerificationMaterial struct{ PublicKey struct{ Hint string } }
		MessageSignature     struct {
			MessageDigest struct{ Algorithm, Digest string }
			Signature     string
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(msg)
	if doc.MediaType != sign.MediaType || doc.VerificationMaterial.PublicKey.Hint != k.Public().ID() ||
		doc.MessageSignature.MessageDigest.Algorithm != "SHA2_256" || doc.MessageSignature.MessageDigest.Digest != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("bundle: %s", out)
	}
	s, err := sign.ParseSignature(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Verify(sum, []*sign.PublicKey{k.Public()}); err != nil || got != k.Public() {
		t.Errorf("Verify: %v, %v", got, err)
	}
	// Any one of several keys.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	od, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	op, _ := sign.ParsePublicKey(pemOf("PUBLIC KEY", od))
	if got, err := s.Verify(sum, []*sign.PublicKey{op, k.Public()}); err != nil || got != k.Public() {
		t.Errorf("Verify with two keys: %v, %v", got, err)
	}
	if _, err := s.Verify(sum, []*sign.PublicKey{op}); !errors.Is(err, sign.ErrNoKeyVerifies) {
		t.Errorf("Verify with another key: %v", err)
	}
	changed := sha256.Sum256([]byte(`{"schemaVersion":2}`))
	if _, err := s.Verify(changed, []*sign.PublicKey{k.Public()}); !errors.Is(err, sign.ErrNoKeyVerifies) || !strings.Contains(err.Error(), "over another message") {
		t.Errorf("Verify of a changed message: %v", err)
	}
}

// Everything that is not a key-based signature over a message, or not
// one unambiguously, is refused with one line.
func TestParseSignatureStrict(t *testing.T) {
	valid := string(read(t, "message.sigstore.json"))
	sub := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in the bundle", old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	sig := `"MEYCIQCvCrEnlpLnjcLuG1N1jMpnAyG8CDvqGuhOdYaSUGgU4AIhAIAuRvzmqZqBwXbiL05JUAY2lC5oiHksca6kDDPte0wC"`
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "empty"},
		{"not json", "not json", "does not parse"},
		{"array", "[]", "not a JSON object"},
		{"null", "null", "not a JSON object"},
		{"truncated", valid[:len(valid)/2], "does not parse"},
		{"trailing data", valid + "{}", "data after the JSON value"},
		{"duplicate key", sub(`"mediaType":`, `"mediaType":"x", "mediaType":`), `"mediaType" is there twice`},
		{"duplicate inner key", sub(`"signature":`, `"signature":"AAAA", "signature":`), `"signature" is there twice`},
		{"unknown field", sub(`"mediaType":`, `"extra":1, "mediaType":`), `has a field "extra"`},
		{"field of another case", sub(`"messageSignature"`, `"MessageSignature"`), `has a field "MessageSignature"`},
		{"snake case", sub(`"verificationMaterial"`, `"verification_material"`), `has a field "verification_material"`},
		{"no media type", sub(`"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json", `, ``), "no mediaType"},
		{"v0.1", sub(`bundle.v0.3+json`, `bundle+json;version=0.1`), "bundle reads v0.3"},
		{"other type", sub(`application/vnd.dev.sigstore.bundle.v0.3+json`, `text/plain`), `its mediaType is "text/plain"`},
		{"dsse", sub(`"messageSignature":`, `"dsseEnvelope":{}, "messageSignature":`), "DSSE envelope"},
		{"certificate", sub(`"publicKey":`, `"certificate":{"rawBytes":"AA=="}, "publicKey":`), "certificate (keyless)"},
		{"chain", sub(`"publicKey":`, `"x509CertificateChain":{}, "publicKey":`), "certificate (keyless)"},
		{"no public key", sub(`{"publicKey":{"hint":"FAS/ANiWf6tEnAo95j0SmNsUFXKBEP8sqsLyr4rsTH4="}}`, `{}`), "no publicKey"},
		{"no message signature", `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}}}`, "no messageSignature"},
		{"null message signature", `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"messageSignature":null}`, "messageSignature is null"},
		{"sha512", sub(`"SHA2_256"`, `"SHA2_512"`), `algorithm is "SHA2_512"`},
		{"short digest", sub(`X2ACZ5oFyLv7A18xw6QbauWr06EiJ5TMIB2K6ykoZP8=`, `X2ACZ5oF`), "not a base64 SHA-256"},
		{"digest not base64", sub(`X2ACZ5oFyLv7A18xw6QbauWr06EiJ5TMIB2K6ykoZP8=`, `not base64 at all!!!!!!!!!!!!!!!!!!!!!!!!!`), "not a base64 SHA-256"},
		{"digest a number", sub(`"X2ACZ5oFyLv7A18xw6QbauWr06EiJ5TMIB2K6ykoZP8="`, `5`), "is a JSON number"},
		{"no signature", sub(`, "signature":`+sig, ``), "signature is empty"},
		{"signature not base64", sub(sig, `"%%%%"`), "not base64"},
		{"signature too long", sub(sig, `"`+base64.StdEncoding.EncodeToString(make([]byte, 300))+`"`), "300 bytes: not an ECDSA signature"},
		{"too large", valid + strings.Repeat(" ", sign.MaxSignatureSize), "over the limit"},
		{"too deep", strings.Repeat("[", 40) + strings.Repeat("]", 40), "nested more than"},
		{"cosign bundle with a cert", `{"base64Signature":` + sig + `,"cert":"LS0t"}`, "certificate (keyless)"},
		{"cosign bundle, unknown field", `{"base64Signature":` + sig + `,"payload":"x"}`, `has a field "payload"`},
		{"cosign bundle, empty signature", `{"base64Signature":""}`, "base64Signature is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sign.ParseSignature([]byte(tc.data))
			var se *sign.SignatureError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want a *SignatureError on one line saying %q", err, tc.want)
			}
		})
	}
	// What Sigstore clients also write is read: the other media type
	// spelling, unpadded and URL-safe base64, a log entry (not checked).
	for name, data := range map[string]string{
		"alt media type": sub(`application/vnd.dev.sigstore.bundle.v0.3+json`, `application/vnd.dev.sigstore.bundle+json;version=0.3`),
		"unpadded":       sub(`X2ACZ5oFyLv7A18xw6QbauWr06EiJ5TMIB2K6ykoZP8=`, `X2ACZ5oFyLv7A18xw6QbauWr06EiJ5TMIB2K6ykoZP8`),
		"tlog entries":   sub(`"publicKey":`, `"tlogEntries":[{"logIndex":"1"}], "publicKey":`),
		"hex hint":       sub(`FAS/ANiWf6tEnAo95j0SmNsUFXKBEP8sqsLyr4rsTH4=`, strings.Repeat("AB", 32)),
	} {
		s, err := sign.ParseSignature([]byte(data))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "hex hint" && s.Hint != strings.Repeat("ab", 32) {
			t.Errorf("hex hint: %q", s.Hint)
		}
		msg := sha256.Sum256(read(t, "message.json"))
		pub, _ := sign.ReadPublicKey(filepath.Join("testdata", "cosign.pub"))
		if _, err := s.Verify(msg, []*sign.PublicKey{pub}); err != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
}
