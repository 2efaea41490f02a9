package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// DefaultCertsDirs are where registries' own certificates are looked up
// when Access.CertsDirs is nil: docker's convention and that of
// containers/image (podman, skopeo, CRI-O). For registry HOST[:PORT] the
// directory DIR/HOST[:PORT] holds its CAs (*.crt) and client key pairs
// (NAME.cert with NAME.key), as `docker pull` reads them.
var DefaultCertsDirs = []string{"/etc/docker/certs.d", "/etc/containers/certs.d"}

// maxCertFile bounds a certificate or key file read.
const maxCertFile = 1 << 20

// TLSFor is the TLS configuration for reaching host ("host:port" as the
// reference names it): the system's roots, plus every --ca-file
// (a.CAFiles), plus the host's own CAs and client certificates from the
// certs.d directories. It is nil when none of those add anything (Go's
// default applies), and an error names the file that cannot be used.
func (a Access) TLSFor(host string) (*tls.Config, error) {
	dirs := a.CertsDirs
	if dirs == nil {
		dirs = DefaultCertsDirs
	}
	var cas [][]byte
	var caNames []string
	for _, f := range a.CAFiles {
		b, err := readCertFile(f)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		cas, caNames = append(cas, b), append(caNames, f)
	}
	var certs []tls.Certificate
	for _, d := range dirs {
		dir := filepath.Join(d, certsDirName(host))
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dir, err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(dir, n)
			switch {
			case strings.HasSuffix(n, ".crt"):
				b, err := readCertFile(p)
				if err != nil {
					return nil, err
				}
				cas, caNames = append(cas, b), append(caNames, p)
			case strings.HasSuffix(n, ".cert"):
				keyPath := strings.TrimSuffix(p, ".cert") + ".key"
				cb, err := readCertFile(p)
				if err != nil {
					return nil, err
				}
				kb, err := readCertFile(keyPath)
				if err != nil {
					return nil, fmt.Errorf("client certificate %s has no usable key: %w", p, err)
				}
				pair, err := tls.X509KeyPair(cb, kb)
				if err != nil {
					return nil, fmt.Errorf("client certificate %s with %s: %w", p, keyPath, err)
				}
				certs = append(certs, pair)
			}
		}
	}
	if len(cas) == 0 && len(certs) == 0 {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if len(cas) > 0 {
		pool, err := systemRoots()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for i, b := range cas {
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("%s: no PEM certificate in it", caNames[i])
			}
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// certsDirName is the certs.d directory name of a registry host: as
// written, but a ":443" is dropped (docker names the default port's
// directory without it) and Docker Hub's registry is named as docker does.
func certsDirName(host string) string {
	host = strings.TrimSuffix(host, ":443")
	if host == "index.docker.io" {
		return "docker.io"
	}
	return host
}

var (
	rootsOnce sync.Once
	roots     *x509.CertPool
	rootsErr  error
)

// systemRoots is a copy of the system's root pool (read once).
func systemRoots() (*x509.CertPool, error) {
	rootsOnce.Do(func() { roots, rootsErr = x509.SystemCertPool() })
	if rootsErr != nil {
		return nil, rootsErr
	}
	return roots.Clone(), nil
}

func readCertFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxCertFile {
		return nil, fmt.Errorf("%s is over %d bytes: not a certificate file", path, maxCertFile)
	}
	return b, nil
}
