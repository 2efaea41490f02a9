// Package sign owns the keys and signatures of signed bundles: it loads
// ECDSA P-256 keys (cosign's own encrypted key files, plain PKCS#8 or SEC1
// private keys, PKIX public keys), signs a message as cosign signs a blob
// (ECDSA P-256 over its SHA-256), and writes and reads the signature as a
// Sigstore bundle v0.3 (media type application/vnd.dev.sigstore.bundle.v0.3+json)
// whose messageSignature is over the message.
//
// Specs followed: the Sigstore bundle format
// (https://github.com/sigstore/protobuf-specs, protos/sigstore_bundle.proto and
// sigstore_common.proto, in their proto3 JSON mapping); cosign's encrypted
// private key (a PEM block "ENCRYPTED SIGSTORE PRIVATE KEY" or "ENCRYPTED
// COSIGN PRIVATE KEY" holding JSON: an scrypt KDF, a nacl/secretbox cipher,
// and the PKCS#8 DER as ciphertext); cosign's older blob bundle, which
// `cosign sign-blob --bundle` writes without --new-bundle-format
// ({"base64Signature", "cert", "rekorBundle"}), read so that such a
// signature is accepted too. FORMAT.md of the design, "Signing (optional)",
// says where a bundle file carries the signature.
//
// What it does not do: certificates (keyless signing), transparency logs
// and timestamps. A signature that carries them is read for its key-based
// messageSignature only; a log entry is not checked, as with cosign's
// --insecure-ignore-tlog.
//
// Every read is bounded (MaxKeyFileSize, MaxSignatureSize) and the JSON is
// parsed strictly: exact field names, no unknown or duplicate fields.
// The key id of a public key is the hex sha256 of its PKIX DER.
//
// The package never prints: a password is asked for through the function
// the caller passes.
package sign
