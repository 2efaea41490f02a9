package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/verify"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// The signing flags (issue 13): --sign-key on create, --key on verify and
// load. Kept here so that each command only lists them and passes them on.
var (
	signKeyFlag = &cli.StringFlag{Name: "sign-key", Usage: "sign bundle.json with this private key: a cosign key (cosign generate-key-pair; its password from COSIGN_PASSWORD, else asked on a terminal, else read from stdin, as cosign does) or a PKCS#8 PEM key, ECDSA P-256; writes the bundle.sigstore.json entry and `FILE`.sigstore.json beside the bundle"}
	keyFlag     = &cli.StringSliceFlag{Name: "key", Usage: "refuse the bundle unless one of these public keys (cosign.pub; repeatable) signed its bundle.json"}
)

// cosignPassword reads a cosign key's password as cosign does:
// COSIGN_PASSWORD when it is set (even empty), else a prompt when stdin is
// a terminal, else all of stdin.
func cosignPassword(c *cli.Context) func() ([]byte, error) {
	return func() ([]byte, error) {
		if pw, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
			return []byte(pw), nil
		}
		if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(c.App.ErrWriter, "Enter password for private key: ")
			pw, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(c.App.ErrWriter)
			return pw, err
		}
		pw, err := io.ReadAll(io.LimitReader(c.App.Reader, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("reading it from stdin (COSIGN_PASSWORD is not set): %w", err)
		}
		return pw, nil
	}
}

// keyHint is the hint for an error loading a key.
func keyHint(err error) error {
	if errors.Is(err, sign.ErrWrongPassword) {
		return withHint(err, "set COSIGN_PASSWORD to the password the key was made with (cosign reads it the same way)")
	}
	return err
}

// signatureLine says, for verify's output, how the bundle is signed and
// what was checked; "" for an unsigned bundle verified without --key.
func signatureLine(rep *verify.Report) string {
	s := rep.Signature
	if s == nil || !s.Signed() {
		return ""
	}
	var files []string
	for _, f := range s.Signatures {
		files = append(files, f.File)
	}
	by := ""
	if hints := s.KeyHints(); len(hints) > 0 {
		by = " by key " + strings.Join(hints, ", key ")
	}
	switch {
	case s.Verified:
		return fmt.Sprintf("signature: verified with key %s (%s)", s.KeyID, strings.Join(files, ", "))
	case s.Checked:
		return "" // the findings say why not
	}
	return fmt.Sprintf("signature: signed%s (%s); the signature was not checked: give --key KEY.pub to check it", by, strings.Join(files, ", "))
}
