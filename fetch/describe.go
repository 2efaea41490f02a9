package fetch

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// describe turns go-containerregistry's transport errors into one line a
// user can act on. A pull's 404 says "not found: " first.
func describe(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	return describeAnswer(te, true)
}

// Describe is describe for other packages that talk to registries (bundle
// load pushes): it turns go-containerregistry's transport errors, and the
// net/http errors of requests that got no answer (a *url.Error), into one
// line: the method, the URL without its query (an upload URL's query is a
// long opaque state token), and what went wrong. A 401 or 403 says so
// first; a 404 does not (a push's 404 names what is unknown). Other errors
// are returned as they are. The result unwraps to the transport or URL
// error.
func Describe(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		return describeAnswer(te, false)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return &registryError{msg: strings.ToUpper(ue.Op) + " " + redact(ue.URL) + ": " + ue.Err.Error(), err: err}
	}
	return err
}

// describeAnswer tells a registry's error answer in one line; notFound
// puts "not found: " before a 404's.
func describeAnswer(te *transport.Error, notFound bool) error {
	msg := registryMessage(te)
	if te.Request != nil {
		msg = te.Request.Method + " " + redact(te.Request.URL.String()) + ": " + msg
	}
	switch {
	case te.StatusCode == http.StatusUnauthorized:
		msg = "authentication failed (check docker login / DOCKER_CONFIG): " + msg
	case te.StatusCode == http.StatusForbidden:
		msg = "access denied: " + msg
	case te.StatusCode == http.StatusNotFound && notFound:
		msg = "not found: " + msg
	}
	return &registryError{msg: msg, err: te}
}

// registryMessage is what a registry's error answer says, in one line:
// its codes and messages ("MANIFEST_UNKNOWN: manifest unknown"), or its
// status when it has none. (transport.Error's own text ends with a Go map
// of details.)
func registryMessage(te *transport.Error) string {
	var parts []string
	for _, d := range te.Errors {
		parts = append(parts, string(d.Code)+": "+d.Message)
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d %s", te.StatusCode, http.StatusText(te.StatusCode)))
	}
	return strings.Join(parts, "; ")
}

// registryError is a registry's error answer, or a request that got none,
// told in one line.
type registryError struct {
	msg string
	err error // a *transport.Error or a *url.Error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }
