package sign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxDepth bounds how deeply the JSON read here may nest (a Sigstore
// bundle nests 6 levels; a log entry a few more).
const maxDepth = 32

// strictJSON checks that data is one JSON value with no object holding a
// key twice, nested at most maxDepth deep. encoding/json takes the last of
// duplicate keys, and matches field names without regard to case; a
// signature read here must mean one thing to every reader, so duplicates
// are refused (and exact names are checked by fields).
func strictJSON(data []byte, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := value(dec, 0); err != nil {
		return fmt.Errorf("%s does not parse: %w", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s does not parse: data after the JSON value", what)
	}
	return nil
}

func value(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested more than %d deep", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			if seen[key] {
				return fmt.Errorf("the key %q is there twice", key)
			}
			seen[key] = true
			if err := value(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := value(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

// fields decodes the JSON object raw into the named fields, by exact name:
// a field not named is an error, a field left out leaves its target as it
// is. raw has passed strictJSON. where names the object in errors.
func fields(raw json.RawMessage, where string, into map[string]any) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if obj == nil {
		return fmt.Errorf("%s is null, not an object", where)
	}
	for k, v := range obj {
		dst, ok := into[k]
		if !ok {
			return fmt.Errorf("%s has a field %q, which it may not", where, k)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("%s.%s is a JSON %s, not what it may be", where, k, te.Value)
			}
			return fmt.Errorf("%s.%s: %w", where, k, err)
		}
	}
	return nil
}
