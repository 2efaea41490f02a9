package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// Each opener refuses what it must, at once, and reads what it may.
func TestOpeners(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	if err := os.WriteFile(p("file"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.PlantFIFO(t, p("fifo"))
	for _, l := range [][2]string{{"/dev/zero", "zero"}, {"file", "inner"}, {"../", "up"}, {"/etc/hostname", "out"}} {
		testenv.PlantLink(t, l[0], p(l[1]))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	read := map[string]func(name string) ([]byte, error){
		"ReadFile":         func(n string) ([]byte, error) { return ReadFile(p(n), 100) },
		"ReadFileNoFollow": func(n string) ([]byte, error) { return ReadFileNoFollow(p(n), 100) },
		"ReadFileIn":       func(n string) ([]byte, error) { return ReadFileIn(root, n, 100) },
	}
	for _, tc := range []struct {
		opener, name, want string // want: "" reads "0123456789"
	}{
		{"ReadFile", "file", ""},
		{"ReadFile", "inner", ""},
		{"ReadFile", "fifo", "named pipe"},
		{"ReadFile", "zero", "character device"},
		{"ReadFileNoFollow", "file", ""},
		{"ReadFileNoFollow", "inner", "symbolic link"},
		{"ReadFileNoFollow", "fifo", "named pipe"},
		{"ReadFileIn", "file", ""},
		{"ReadFileIn", "inner", ""},
		{"ReadFileIn", "fifo", "named pipe"},
		{"ReadFileIn", "zero", "leads out of"},
		{"ReadFileIn", "out", "leads out of"},
		{"ReadFileIn", "up/x", "leads out of"},
	} {
		done := make(chan struct{})
		var data []byte
		var err error
		go func() { data, err = read[tc.opener](tc.name); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s(%s) has not returned after 10 s", tc.opener, tc.name)
		}
		if tc.want == "" {
			if err != nil || string(data) != "0123456789" {
				t.Errorf("%s(%s) = %q, %v", tc.opener, tc.name, data, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s(%s) = %v; want an error saying %q", tc.opener, tc.name, err, tc.want)
		}
	}
	var tl *TooLargeError
	if _, err := ReadFile(p("file"), 9); !errors.As(err, &tl) {
		t.Errorf("ReadFile over the limit: %v", err)
	}
	if _, err := Open(p("nope")); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "open ") {
		t.Errorf("Open of a missing file: %v", err)
	}
}
