package sign

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/bundle-tool/bundle/internal/safefs"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// MaxKeyFileSize bounds a key file (a cosign key is under 1 KiB).
const MaxKeyFileSize = 64 << 10

// PEM block types of the key files read.
const (
	pemSigstoreKey  = "ENCRYPTED SIGSTORE PRIVATE KEY" // cosign generate-key-pair
	pemCosignKey    = "ENCRYPTED COSIGN PRIVATE KEY"   // older cosign
	pemPKCS8        = "PRIVATE KEY"
	pemSEC1         = "EC PRIVATE KEY"
	pemEncPKCS8     = "ENCRYPTED PRIVATE KEY"
	pemPublicKey    = "PUBLIC KEY"
	pemCertificate  = "CERTIFICATE"
	pemRSAPrivate   = "RSA PRIVATE KEY"
	pemRSAPublicKey = "RSA PUBLIC KEY"
)

// ErrWrongPassword is wrapped by the error for an encrypted key that the
// password does not open.
var ErrWrongPassword = errors.New("wrong password (COSIGN_PASSWORD), or the key file is damaged")

// KeyError says why a key file cannot be used. Its message is one line
// that names the file.
type KeyError struct {
	File string // the path, or "" for bytes parsed directly
	Err  error
}

func (e *KeyError) Error() string {
	if e.File == "" {
		return "key: " + e.Err.Error()
	}
	return e.File + ": " + e.Err.Error()
}

func (e *KeyError) Unwrap() error { return e.Err }

// PublicKey is an ECDSA P-256 public key.
type PublicKey struct {
	key *ecdsa.PublicKey
	id  string
}

// ID is the key id: the hex sha256 of the key's PKIX DER.
func (k *PublicKey) ID() string { return k.id }

// PrivateKey is an ECDSA P-256 private key.
type PrivateKey struct {
	key *ecdsa.PrivateKey
	pub *PublicKey
}

// Public returns the key's public half.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

func newPublicKey(pub *ecdsa.PublicKey) (*PublicKey, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &PublicKey{key: pub, id: hex.EncodeToString(sum[:])}, nil
}

// ReadPublicKey reads a PEM public key file (cosign.pub): PKIX, ECDSA P-256.
func ReadPublicKey(path string) (*PublicKey, error) {
	data, err := safefs.ReadFile(path, MaxKeyFileSize)
	if err != nil {
		return nil, &KeyError{File: path, Err: readErr(err)}
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return nil, &KeyError{File: path, Err: ke.Err}
		}
		return nil, err
	}
	return k, nil
}

// ParsePublicKey parses a PEM public key: PKIX, ECDSA P-256.
func ParsePublicKey(data []byte) (*PublicKey, error) {
	block, err := onePEM(data)
	if err != nil {
		return nil, &KeyError{Err: err}
	}
	switch block.Type {
	case pemPublicKey:
	case pemSigstoreKey, pemCosignKey, pemPKCS8, pemSEC1, pemEncPKCS8, pemRSAPrivate:
		return nil, &KeyError{Err: errors.New("a private key, not a public key: verifying takes the public key (cosign.pub)")}
	case pemCertificate:
		return nil, &KeyError{Err: errors.New("a certificate, not a public key: give the public key (cosign.pub)")}
	default:
		return nil, &KeyError{Err: fmt.Errorf("a PEM %q block, not a public key", block.Type)}
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, &KeyError{Err: fmt.Errorf("the public key does not parse: %w", err)}
	}
	ec, err := p256Public(pub)
	if err != nil {
		return nil, &KeyError{Err: err}
	}
	k, err := newPublicKey(ec)
	if err != nil {
		return nil, &KeyError{Err: err}
	}
	return k, nil
}

// ReadPrivateKey reads a private key file: cosign's encrypted key
// (cosign.key; password is called for its password), or a plain PKCS#8 or
// SEC1 PEM key. Only ECDSA P-256 keys sign.
func ReadPrivateKey(path string, password func() ([]byte, error)) (*PrivateKey, error) {
	data, err := safefs.ReadFile(path, MaxKeyFileSize)
	if err != nil {
		return nil, &KeyError{File: path, Err: readErr(err)}
	}
	k, err := ParsePrivateKey(data, password)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return nil, &KeyError{File: path, Err: ke.Err}
		}
		return nil, err
	}
	return k, nil
}

// ParsePrivateKey is ReadPrivateKey of a key file's bytes. password is
// called only for an encrypted key; it may be nil for a plain one.
func ParsePrivateKey(data []byte, password func() ([]byte, error)) (*PrivateKey, error) {
	block, err := onePEM(data)
	if err != nil {
		return nil, &KeyError{Err: err}
	}
	var der []byte
	switch block.Type {
	case pemSigstoreKey, pemCosignKey:
		if password == nil {
			return nil, &KeyError{Err: errors.New("the key is encrypted and no password was given (COSIGN_PASSWORD)")}
		}
		pw, err := password()
		if err != nil {
			return nil, &KeyError{Err: fmt.Errorf("reading the password: %w", err)}
		}
		if der, err = decrypt(block.Bytes, pw); err != nil {
			return nil, &KeyError{Err: err}
		}
	case pemPKCS8:
		der = block.Bytes
	case pemSEC1:
		priv, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, &KeyError{Err: fmt.Errorf("the EC private key does not parse: %w", err)}
		}
		return newPrivateKey(priv)
	case pemEncPKCS8:
		return nil, &KeyError{Err: errors.New("an encrypted PKCS#8 key, which bundle does not read: use a cosign key (cosign generate-key-pair, or cosign import-key-pair) or a plain PKCS#8 key")}
	case pemRSAPrivate:
		return nil, &KeyError{Err: errors.New("an RSA key: bundle signs with ECDSA P-256 keys only (cosign generate-key-pair makes one)")}
	case pemPublicKey, pemRSAPublicKey, pemCertificate:
		return nil, &KeyError{Err: errors.New("a public key, not a signing key: signing takes the private key (cosign.key)")}
	default:
		return nil, &KeyError{Err: fmt.Errorf("a PEM %q block, not a private key", block.Type)}
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, &KeyError{Err: fmt.Errorf("the private key does not parse: %w", err)}
	}
	var priv *ecdsa.PrivateKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		priv = k
	case *ecdh.PrivateKey:
		return nil, &KeyError{Err: errors.New("an X25519 key, not a signing key: bundle signs with ECDSA P-256 keys only")}
	default:
		return nil, &KeyError{Err: fmt.Errorf("%s: bundle signs with ECDSA P-256 keys only (cosign generate-key-pair makes one)", describe(k))}
	}
	return newPrivateKey(priv)
}

func newPrivateKey(priv *ecdsa.PrivateKey) (*PrivateKey, error) {
	if _, err := p256Public(&priv.PublicKey); err != nil {
		return nil, &KeyError{Err: err}
	}
	pub, err := newPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, &KeyError{Err: err}
	}
	return &PrivateKey{key: priv, pub: pub}, nil
}

// p256Public checks that pub is an ECDSA P-256 key.
func p256Public(pub any) (*ecdsa.PublicKey, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: bundle verifies ECDSA P-256 keys only", describe(pub))
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("an ECDSA %s key: bundle uses ECDSA P-256 keys only (as cosign generate-key-pair makes)", ec.Curve.Params().Name)
	}
	return ec, nil
}

// describe names a key's algorithm for messages.
func describe(k any) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("an RSA %d key", k.N.BitLen())
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA %d key", k.N.BitLen())
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "an Ed25519 key"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "an ECDH key"
	case *ecdsa.PrivateKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	}
	return fmt.Sprintf("a key of type %T", k)
}

// onePEM returns the first PEM block of data.
func onePEM(data []byte) (*pem.Block, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM key file")
	}
	return block, nil
}

func readErr(err error) error {
	var tl *safefs.TooLargeError
	if errors.As(err, &tl) {
		return fmt.Errorf("larger than %d bytes: not a key file", MaxKeyFileSize)
	}
	var nr *safefs.NotRegularError
	if errors.As(err, &nr) {
		return fmt.Errorf("%s, not a regular file", safefs.Kind(nr.Mode))
	}
	if inner := errors.Unwrap(err); inner != nil {
		return fmt.Errorf("reading the key: %w", inner) // the path is named already
	}
	return fmt.Errorf("reading the key: %w", err)
}

// cosign's encrypted key: the PEM block's bytes are this JSON. Byte fields
// are standard base64, as encoding/json writes []byte.
type encryptedKey struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

// scryptParams are the scrypt parameter sets a cosign key may use (the
// legacy, standard and OWASP strengths): any other is refused, so that a
// hostile key file cannot ask for unbounded memory or time (N=2^17, r=8
// takes 128 MiB).
var scryptParams = [][3]int{{1 << 15, 8, 1}, {1 << 16, 8, 1}, {1 << 17, 8, 1}}

// decrypt opens cosign's encrypted key with the password and returns the
// PKCS#8 DER it holds.
func decrypt(data, password []byte) ([]byte, error) {
	if err := strictJSON(data, "the encrypted key"); err != nil {
		return nil, err
	}
	var ek encryptedKey
	if err := json.Unmarshal(data, &ek); err != nil {
		return nil, fmt.Errorf("the encrypted key does not parse: %w", err)
	}
	if ek.KDF.Name != "scrypt" {
		return nil, fmt.Errorf("the encrypted key uses KDF %q; cosign keys use scrypt", ek.KDF.Name)
	}
	if ek.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("the encrypted key uses cipher %q; cosign keys use nacl/secretbox", ek.Cipher.Name)
	}
	p := [3]int{ek.KDF.Params.N, ek.KDF.Params.R, ek.KDF.Params.P}
	known := false
	for _, q := range scryptParams {
		known = known || p == q
	}
	if !known {
		return nil, fmt.Errorf("the encrypted key's scrypt parameters (N=%d, r=%d, p=%d) are none that cosign uses", p[0], p[1], p[2])
	}
	if len(ek.KDF.Salt) == 0 || len(ek.KDF.Salt) > 1024 {
		return nil, errors.New("the encrypted key has no usable salt")
	}
	var nonce [24]byte
	if len(ek.Cipher.Nonce) != len(nonce) {
		return nil, fmt.Errorf("the encrypted key's nonce is %d bytes, not %d", len(ek.Cipher.Nonce), len(nonce))
	}
	copy(nonce[:], ek.Cipher.Nonce)
	k, err := scrypt.Key(password, ek.KDF.Salt, p[0], p[1], p[2], 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the key: %w", err)
	}
	var key [32]byte
	copy(key[:], k)
	der, ok := secretbox.Open(nil, ek.Ciphertext, &nonce, &key)
	if !ok {
		return nil, ErrWrongPassword
	}
	return der, nil
}
