package fetch

import (
	"context"
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
// with a from one registry (skipVerify: it is an insecure host):
// credentials from a.Keychain, and NewRetryTransport under them; remote's
// own retries are off, the transport's are the ones.
func (a Access) RemoteOptions(ctx context.Context, skipVerify bool) []remote.Option {
	a = a.WithDefaults()
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(a.Keychain),
		remote.WithTransport(NewRetryTransport(a.Retry, skipVerify, nil)),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}
}
