package fetch

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Access is how bundle reaches registries, the same for every command that
// talks to one: create (a Client), load (a registry target) and
// inventory (a registry walk).
type Access struct {
	// Insecure lists registry hosts ("host:port") reached over plain HTTP
	// or TLS without verification. Loopback registries need no entry.
	Insecure []string
	// Keychain finds credentials; nil means authn.DefaultKeychain
	// (docker config.json, DOCKER_CONFIG, credential helpers).
	Keychain authn.Keychain
	// Retry is the retry policy, and Retry.Stall the window in which a
	// transfer must move StallMinBytes; zero means DefaultRetryPolicy and
	// DefaultStallTimeout.
	Retry RetryPolicy
	// CAFiles are PEM files of CAs to trust for every registry, besides
	// the system's (--ca-file).
	CAFiles []string
	// CertsDirs are where each registry's own CAs and client certificates
	// are found (DIR/HOST[:PORT]/*.crt, *.cert + *.key); nil means
	// DefaultCertsDirs.
	CertsDirs []string
}

// NewAccess is the Access that the command-line flags --insecure,
// --retries and --stall-timeout ask for, with its defaults filled:
// retries (attempts per request) or stall of zero or less mean
// DefaultRetryPolicy's attempts and DefaultStallTimeout.
func NewAccess(insecure []string, retries int, stall time.Duration) Access {
	a := Access{Insecure: insecure}
	if retries > 0 {
		a.Retry = DefaultRetryPolicy
		a.Retry.Attempts = retries
	}
	a.Retry.Stall = stall
	return a.WithDefaults()
}

// WithDefaults is a with what is zero filled: authn.DefaultKeychain,
// DefaultRetryPolicy (keeping a stall window that is set) and
// DefaultStallTimeout.
func (a Access) WithDefaults() Access {
	if a.Keychain == nil {
		a.Keychain = authn.DefaultKeychain
	}
	a.Retry = a.Retry.withDefaults()
	return a
}

// RemoteOptions are the go-containerregistry remote options for reading
// with a from registry host (skipVerify: it is an insecure host):
// credentials from a.Keychain, and Transport under them; remote's own
// retries are off, the transport's are the ones.
func (a Access) RemoteOptions(ctx context.Context, host string, skipVerify bool) ([]remote.Option, error) {
	a = a.WithDefaults()
	rt, err := a.Transport(host, skipVerify, nil)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(a.Keychain),
		remote.WithTransport(rt),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}, nil
}

// Transport is the retrying transport (NewRetryTransportTLS) for host:
// without TLS verification when skipVerify (an --insecure host), else with
// the host's TLS configuration (TLSFor: --ca-file, certs.d).
func (a Access) Transport(host string, skipVerify bool, notify func(what string, attempt int, reason string, wait time.Duration)) (http.RoundTripper, error) {
	if skipVerify {
		return NewRetryTransport(a.Retry, true, notify), nil
	}
	cfg, err := a.TLSFor(host)
	if err != nil {
		return nil, fmt.Errorf("TLS for %s: %w", host, err)
	}
	return NewRetryTransportTLS(a.Retry, cfg, notify), nil
}
