package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// UnreachableError says a registry could not be reached at all: no
// connection was made (refused, no such host, timed out). It names the
// host, what was tried, and what to check.
type UnreachableError struct {
	Host     string
	Schemes  []string // "https", and "http" for a host reached over plain HTTP too
	Attempts int      // tries per scheme
	Reason   string   // "connection refused", "no such host", "timed out"
	Err      error
}

func (e *UnreachableError) Error() string {
	tried := strings.Join(e.Schemes, " and ")
	times := "once"
	if e.Attempts > 1 {
		times = fmt.Sprintf("%d times", e.Attempts)
	}
	if len(e.Schemes) > 1 && e.Attempts > 1 {
		times += " each"
	}
	return fmt.Sprintf("cannot reach the registry %s: %s (tried %s, %s); %s", e.Host, e.Reason, tried, times, e.hint())
}

func (e *UnreachableError) hint() string {
	host, port, err := net.SplitHostPort(e.Host)
	switch e.Reason {
	case "no such host":
		return "is the host name spelt right, and does this machine's DNS know it?"
	case "connection refused":
		if err == nil {
			return fmt.Sprintf("is the registry running on %s, and is %s its port?", host, port)
		}
		return "is the registry running, and on the default port (443)? Give host:port otherwise"
	default:
		return "is the host up, and does a firewall or proxy let this machine through?"
	}
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Unreachable turns a connection error of the first request to host into
// an *UnreachableError, or returns nil when err is something else (an
// answer, a TLS problem, credentials).
func Unreachable(host string, err error, attempts int, plainHTTP bool) error {
	var reason string
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		reason = "no such host"
	case errors.As(err, &netErr) && netErr.Timeout():
		reason = "timed out"
	default:
		return nil
	}
	schemes := []string{"https"}
	if plainHTTP {
		schemes = append(schemes, "http")
	}
	return &UnreachableError{Host: host, Schemes: schemes, Attempts: attempts, Reason: reason, Err: err}
}

// CertError says a registry's TLS certificate could not be verified: its
// CA is not trusted (a private CA), or it names another host, or it has
// expired. It names the host and how to give its CA.
type CertError struct {
	Host string
	Err  error // the x509 error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("the TLS certificate of %s cannot be verified: %v; give its CA with --ca-file FILE, or put it in /etc/docker/certs.d/%s/ca.crt (--insecure %s skips the check)",
		e.Host, e.Err, certsDirName(e.Host), e.Host)
}

func (e *CertError) Unwrap() error { return e.Err }

// Certificate turns an error of the first request to host that failed on
// its certificate into a *CertError (also when a plain-HTTP retry of a
// loopback host came after it), or returns nil.
func Certificate(host string, err error) error {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ua):
		return &CertError{Host: host, Err: ua}
	case errors.As(err, &hn):
		return &CertError{Host: host, Err: hn}
	case errors.As(err, &ci):
		return &CertError{Host: host, Err: ci}
	case errors.As(err, &cv):
		return &CertError{Host: host, Err: cv.Err}
	}
	return nil
}
