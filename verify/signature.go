package verify

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
)

// CodeSignature: with keys, the bundle is unsigned, or no signature
// verifies with them, or bundle.json lists no metadata for a signature to
// cover; with or without keys, a signature (the entry or the file beside
// the bundle) does not parse, or is over another bundle.json.
const CodeSignature Code = "signature"

// SignatureReport says how the bundle is signed and what was checked.
type SignatureReport struct {
	// Signatures are those found: the bundle.sigstore.json entry, the
	// file beside the bundle.
	Signatures []SignatureFound `json:"signatures"`
	// Checked is true when keys were given: then Verified says whether a
	// signature verified with one of them, and no signature found is
	// broken or over another bundle.json; KeyID is the key.
	Checked  bool   `json:"checked"`
	Verified bool   `json:"verified"`
	KeyID    string `json:"keyId,omitempty"`
}

// SignatureFound is one signature of the bundle.
type SignatureFound struct {
	// File is the entry (bundle.sigstore.json) or the file's name.
	File string `json:"file"`
	// Format is sign.FormatSigstore or sign.FormatCosignBlob; "" when it
	// does not parse (a finding says why).
	Format string `json:"format,omitempty"`
	// KeyHint is the key id the signature names: a claim, not checked.
	KeyHint string `json:"keyHint,omitempty"`
	// Verified is true when it verified with one of the keys given.
	Verified bool `json:"verified"`
}

// Signed reports whether any signature was found.
func (s *SignatureReport) Signed() bool { return s != nil && len(s.Signatures) > 0 }

// KeyHints are the key ids the signatures name, each once.
func (s *SignatureReport) KeyHints() []string {
	var out []string
	for _, f := range s.Signatures {
		if f.KeyHint != "" && !strings.Contains(strings.Join(out, " "), f.KeyHint) {
			out = append(out, f.KeyHint)
		}
	}
	return out
}

// signatureChecks checks the signature entry and the file beside the
// bundle against bundle.json's bytes, and with Options.Keys, that one of
// them verifies with one of the keys.
func (v *verifier) signatureChecks() {
	type source struct {
		name string
		data []byte
		err  error
	}
	var sources []source
	if data, ok := v.files[tarball.SignatureFile]; ok {
		sources = append(sources, source{name: tarball.SignatureFile, data: data})
	}
	sidecar := orName(v.opts.SidecarFile, "signature file")
	if v.opts.Sidecar != nil || v.opts.SidecarErr != nil {
		sources = append(sources, source{name: sidecar, data: v.opts.Sidecar, err: v.opts.SidecarErr})
	}
	keys := v.opts.Keys
	if len(sources) == 0 && len(keys) == 0 {
		return
	}
	rep := &SignatureReport{Signatures: []SignatureFound{}, Checked: len(keys) > 0}
	v.rep.Signature = rep
	sum := v.tr.IndexSHA256()
	want := "sha256:" + hex.EncodeToString(sum[:])
	explained := false // a finding already says why nothing verifies
	for _, src := range sources {
		found := SignatureFound{File: src.name}
		s, err := src.data, src.err
		var sig *sign.Signature
		if err == nil {
			sig, err = sign.ParseSignature(s)
		}
		if err != nil {
			v.add(Finding{Code: CodeSignature, Entry: src.name, Problem: "not a signature bundle reads: " + err.Error()})
			rep.Signatures = append(rep.Signatures, found)
			explained = true
			continue
		}
		found.Format, found.KeyHint = sig.Format, sig.Hint
		if sig.Digest != nil && !sig.Covers(sum) {
			problem := "signs another bundle.json: bundle.json changed after it was signed"
			if src.name != tarball.SignatureFile {
				problem = "signs another bundle.json: it belongs to another bundle, or bundle.json changed after it was signed"
			}
			v.add(Finding{Code: CodeSignature, Entry: src.name, Problem: problem, Got: "sha256:" + hex.EncodeToString(sig.Digest), Want: want})
			explained = true
		} else if len(keys) > 0 && !hasIndexMetadata(v.idx) {
			// reported once below
		} else if len(keys) > 0 {
			if k, err := sig.Verify(sum, keys); err == nil {
				found.Verified = true
				if !rep.Verified {
					rep.Verified, rep.KeyID = true, k.ID()
				}
			} else {
				// Every signature found must be by a key given: one
				// that is not is another signer's, or of another
				// bundle.json (cosign's older format does not say
				// which), or altered.
				v.add(Finding{Code: CodeSignature, Entry: src.name, Problem: fmt.Sprintf("does not verify with %s %s: signed by another key, or over another bundle.json, or altered",
					plural(len(keys), "the key", "any of the keys"), keyIDs(keys))})
				explained = true
			}
		}
		rep.Signatures = append(rep.Signatures, found)
	}
	if explained {
		// One signature may have verified, but another is broken or
		// over another bundle.json: the findings stand, and the bundle
		// is not proved.
		rep.Verified, rep.KeyID = false, ""
	}
	if len(keys) == 0 {
		return
	}
	switch {
	case !hasIndexMetadata(v.idx):
		v.add(Finding{Code: CodeSignature, Entry: tarball.IndexFile, Problem: "bundle.json lists no metadata (a bundle made before it did): a signature over it does not cover index.json and manifest.json, so --key refuses it"})
		rep.Verified, rep.KeyID = false, ""
	case len(sources) == 0:
		v.add(Finding{Code: CodeSignature, Problem: fmt.Sprintf("the bundle is not signed: it has no %s entry and no %s beside it", tarball.SignatureFile, sidecar)})
	}
}

func keyIDs(keys []*sign.PublicKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return strings.Join(ids, ", ")
}

// hasIndexMetadata reports whether bundle.json lists its fixed entries.
func hasIndexMetadata(idx *tarball.Index) bool { return idx != nil && idx.Metadata != nil }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
