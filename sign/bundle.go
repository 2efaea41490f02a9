package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MediaType is the media type of the Sigstore bundles Sign writes.
const MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// mediaTypeV03Alt is the other spelling of bundle v0.3 that Sigstore
// clients write and read.
const mediaTypeV03Alt = "application/vnd.dev.sigstore.bundle+json;version=0.3"

// MaxSignatureSize bounds a signature file or entry. A key-based Sigstore
// bundle is under 1 KiB; one with a transparency-log entry and a
// certificate chain a few KiB.
const MaxSignatureSize = 64 << 10

// maxDERSignature bounds an ECDSA P-256 signature in ASN.1 DER (72 bytes
// at most; a little room for a non-minimal encoding, which then fails to
// verify rather than to parse).
const maxDERSignature = 256

// Formats of a Signature.
const (
	// FormatSigstore is a Sigstore bundle v0.3 with a messageSignature.
	FormatSigstore = "sigstore-bundle-v0.3"
	// FormatCosignBlob is the bundle `cosign sign-blob --bundle` writes
	// without --new-bundle-format: a signature with no digest of what it
	// signs.
	FormatCosignBlob = "cosign-blob-bundle"
)

// Signature is a signature over a message, as read from a Sigstore bundle
// (or cosign's older blob bundle). Nothing in it is checked against a key
// until Verify.
type Signature struct {
	Format string
	// Digest is the SHA-256 of the message that the bundle says it signs;
	// nil for FormatCosignBlob, which does not say.
	Digest []byte
	// Sig is the ASN.1 DER ECDSA signature.
	Sig []byte
	// Hint is the key id the bundle names (verificationMaterial.publicKey.hint):
	// hex when it is a sha256 in hex or base64 (cosign writes base64), as
	// written otherwise, "" when there is none. A claim, not checked.
	Hint string
}

// SignatureError says why a signature file does not parse.
type SignatureError struct{ Err error }

func (e *SignatureError) Error() string { return e.Err.Error() }
func (e *SignatureError) Unwrap() error { return e.Err }

// Sign signs message with k as cosign signs a blob (ECDSA P-256 over the
// SHA-256 of the message; the signature is deterministic, RFC 6979, so the
// same key and message give the same bytes) and returns the Sigstore
// bundle v0.3 JSON, newline-terminated.
func (k *PrivateKey) Sign(message []byte) ([]byte, error) {
	digest := sha256.Sum256(message)
	sig, err := k.key.Sign(nil, digest[:], crypto.SHA256) // nil: deterministic (RFC 6979)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	type hashOutput struct {
		Algorithm string `json:"algorithm"`
		Digest    string `json:"digest"`
	}
	type out struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey struct {
				Hint string `json:"hint"`
			} `json:"publicKey"`
		} `json:"verificationMaterial"`
		MessageSignature struct {
			MessageDigest hashOutput `json:"messageDigest"`
			Signature     string     `json:"signature"`
		} `json:"messageSignature"`
	}
	var b out
	b.MediaType = MediaType
	b.VerificationMaterial.PublicKey.Hint = k.pub.id
	b.MessageSignature.MessageDigest = hashOutput{Algorithm: "SHA2_256", Digest: base64.StdEncoding.EncodeToString(digest[:])}
	b.MessageSignature.Signature = base64.StdEncoding.EncodeToString(sig)
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ParseSignature reads a signature file: a Sigstore bundle v0.3 whose
// content is a messageSignature, or cosign's older blob bundle. It refuses
// anything else (a DSSE envelope, a certificate instead of a key, another
// bundle version, unknown or duplicate fields, more than MaxSignatureSize
// bytes) with a *SignatureError.
func ParseSignature(data []byte) (*Signature, error) {
	s, err := parseSignature(data)
	if err != nil {
		return nil, &SignatureError{Err: err}
	}
	return s, nil
}

func parseSignature(data []byte) (*Signature, error) {
	if len(data) > MaxSignatureSize {
		return nil, fmt.Errorf("%d bytes is over the limit of %d", len(data), MaxSignatureSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("it is empty")
	}
	if err := strictJSON(data, "it"); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, errors.New("it is not a JSON object")
	}
	if _, ok := top["base64Signature"]; ok {
		return parseCosignBlob(data)
	}
	var (
		mediaType string
		vm, ms    json.RawMessage
		dsse      json.RawMessage
	)
	if err := fields(data, "the bundle", map[string]any{
		"mediaType":            &mediaType,
		"verificationMaterial": &vm,
		"messageSignature":     &ms,
		"dsseEnvelope":         &dsse,
	}); err != nil {
		return nil, err
	}
	switch mediaType {
	case MediaType, mediaTypeV03Alt:
	case "":
		return nil, errors.New("not a Sigstore bundle: it has no mediaType")
	default:
		if strings.HasPrefix(mediaType, "application/vnd.dev.sigstore.bundle") {
			return nil, fmt.Errorf("a Sigstore bundle of media type %q: bundle reads v0.3 (%s)", mediaType, MediaType)
		}
		return nil, fmt.Errorf("not a Sigstore bundle: its mediaType is %q", mediaType)
	}
	if dsse != nil {
		return nil, errors.New("a DSSE envelope (an attestation), not a signature over a file")
	}
	if ms == nil {
		return nil, errors.New("the bundle has no messageSignature")
	}
	if vm == nil {
		return nil, errors.New("the bundle has no verificationMaterial")
	}
	s := &Signature{Format: FormatSigstore}
	var pk, cert, chain, tlog, tsv json.RawMessage
	if err := fields(vm, "verificationMaterial", map[string]any{
		"publicKey":                 &pk,
		"certificate":               &cert,
		"x509CertificateChain":      &chain,
		"tlogEntries":               &tlog,
		"timestampVerificationData": &tsv,
	}); err != nil {
		return nil, err
	}
	if cert != nil || chain != nil {
		return nil, errors.New("signed with a certificate (keyless), which bundle does not verify: sign with a key (cosign sign-blob --key)")
	}
	if pk == nil {
		return nil, errors.New("verificationMaterial has no publicKey")
	}
	var hint string
	if err := fields(pk, "verificationMaterial.publicKey", map[string]any{"hint": &hint}); err != nil {
		return nil, err
	}
	s.Hint = normalizeHint(hint)
	// tlogEntries and timestampVerificationData are not checked (as
	// with cosign's --insecure-ignore-tlog): a key signs here, no log.

	var md json.RawMessage
	var sig string
	if err := fields(ms, "messageSignature", map[string]any{"messageDigest": &md, "signature": &sig}); err != nil {
		return nil, err
	}
	if md == nil {
		return nil, errors.New("messageSignature has no messageDigest")
	}
	var alg, digest string
	if err := fields(md, "messageSignature.messageDigest", map[string]any{"algorithm": &alg, "digest": &digest}); err != nil {
		return nil, err
	}
	if alg != "SHA2_256" {
		return nil, fmt.Errorf("messageSignature.messageDigest.algorithm is %q; bundle verifies SHA2_256", alg)
	}
	d, err := decodeBytes(digest)
	if err != nil || len(d) != sha256.Size {
		return nil, errors.New("messageSignature.messageDigest.digest is not a base64 SHA-256")
	}
	s.Digest = d
	if s.Sig, err = decodeSig(sig, "messageSignature.signature"); err != nil {
		return nil, err
	}
	return s, nil
}

// parseCosignBlob reads cosign's older blob bundle.
func parseCosignBlob(data []byte) (*Signature, error) {
	var sig, cert string
	var rekor json.RawMessage
	if err := fields(data, "the cosign bundle", map[string]any{
		"base64Signature": &sig,
		"cert":            &cert,
		"rekorBundle":     &rekor,
	}); err != nil {
		return nil, err
	}
	if cert != "" {
		return nil, errors.New("signed with a certificate (keyless), which bundle does not verify: sign with a key (cosign sign-blob --key)")
	}
	s := &Signature{Format: FormatCosignBlob}
	var err error
	if s.Sig, err = decodeSig(sig, "base64Signature"); err != nil {
		return nil, err
	}
	return s, nil
}

func decodeSig(s, what string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is empty", what)
	}
	b, err := decodeBytes(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64", what)
	}
	if len(b) == 0 || len(b) > maxDERSignature {
		return nil, fmt.Errorf("%s is %d bytes: not an ECDSA signature", what, len(b))
	}
	return b, nil
}

// decodeBytes decodes a proto3 JSON bytes field: standard or URL-safe
// base64, with or without padding (as protojson reads them).
func decodeBytes(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.Strict().DecodeString(s)
}

// normalizeHint gives a key-id hint in hex when it is a sha256 (cosign
// writes base64, bundle hex).
func normalizeHint(h string) string {
	if len(h) == 64 {
		if b, err := hex.DecodeString(h); err == nil {
			return hex.EncodeToString(b) // lower case
		}
	}
	if b, err := decodeBytes(h); err == nil && len(b) == sha256.Size {
		return hex.EncodeToString(b)
	}
	return h
}

// Covers reports whether the signature says it is over a message of that
// SHA-256. It is false for a signature that does not say
// (FormatCosignBlob): only Verify can tell.
func (s *Signature) Covers(digest [sha256.Size]byte) bool {
	return s.Digest != nil && bytes.Equal(s.Digest, digest[:])
}

// ErrNoKeyVerifies is returned by Verify when the signature is by none of
// the keys given, or is not over the message.
var ErrNoKeyVerifies = errors.New("the signature does not verify with any key given")

// Verify checks the signature over the message whose SHA-256 is digest
// with each key, and returns the first that verifies it. The digest the
// bundle records must be that digest too.
func (s *Signature) Verify(digest [sha256.Size]byte, keys []*PublicKey) (*PublicKey, error) {
	if s.Digest != nil && !s.Covers(digest) {
		return nil, fmt.Errorf("%w: it is over another message (sha256:%s)", ErrNoKeyVerifies, hex.EncodeToString(s.Digest))
	}
	for _, k := range keys {
		if ecdsa.VerifyASN1(k.key, digest[:], s.Sig) {
			return k, nil
		}
	}
	return nil, ErrNoKeyVerifies
}
