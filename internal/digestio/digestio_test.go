package digestio

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestReaderIntact(t *testing.T) {
	data := []byte("hello, bundle")
	r := NewReader(bytes.NewReader(data), Sum(data), int64(len(data)))
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %q, %v; want the bytes and no error", got, err)
	}
	if r.N() != int64(len(data)) || r.Digest() != Sum(data) {
		t.Errorf("N %d, Digest %s; want %d, %s", r.N(), r.Digest(), len(data), Sum(data))
	}
	// Without a size only the digest is checked; small reads hash the same.
	if err := iotest.TestReader(NewReader(bytes.NewReader(data), Sum(data), -1), data); err != nil {
		t.Error(err)
	}
}

func TestReaderDigestMismatch(t *testing.T) {
	data, other := []byte("the bytes"), []byte("the bytez")
	_, err := io.ReadAll(NewReader(bytes.NewReader(other), Sum(data), int64(len(data))))
	var de *DigestError
	if !errors.As(err, &de) || de.Want != Sum(data) || de.Got != Sum(other) {
		t.Fatalf("err = %v; want a *DigestError{Want: %s, Got: %s}", err, Sum(data), Sum(other))
	}
	if want := "blob " + Sum(data).String() + ": digest mismatch: got " + Sum(other).String(); err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if Check(other, Sum(data)) == nil || Check(data, Sum(data)) != nil {
		t.Error("Check does not tell the bytes apart")
	}
}

func TestReaderSizeMismatch(t *testing.T) {
	data := []byte("the bytes")
	for _, size := range []int64{int64(len(data)) - 1, int64(len(data)) + 1} {
		_, err := io.ReadAll(NewReader(bytes.NewReader(data), Sum(data), size))
		var se *SizeError
		if !errors.As(err, &se) || se.Got != int64(len(data)) || se.Want != size {
			t.Errorf("size %d: err = %v; want a *SizeError", size, err)
		}
	}
}

func TestReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := io.ReadAll(NewReader(iotest.ErrReader(boom), v1.Hash{}, -1))
	if err != boom {
		t.Errorf("err = %v; want the reader's own error", err)
	}
}

func TestCounting(t *testing.T) {
	var seen int64
	r := &CountingReader{R: iotest.OneByteReader(strings.NewReader("abcde")), OnRead: func(n int64) { seen += n }}
	var buf bytes.Buffer
	var wseen int64
	w := &CountingWriter{W: &buf, OnWrite: func(n int64) { wseen += n }}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if r.N != 5 || seen != 5 || w.N != 5 || wseen != 5 || buf.String() != "abcde" {
		t.Errorf("read N %d (told %d), written N %d (told %d), %q; want 5 each and abcde", r.N, seen, w.N, wseen, buf.String())
	}
}
