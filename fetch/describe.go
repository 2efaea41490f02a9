package fetch

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// describe turns go-containerregistry's transport errors into one line a
// user can act on.
func describe(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	msg := RegistryMessage(te)
	if te.Request != nil {
		msg = te.Request.Method + " " + redact(te.Request.URL.String()) + ": " + msg
	}
	switch te.StatusCode {
	case http.StatusUnauthorized:
		msg = "authentication failed (check docker login / DOCKER_CONFIG): " + msg
	case http.StatusForbidden:
		msg = "access denied: " + msg
	case http.StatusNotFound:
		msg = "not found: " + msg
	}
	return &registryError{msg: msg, err: te}
}

// RegistryMessage is what a registry's error answer says, in one line:
// its codes and messages ("MANIFEST_UNKNOWN: manifest unknown"), or its
// status when it has none. (transport.Error's own text ends with a Go map
// of details.)
func RegistryMessage(te *transport.Error) string {
	var parts []string
	for _, d := range te.Errors {
		parts = append(parts, string(d.Code)+": "+d.Message)
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d %s", te.StatusCode, http.StatusText(te.StatusCode)))
	}
	return strings.Join(parts, "; ")
}

// registryError is a registry's error answer, told in one line.
type registryError struct {
	msg string
	err *transport.Error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }
